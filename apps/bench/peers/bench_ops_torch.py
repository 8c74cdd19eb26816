#!/usr/bin/env python3
"""PyTorch peer of mixgrad's `bench`: the same ops, shapes, timing method and JSON records
{op, pass, device, shape, dtype, ms, gbps, gflops}, so the two JSON files can be compared record by record.

Timing (same as apps/bench/measure.cpp):
  * forward: the op under torch.no_grad(), output dropped at once;
  * backward: graphs are built untimed just before each sample, then torch.autograd.grad(y, inputs, dy) runs
    on each. Unlike mixgrad (which calls the op's backward node directly) this includes PyTorch's autograd engine
    per call (tens of microseconds on CUDA), which only matters for tiny shapes;
  * a sample repeats the call until it lasts about --min-sample-ms, between two synchronizations (CUDA) and
    a host clock (time.perf_counter); inputs are cycled over copies spanning >= --cold-mib MiB so calls miss the
    cache; the median over --repeats samples after --warmup samples is reported.
  * bytes for GB/s are the minimum each op must read + write (formulas in docs/benchmarks/README.md), identical
    to the C++ bench; GEMM reports GFLOP/s = 2mnk (forward) and 4mnk (backward) per call.
  * TF32 is OFF (torch.backends.cuda.matmul.allow_tf32 = False), matching mixgrad's default FP32 GEMMs.

Usage:
  python3 apps/bench/peers/bench_ops_torch.py --device all --threads 16 --json docs/benchmarks/torch-ops.json
  python3 apps/bench/peers/bench_ops_torch.py --device cpu --threads 2 --ops gemm,softmax
Requires PyTorch (not installed on the CPU-only development machine; run it where PyTorch exists).
"""
import argparse
import json
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # keep --help usable without torch
    torch = None

F32, I64 = 4.0, 8.0


class OpCase:
    def __init__(self, op, shape, fwd_bytes=0.0, bwd_bytes=0.0, fwd_flops=0.0, bwd_flops=0.0):
        self.op, self.shape = op, shape
        self.fwd_bytes, self.bwd_bytes, self.fwd_flops, self.bwd_flops = fwd_bytes, bwd_bytes, fwd_flops, bwd_flops

    # Subclasses: make_inputs(device) -> list of tensors; forward(inputs); forward_for_backward(inputs); grad_output(y)
    def forward_for_backward(self, inputs):
        return self.forward(inputs)

    def grad_output(self, y):
        return torch.randn_like(y)


def param(shape, device):
    return torch.randn(*shape, device=device, dtype=torch.float32, requires_grad=True)


class Gemm(OpCase):
    def __init__(self, m, k, n):
        mnk = float(m) * n * k
        super().__init__("gemm", f"[{m}, {k}] @ [{k}, {n}]", fwd_flops=2 * mnk, bwd_flops=4 * mnk)
        self.m, self.k, self.n = m, k, n

    def make_inputs(self, device):
        return [param((self.m, self.k), device), param((self.k, self.n), device)]

    def forward(self, x):
        return torch.matmul(x[0], x[1])


class Add(OpCase):
    def __init__(self, r, c):
        n = float(r) * c
        super().__init__("add", f"[{r}, {c}] + [{c}]", F32 * (2 * n + c), F32 * (2 * n + c))
        self.r, self.c = r, c

    def make_inputs(self, device):
        return [param((self.r, self.c), device), param((self.c,), device)]

    def forward(self, x):
        return x[0] + x[1]


class Gelu(OpCase):
    def __init__(self, r, c):
        n = float(r) * c
        super().__init__("gelu", f"[{r}, {c}]", F32 * 2 * n, F32 * 3 * n)
        self.r, self.c = r, c

    def make_inputs(self, device):
        return [param((self.r, self.c), device)]

    def forward(self, x):
        return F.gelu(x[0])  # approximate="none" (erf), as mixgrad's default


class Softmax(OpCase):
    def __init__(self, r, c):
        n = float(r) * c
        super().__init__("softmax", f"[{r}, {c}]", F32 * 2 * n, F32 * 3 * n)
        self.r, self.c = r, c

    def make_inputs(self, device):
        return [param((self.r, self.c), device)]

    def forward(self, x):
        return torch.softmax(x[0], dim=-1)


class LayerNorm(OpCase):
    def __init__(self, r, c):
        n = float(r) * c
        super().__init__("layer_norm", f"[{r}, {c}]", F32 * (2 * n + 2 * c), F32 * (3 * n + 2 * r + 3 * c))
        self.r, self.c = r, c

    def make_inputs(self, device):
        return [param((self.r, self.c), device), param((self.c,), device), param((self.c,), device)]

    def forward(self, x):
        return F.layer_norm(x[0], (self.c,), x[1], x[2], 1e-5)


class CrossEntropy(OpCase):
    def __init__(self, r, c):
        n = float(r) * c
        super().__init__("cross_entropy", f"[{r}, {c}]", F32 * n + I64 * r, F32 * (2 * n + 2 * r) + I64 * r)
        self.r, self.c = r, c

    def make_inputs(self, device):
        g = torch.Generator().manual_seed(self.r * 131 + self.c)
        target = torch.randint(0, self.c, (self.r,), generator=g, dtype=torch.int64).to(device)
        return [param((self.r, self.c), device), target]

    def forward(self, x):
        return F.cross_entropy(x[0], x[1])  # reduction="mean", as models call it

    def forward_for_backward(self, x):
        return F.cross_entropy(x[0], x[1], reduction="none")  # the per-row kernel, as in the C++ bench

    def grad_output(self, y):
        return torch.full_like(y, 1.0 / y.numel())  # what the mean's backward feeds it


def all_cases():
    cases = [Gemm(s, s, s) for s in (256, 512, 1024, 2048)]
    tokens, dim = 128 * 50, 64  # fmnist-tiny ViT: B=128, N=50, D=64, MLP ratio 4
    cases += [Gemm(tokens, dim, 3 * dim), Gemm(tokens, dim, dim), Gemm(tokens, dim, 4 * dim), Gemm(tokens, 4 * dim, dim)]
    acts = [(4096, 768), (tokens, dim), (8192, 1024)]
    for make in (LayerNorm, Softmax, Gelu, Add):
        cases += [make(r, c) for r, c in acts]
    cases.append(CrossEntropy(128, 10))
    cases += [CrossEntropy(r, c) for r, c in acts]
    return cases


def op_names():
    names = []
    for c in all_cases():
        if c.op not in names:
            names.append(c.op)
    return names


def sync(device):
    """Waits for `device` (a torch.device or a string such as "cuda:0") to finish its queued work."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_samples(args, n_sets, sample):
    calls = n_sets
    first = sample(calls) / calls
    if 0 < first and calls * first < args.min_sample_ms:
        calls = min(args.max_calls, max(calls, math.ceil(args.min_sample_ms / first)))
    for _ in range(1, args.warmup):
        sample(calls)
    per_call = [sample(calls) / calls for _ in range(args.repeats)]
    return statistics.median(per_call), calls


def measure(case, device, args):
    sets = [case.make_inputs(device)]
    one = max(1, sum(t.numel() * t.element_size() for t in sets[0]))
    wanted = min(256, max(1, math.ceil(args.cold_mib * 1048576 / one)))
    while len(sets) < wanted:
        sets.append(case.make_inputs(device))
    n = len(sets)

    def fwd_sample(calls):
        with torch.no_grad():
            sync(device)
            t0 = time.perf_counter()
            for i in range(calls):
                case.forward(sets[i % n])
            sync(device)
            return (time.perf_counter() - t0) * 1e3

    fwd_ms, fwd_calls = run_samples(args, n, fwd_sample)
    if args.no_backward:
        return (fwd_ms, fwd_calls), None

    grads = {}

    def bwd_sample(calls):
        graphs = []
        for i in range(calls):
            x = sets[i % n]
            y = case.forward_for_backward(x)
            if i % n not in grads:
                grads[i % n] = case.grad_output(y)
            graphs.append((y, [t for t in x if t.requires_grad], grads[i % n]))
        sync(device)
        t0 = time.perf_counter()
        for y, inputs, dy in graphs:
            torch.autograd.grad(y, inputs, dy)
        sync(device)
        return (time.perf_counter() - t0) * 1e3

    return (fwd_ms, fwd_calls), run_samples(args, n, bwd_sample)


def add_harness_args(p):
    """The flags every peer script shares with `bench`: device, timing, input rotation, threads, JSON output."""
    p.add_argument("--device", default="all", help="cpu, cuda, cuda:N or all (CPU plus CUDA when available)")
    p.add_argument("--repeats", type=int, default=10, help="timed samples (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed samples first")
    p.add_argument("--min-sample-ms", type=float, default=2.0, help="each sample lasts about this long")
    p.add_argument("--cold-mib", type=float, default=128.0, help="inputs cycled over copies spanning this many MiB")
    p.add_argument("--max-calls", type=int, default=4096, help="upper bound on calls per sample")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = PyTorch's default)")
    p.add_argument("--no-backward", action="store_true", help="forward passes only")
    p.add_argument("--json", help="write the records to this JSON file")


def resolve_devices(args, script):
    """torch.devices for --device (all = the CPU, plus cuda:0 when CUDA is usable); exits when CUDA is asked for
    but unavailable."""
    if args.device == "all":
        return [torch.device("cpu")] + ([torch.device("cuda", 0)] if torch.cuda.is_available() else [])
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"{script}: --device {args.device} requested but CUDA is unavailable")
    return [device]


def write_records(path, records):
    """Writes the JSON records to `path` (nothing when path is empty) and says so: every peer's --json output."""
    if not path:
        return
    with open(path, "w") as f:
        json.dump(records, f, indent=1)
        f.write("\n")
    print(f"wrote {len(records)} records to {path}")


def rate(work, ms):
    return work / (ms * 1e6) if work > 0 and ms > 0 else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_harness_args(p)
    p.add_argument("--ops", default="gemm,layer_norm,softmax,gelu,add,cross_entropy", help="comma-separated ops")
    args = p.parse_args()
    if torch is None:
        sys.exit("bench_ops_torch.py: PyTorch is not installed (Debian: apt-get install python3-torch, then run with /usr/bin/python3; or run on the GPU machine)")
    if args.repeats < 1 or args.warmup < 0:
        sys.exit("bench_ops_torch.py: --repeats must be >= 1 and --warmup >= 0")
    known = op_names()
    wanted = [o for o in args.ops.split(",") if o]
    for o in wanted:
        if o not in known:
            sys.exit(f"bench_ops_torch.py: unknown op '{o}' (known: {','.join(known)})")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    devices = resolve_devices(args, "bench_ops_torch.py")

    print(f"torch {torch.__version__}: {torch.get_num_threads()} threads; median of {args.repeats} after "
          f"{args.warmup} warm-up; inputs rotated over >= {args.cold_mib} MiB; TF32 off")
    print(f"{'device':<7} {'op':<14} {'shape':<24} {'pass':<8} {'ms':>10} {'GB/s':>9} {'GFLOP/s':>9} {'calls':>6}")
    records = []
    for device in devices:
        name = "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"
        for case in all_cases():
            if case.op not in wanted:
                continue
            fwd, bwd = measure(case, device, args)
            passes = [("forward", fwd, case.fwd_bytes, case.fwd_flops)]
            if bwd is not None:
                passes.append(("backward", bwd, case.bwd_bytes, case.bwd_flops))
            for pass_name, (ms, calls), nbytes, flops in passes:
                r = {"op": case.op, "pass": pass_name, "device": name, "shape": case.shape, "dtype": "float32",
                     "ms": ms, "gbps": rate(nbytes, ms), "gflops": rate(flops, ms)}
                show = lambda v: "-" if v is None else f"{v:.1f}"
                print(f"{name:<7} {case.op:<14} {case.shape:<24} {pass_name:<8} {ms:>10.4f} {show(r['gbps']):>9} "
                      f"{show(r['gflops']):>9} {calls:>6}", flush=True)
                records.append(r)
    write_records(args.json, records)


if __name__ == "__main__":
    main()
