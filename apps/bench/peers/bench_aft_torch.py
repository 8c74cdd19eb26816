#!/usr/bin/env python3
"""PyTorch peer of mixgrad's AFT bench cases (apps/bench/aft_cases.cpp): the four AFT ops and mixers written from
specs/mixers.md §4 (not from a public implementation), at the same shapes, with the same timing method and the same
JSON records {op, pass, device, shape, dtype, ms, gbps, gflops, impl, tokens_per_s} as `bench`.

The ops use the spec's stable GEMM form (§4.3): A = exp(w' − m^w) (masked, shared by the batch), E = exp(K − m^K),
Y = σ(Q) ⊙ (A @ (E ⊙ V)) / (A @ E); AFT-local builds w' densely (w inside the window, 0 outside); AFT-simple is
two sums (causal: cumulative sums); AFT-conv builds each head's Toeplitz w' [H, N, N] from its kernel. There is no
underflow fallback (the inputs here never need one). Backward passes are autograd's. Mixers are Linear q, k, v ->
op -> Linear proj, as nn/mixers/aft_mixer.cpp; "aft_mixer" also reports forward+backward like `bench`.

Timing, input rotation (--cold-mib), warm-up and medians are bench_ops_torch.py's (imported from this folder).

Usage:
  /usr/bin/python3 apps/bench/peers/bench_aft_torch.py --device cpu --threads 2 --json /tmp/torch-aft-cpu.json
  /usr/bin/python3 apps/bench/peers/bench_aft_torch.py --smoke --repeats 1 --warmup 0 --min-sample-ms 0 --cold-mib 0
  /usr/bin/python3 apps/bench/peers/bench_aft_torch.py --compare inputs.safetensors
--smoke runs every case at [2, 16, 8] (as `bench --smoke`): a check that the script runs, not a timing.
--compare FILE reads float64 tensors q, k, v [B, N, D], w [N, N] and y = mixgrad's aft_full(q, k, v, w, {}, causal
= true) from a safetensors file (written with engine/safetensors.h), recomputes y with the peer and prints the max
abs difference (exit status 1 above 1e-10).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ops_torch as common  # noqa: E402  (timing harness, OpCase, rate; handles a missing torch)

torch = common.torch
F32 = 4.0


# ---- the ops (spec §4.1, §4.3, §4.5) --------------------------------------------------------------------------

def visible(n, causal, device):
    """[N, N] bool: query t sees key t' (all, or t' <= t)."""
    if not causal:
        return torch.ones(n, n, dtype=torch.bool, device=device)
    return torch.tril(torch.ones(n, n, dtype=torch.bool, device=device))


def aft_gemm(q, k, v, w_eff, causal):
    """Y = σ(Q) ⊙ A·(E⊙V) / A·E with A = exp(w' − rowmax) over visible keys. q, v [B, N, D], k [B, N, D];
    w_eff [N, N] (shared by all channels) or [D, N, N] (per channel)."""
    n = q.shape[1]
    vis = visible(n, causal, q.device)
    w = w_eff.masked_fill(~vis, float("-inf"))
    a = torch.exp(w - w.amax(dim=-1, keepdim=True))
    e = torch.exp(k - k.amax(dim=1, keepdim=True))
    if a.dim() == 2:
        num, den = torch.matmul(a, e * v), torch.matmul(a, e)
    else:  # [D, N, N]: per channel
        num = torch.einsum("dts,bsd->btd", a, e * v)
        den = torch.einsum("dts,bsd->btd", a, e)
    return torch.sigmoid(q) * num / den


def local_bias(w, window, causal):
    n = w.shape[0]
    idx = torch.arange(n, device=w.device)
    band = (idx[:, None] - idx[None, :]).abs() < window
    return torch.where(band, w, torch.zeros_like(w))


def aft_simple(q, k, v, causal):
    e = torch.exp(k - k.amax(dim=1, keepdim=True))
    if causal:
        return torch.sigmoid(q) * torch.cumsum(e * v, dim=1) / torch.cumsum(e, dim=1)
    return torch.sigmoid(q) * (e * v).sum(dim=1, keepdim=True) / e.sum(dim=1, keepdim=True)


def conv_bias(kernel, n, causal):
    """Per head Toeplitz w' [H, N, N] from kernel [H, s] (spec §4.1 mixgrad convention; causal: one-sided)."""
    h, s = kernel.shape
    idx = torch.arange(n, device=kernel.device)
    delta = idx[None, :] - idx[:, None]  # t' - t
    pos = delta + (s - 1 if causal else (s - 1) // 2)
    inside = (pos >= 0) & (pos < s) & ((delta <= 0) if causal else True)
    gathered = kernel[:, pos.clamp(0, s - 1)]  # [H, N, N]
    return torch.where(inside, gathered, torch.zeros_like(gathered))


def aft_conv(q, k, v, kernel, causal):
    b, n, d = q.shape
    h = kernel.shape[0]
    k_channels = k.repeat_interleave(d // h, dim=2)
    w_channels = conv_bias(kernel, n, causal).repeat_interleave(d // h, dim=0)  # [D, N, N]
    return aft_gemm(q, k_channels, v, w_channels, causal)


def run_op(variant, causal, size, x):
    q, k, v = x[0], x[1], x[2]
    if variant == "full":
        return aft_gemm(q, k, v, x[3], causal)
    if variant == "local":
        return aft_gemm(q, k, v, local_bias(x[3], size, causal), causal)
    if variant == "simple":
        return aft_simple(q, k, v, causal)
    return aft_conv(q, k, v, x[3], causal)


# ---- the cases (apps/bench/aft_cases.cpp) ----------------------------------------------------------------------

def sizes(smoke):
    if smoke:
        return [(v, 2, 16, 8, True, 3, 2) for v in ("full", "local", "simple", "conv")]
    return [("full", 8, 1024, 256, True, 0, 1), ("local", 8, 1024, 256, True, 32, 1),
            ("simple", 8, 1024, 256, True, 0, 1), ("conv", 64, 197, 192, False, 11, 192)]


def shape_of(variant, b, n, d, causal, size, heads):
    extra = f" s={size}" if variant == "local" else (f" s={size} H={heads}" if variant == "conv" else "")
    return f"[{b}, {n}, {d}]{extra}{' causal' if causal else ''}"


def bias_elems(variant, n, size, heads):
    return n * n if variant in ("full", "local") else (heads * size if variant == "conv" else 0)


class AftOp(common.OpCase):
    def __init__(self, variant, b, n, d, causal, size, heads):
        el = float(b) * n * d
        nb = bias_elems(variant, n, size, heads)
        width = (size if causal else 2 * size - 1) if variant == "local" else (size if variant == "conv" else 0)
        fwd_flops = 4 * el * n if variant == "full" else 4 * el * width
        bwd_flops = 8 * el * n if variant == "full" else 12 * el * width
        super().__init__("aft", shape_of(variant, b, n, d, causal, size, heads), F32 * (4 * el + nb),
                         F32 * (7 * el + 2 * nb), fwd_flops, bwd_flops)
        self.impl, self.tokens = variant, float(b) * n
        self.variant, self.b, self.n, self.d, self.causal, self.size, self.heads = variant, b, n, d, causal, size, heads

    def make_inputs(self, device):
        b, n, d = self.b, self.n, self.d
        x = [common.param((b, n, d), device), common.param((b, n, self.heads if self.variant == "conv" else d), device),
             common.param((b, n, d), device)]
        if self.variant in ("full", "local"):
            x.append(common.param((n, n), device))
        elif self.variant == "conv":
            x.append(common.param((self.heads, self.size), device))
        return x

    def forward(self, x):
        return run_op(self.variant, self.causal, self.size, x)


class AftMixer(torch.nn.Module if torch is not None else object):
    """Linear q, k, v -> AFT -> Linear proj (nn/mixers/aft_mixer.cpp), position biases as there (§4.2)."""

    def __init__(self, variant, n, d, causal, size, heads, rank=128):
        super().__init__()
        self.variant, self.causal, self.size, self.heads = variant, causal, size, heads
        self.to_q, self.to_v = torch.nn.Linear(d, d), torch.nn.Linear(d, d)
        self.to_k = torch.nn.Linear(d, heads if variant == "conv" else d)
        self.proj = torch.nn.Linear(d, d)
        if variant in ("full", "local"):
            self.pos_u = torch.nn.Parameter(torch.randn(n, rank) * 0.1)
            self.pos_v = torch.nn.Parameter(torch.randn(n, rank) * 0.1)
        if variant == "conv":
            self.conv_weight = torch.nn.Parameter(torch.randn(heads, size))
            self.conv_gamma = torch.nn.Parameter(torch.zeros(heads))
            self.conv_beta = torch.nn.Parameter(torch.zeros(heads))

    def forward(self, x):
        n = x.shape[1]
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        extra = []
        if self.variant in ("full", "local"):
            extra = [self.pos_u[:n] @ self.pos_v[:n].t()]
        elif self.variant == "conv":
            w = self.conv_weight
            c = w - w.mean(dim=1, keepdim=True)
            std = c.pow(2).mean(dim=1, keepdim=True).sqrt()
            extra = [self.conv_gamma[:, None] * c / (std + 1e-5) + self.conv_beta[:, None]]
        return self.proj(run_op(self.variant, self.causal, self.size, [q, k, v] + extra))


class AftMixerCase(common.OpCase):
    def __init__(self, variant, b, n, d, causal, size, heads):
        super().__init__("aft_mixer", shape_of(variant, b, n, d, causal, size, heads))
        self.impl, self.tokens = variant, float(b) * n
        self.b, self.n, self.d = b, n, d
        self.args = (variant, n, d, causal, size, heads)
        self.mixers = {}

    def make_inputs(self, device):
        return [common.param((self.b, self.n, self.d), device)]

    def forward(self, x):
        key = str(x[0].device)
        if key not in self.mixers:
            torch.manual_seed(1)
            self.mixers[key] = AftMixer(*self.args).to(x[0].device)
        return self.mixers[key](x[0])


def cases(smoke):
    s = sizes(smoke)
    return [AftOp(*a) for a in s] + [AftMixerCase(*a) for a in s]


# ---- checks ---------------------------------------------------------------------------------------------------

def direct(q, k, v, w_eff, causal):
    """The O(N²·D) formula with the exact per-(t, d) max, float64 (spec §4.1)."""
    q, k, v, w_eff = (t.double() for t in (q, k, v, w_eff))
    n = q.shape[1]
    logits = k[:, None, :, :] + (w_eff[None, :, :, None] if w_eff.dim() == 2 else w_eff.permute(1, 2, 0)[None])
    logits = logits.masked_fill(~visible(n, causal, q.device)[None, :, :, None], float("-inf"))
    p = torch.softmax(logits, dim=2)  # over keys, per (b, t, d)
    return torch.sigmoid(q) * (p * v[:, None, :, :]).sum(dim=2)


def self_check(device):
    """The GEMM forms against the direct formula on tiny inputs, before timing."""
    g = torch.Generator().manual_seed(0)
    b, n, d, h = 2, 9, 6, 3
    q, k, v = (torch.randn(b, n, d, generator=g) for _ in range(3))
    w = torch.randn(n, n, generator=g)
    kh = torch.randn(b, n, h, generator=g)
    kernel = torch.randn(h, 5, generator=g)
    for causal in (False, True):
        checks = [(aft_gemm(q, k, v, w, causal), direct(q, k, v, w, causal)),
                  (aft_gemm(q, k, v, local_bias(w, 3, causal), causal), direct(q, k, v, local_bias(w, 3, causal), causal)),
                  (aft_simple(q, k, v, causal), direct(q, k, v, torch.zeros(n, n), causal)),
                  (aft_conv(q, kh, v, kernel, causal),
                   direct(q, kh.repeat_interleave(d // h, dim=2), v,
                          conv_bias(kernel, n, causal).repeat_interleave(d // h, dim=0), causal))]
        for i, (got, want) in enumerate(checks):
            err = (got.double() - want).abs().max().item()
            assert err < 1e-5, f"self-check {i} (causal={causal}) failed: max abs error {err}"


def compare(path):
    """Reads q, k, v, w, y (AFT-full, causal, float64) from a safetensors file written by mixgrad's tests."""
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F64", f"{name}: expected F64, got {meta['dtype']}"
        lo, hi = meta["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(data[lo:hi]), dtype=torch.float64).reshape(meta["shape"])
    y = aft_gemm(tensors["q"], tensors["k"], tensors["v"], tensors["w"], True)
    err = (y - tensors["y"]).abs().max().item()
    print(f"peer vs mixgrad (aft_full causal {list(y.shape)}): max abs difference {err:.3e}")
    return err


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_harness_args(p)
    p.add_argument("--ops", default="aft,aft_mixer", help="comma-separated: aft, aft_mixer")
    p.add_argument("--smoke", action="store_true", help="every case at [2, 16, 8]: checks that the script runs")
    p.add_argument("--compare", help="compare with mixgrad's output stored in this safetensors file, then exit")
    args = p.parse_args()
    if torch is None:
        sys.exit("bench_aft_torch.py: PyTorch is not installed (Debian: apt-get install python3-torch, then run with /usr/bin/python3; or run on the GPU machine)")
    if args.compare:
        sys.exit(0 if compare(args.compare) < 1e-10 else "bench_aft_torch.py: the peer and mixgrad disagree")
    if args.repeats < 1 or args.warmup < 0:
        sys.exit("bench_aft_torch.py: --repeats must be >= 1 and --warmup >= 0")
    wanted = [o for o in args.ops.split(",") if o]
    for o in wanted:
        if o not in ("aft", "aft_mixer"):
            sys.exit(f"bench_aft_torch.py: unknown op '{o}' (known: aft,aft_mixer)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    devices = common.resolve_devices(args, "bench_aft_torch.py")

    print(f"torch {torch.__version__}: {torch.get_num_threads()} threads; median of {args.repeats} after "
          f"{args.warmup} warm-up; inputs rotated over >= {args.cold_mib} MiB; TF32 off")
    print(f"{'device':<7} {'op':<18} {'shape':<30} {'pass':<16} {'ms':>10} {'GB/s':>9} {'GFLOP/s':>9} {'calls':>6}")
    records = []
    for device in devices:
        self_check(device)
        name = "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"
        for case in cases(args.smoke):
            if case.op not in wanted:
                continue
            fwd, bwd = common.measure(case, device, args)
            passes = [("forward", fwd, case.fwd_bytes, case.fwd_flops)]
            if bwd is not None:
                passes.append(("backward", bwd, case.bwd_bytes, case.bwd_flops))
                if case.op == "aft_mixer":
                    passes.append(("forward+backward", (fwd[0] + bwd[0], bwd[1]), 0.0, 0.0))
            for pass_name, (ms, calls), nbytes, flops in passes:
                r = {"op": case.op, "pass": pass_name, "device": name, "shape": case.shape, "dtype": "float32",
                     "ms": ms, "gbps": common.rate(nbytes, ms), "gflops": common.rate(flops, ms), "impl": case.impl,
                     "tokens_per_s": case.tokens / (ms * 1e-3) if ms > 0 else None}
                show = lambda v: "-" if v is None else f"{v:.1f}"
                label = f"{case.op}/{case.impl}"
                print(f"{name:<7} {label:<18} {case.shape:<30} {pass_name:<16} {ms:>10.4f} {show(r['gbps']):>9} "
                      f"{show(r['gflops']):>9} {calls:>6}", flush=True)
                records.append(r)
    common.write_records(args.json, records)


if __name__ == "__main__":
    main()
