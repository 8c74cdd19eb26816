#!/usr/bin/env python3
"""PyTorch peer of mixgrad's `bench --ops attention`: torch.nn.functional.scaled_dot_product_attention on the same
shapes, the same timing method and the same JSON records
{op, pass, device, shape, dtype, ms, gbps, gflops, impl, tokens_per_s[, peak_bytes]}.

impl is "torch-math" (the materialised math backend, SDPBackend.MATH) or "torch-default" (PyTorch's own choice:
flash / memory-efficient / cuDNN; for fp32 inputs that is usually the memory-efficient kernel), each with
"-tf32" appended when --tf32 on (torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32 = True), or "-bf16"
with --bf16 (bfloat16 q, k, v; dtype "bfloat16" in the record and bytes at 2 per element).
FLOPs as specs/mixers.md §2.4: forward 4·B·H·N·N·d, backward 2.5× forward, both halved when causal.

Timing (as apps/bench/measure.cpp): forward under torch.no_grad(); backward = torch.autograd.grad on graphs built
untimed just before each sample; forward+backward = the sum of the two medians; a sample repeats the call until it
lasts --min-sample-ms between two synchronisations; inputs cycle over copies spanning >= --cold-mib MiB; median
of --repeats samples after --warmup.

Usage:
  python3 apps/bench/peers/bench_attention_torch.py --device cuda --tf32 both --json /tmp/torch-attention.json
  python3 apps/bench/peers/bench_attention_torch.py --device cpu --threads 2 --cold-mib 0 --repeats 3 --warmup 1
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ops_torch as common  # noqa: E402  (timing harness and shared flags; handles a missing torch)

torch = common.torch
if torch is not None:
    import torch.nn.functional as F

F32 = 4.0


def cases(device):
    """(B, H, N, d, causal, peak_memory) — the shapes of apps/bench/op_cases.cpp."""
    out = []
    if device.startswith("cuda"):
        for d in (64, 128):
            for n in (512, 1024, 4096, 16384):
                for causal in (False, True):
                    out.append((16384 // n, 2048 // d, n, d, causal, False))
    else:
        out.append((1, 4, 2048, 64, False, True))
    return out


def sdpa_context(impl):
    if impl.startswith("torch-math"):
        try:  # PyTorch >= 2.3
            from torch.nn.attention import SDPBackend, sdpa_kernel
            return sdpa_kernel(SDPBackend.MATH)
        except ImportError:  # PyTorch 2.0-2.2
            return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_math=True, enable_mem_efficient=False)
    import contextlib
    return contextlib.nullcontext()


def bench_case(args, device, case, impl, dtype=None):
    b, h, n, d, causal, want_peak = case
    dtype = dtype or torch.float32
    esize = torch.tensor([], dtype=dtype).element_size()
    shape = f"[{b}, {h}, {n}, {d}]" + (" causal" if causal else "")
    one = 3 * b * h * n * d * esize
    nsets = max(1, min(256, int(args.cold_mib * 1048576 / one + 0.999))) if args.cold_mib > 0 else 1

    def make():
        return [torch.randn(b, h, n, d, device=device, dtype=dtype, requires_grad=True) for _ in range(3)]

    sets = [make() for _ in range(nsets)]
    fwd_flops = 4.0 * b * h * n * n * d * (0.5 if causal else 1.0)
    bwd_flops = 2.5 * fwd_flops
    bhnd = b * h * n * d
    records = []
    with sdpa_context(impl):
        def fwd_sample(calls):
            with torch.no_grad():
                common.sync(device)
                t0 = time.perf_counter()
                for i in range(calls):
                    q, k, v = sets[i % nsets]
                    F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                common.sync(device)
                return (time.perf_counter() - t0) * 1e3

        fwd_ms, fwd_calls = common.run_samples(args, nsets, fwd_sample)
        grads = [torch.randn(b, h, n, d, device=device, dtype=dtype) for _ in range(nsets)]

        def bwd_sample(calls):
            graphs = []
            for i in range(calls):
                q, k, v = sets[i % nsets]
                graphs.append((F.scaled_dot_product_attention(q, k, v, is_causal=causal), (q, k, v)))
            common.sync(device)
            t0 = time.perf_counter()
            for i, (y, inputs) in enumerate(graphs):
                torch.autograd.grad(y, inputs, grads[i % nsets])
            common.sync(device)
            return (time.perf_counter() - t0) * 1e3

        bwd_ms, bwd_calls = (None, 0) if args.no_backward else common.run_samples(args, nsets, bwd_sample)

        peak_f = peak_fb = None
        if want_peak and device.startswith("cuda"):
            q, k, v = sets[0]
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            torch.cuda.synchronize()
            peak_f = torch.cuda.max_memory_allocated() - base
            if not args.no_backward:
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=causal), (q, k, v), grads[0])
                torch.cuda.synchronize()
                peak_fb = torch.cuda.max_memory_allocated() - base

    def rec(pass_, ms, byts, flops, calls, peak):
        r = {"op": "attention", "pass": pass_, "device": device, "shape": shape,
             "dtype": "bfloat16" if dtype == torch.bfloat16 else "float32", "ms": ms,
             "gbps": byts / (ms * 1e6) if ms > 0 else None, "gflops": flops / (ms * 1e6) if ms > 0 else None,
             "impl": impl, "tokens_per_s": b * n / (ms * 1e-3) if ms > 0 else None}
        if want_peak:
            r["peak_bytes"] = peak  # null on the CPU (PyTorch has no CPU allocator statistics)
        print(f"{device:<7} {'attention/' + impl:<24} {shape:<24} {pass_:<17} {ms:>10.4f} "
              f"{r['gflops'] or 0:>9.1f} {calls:>6}", flush=True)
        records.append(r)

    rec("forward", fwd_ms, esize * 4 * bhnd, fwd_flops, fwd_calls, peak_f)
    if bwd_ms is not None:
        rec("backward", bwd_ms, esize * 8 * bhnd, bwd_flops, bwd_calls, None)
        rec("forward+backward", fwd_ms + bwd_ms, esize * 12 * bhnd, fwd_flops + bwd_flops, bwd_calls, peak_fb)
    return records


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_harness_args(ap)
    ap.add_argument("--tf32", choices=["off", "on", "both"], default="both", help="CUDA matmul TF32 (default both)")
    ap.add_argument("--impls", default="torch-math,torch-default", help="comma-separated: torch-math, torch-default")
    ap.add_argument("--bf16", action="store_true",
                    help="CUDA: also run bfloat16 inputs (impl suffix -bf16; PyTorch's default is then its flash "
                         "kernel), the peer of mixgrad's bench --precision bf16 (fp32 tensors, bf16 products)")
    args = ap.parse_args()
    if torch is None:
        sys.exit("bench_attention_torch.py: PyTorch is not installed")
    if not hasattr(F, "scaled_dot_product_attention"):
        sys.exit(f"bench_attention_torch.py: PyTorch {torch.__version__} has no F.scaled_dot_product_attention "
                 "(it needs PyTorch >= 2.0; Debian 12's python3-torch is 1.13)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "all" else [args.device]
    records = []
    for device in devices:
        tf32_modes = [False] if device == "cpu" else {"off": [False], "on": [True], "both": [False, True]}[args.tf32]
        for tf32 in tf32_modes:
            if device.startswith("cuda"):
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
            for case in cases(device):
                for impl in args.impls.split(","):
                    name = impl + ("-tf32" if tf32 else "")
                    if impl == "torch-math" and case[2] > 4096:
                        continue  # materialises B·H·N² scores: 17 GB per tensor at N = 16384 (as mixgrad's composite)
                    records.extend(bench_case(args, device, case, name))
        if args.bf16 and device.startswith("cuda"):
            for case in cases(device):
                for impl in args.impls.split(","):
                    if impl == "torch-math" and case[2] > 4096:
                        continue
                    records.extend(bench_case(args, device, case, impl + "-bf16", torch.bfloat16))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
        print(f"wrote {len(records)} records to {args.json}")


if __name__ == "__main__":
    main()
