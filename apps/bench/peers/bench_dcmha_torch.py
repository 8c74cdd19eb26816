#!/usr/bin/env python3
"""PyTorch peer of mixgrad's DCMHA bench cases (apps/bench/dcmha_cases.cpp), written from specs/mixers.md §3 (not
from any public implementation): the same shapes, timing method (bench_ops_torch.py's harness) and JSON records
{op, pass, device, shape, dtype, ms, gbps, gflops, tokens_per_s} as `bench`.

  compose  one post-stage Compose (§3.2) on scores a [B, H, N, N], R = 2, no static matrix:
           a' = a·(1 + qdd[t] + kdd[s]) + Σ_r qw2[t,r]·(qw1[t,r]·a) + Σ_r kw2[s,r]·(kw1[s,r]·a), the rank-R terms
           unrolled as in the reference (contract over input heads, broadcast-multiply by output-head weights).
  dcmha    the whole mixer on x [B, N, D] (§3.1, §3.3): qkv projection, the dynamic weight generator (one fused
           projection, tanh-GELU, RMS-normalised w1, tanh dd), pre-Compose on logits, masked softmax, post-Compose on
           probabilities, P''·v, output projection; global, or a causal local window of 256 (t − W < s ≤ t).
           Scores are materialised per query chunk of 128 rows (§3.4's evaluation chunking); autograd keeps every
           chunk for the backward (PyTorch has no recompute here), so its memory is O(B·H·N²) in training.

The forward+backward record is forward ms + backward ms, as `bench` reports it.

Usage:
  python3 apps/bench/peers/bench_dcmha_torch.py --device cpu --threads 2 --json /tmp/torch-dcmha-cpu.json
  python3 apps/bench/peers/bench_dcmha_torch.py --device cuda --json /tmp/torch-dcmha-cuda.json
  python3 apps/bench/peers/bench_dcmha_torch.py --self-check   # the Compose expression vs explicit H×H matrices
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ops_torch as common  # noqa: E402  (timing harness, OpCase, rate; handles a missing torch)

torch = common.torch
F32 = 4.0
RANK = 2


def compose(a, qw, kw, mask=None):
    """a [B, H, T, S]; qw [B, T, 2R+1, H] (query side), kw [B, S, 2R+1, H] (key side); rows w1 (R), w2 (R), dd."""
    r = (qw.shape[2] - 1) // 2
    out = a * (1 + qw[:, :, 2 * r, :].permute(0, 2, 1)[..., None] + kw[:, :, 2 * r, :].permute(0, 2, 1)[:, :, None, :])
    for i in range(r):
        hq = torch.einsum("bhts,bth->bts", a, qw[:, :, i, :])          # contract over input heads
        hk = torch.einsum("bhts,bsh->bts", a, kw[:, :, i, :])
        out = out + hq[:, None] * qw[:, :, r + i, :].permute(0, 2, 1)[..., None]
        out = out + hk[:, None] * kw[:, :, r + i, :].permute(0, 2, 1)[:, :, None, :]
    if mask is not None:
        out = out.masked_fill(~mask, 0.0)
    return out


class DcmhaMixer(torch.nn.Module if torch is not None else object):
    def __init__(self, dim, heads, window=0, causal=False, chunk=128):
        super().__init__()
        h, c = heads, 4 * heads
        self.h, self.c, self.d = h, c, dim // heads
        self.window, self.causal, self.chunk = window, causal, chunk
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.dyn_proj = torch.nn.Parameter(torch.empty(4 * c + 4 * h, dim))
        torch.nn.init.normal_(self.dyn_proj[:4 * c], 0.0, math.sqrt(2.0 / (dim + c)))
        torch.nn.init.normal_(self.dyn_proj[4 * c:], 0.0, math.sqrt(2.0 / (dim + h)) * 0.005)
        self.qkw = torch.nn.Parameter(torch.randn(4, c, 2 * RANK, h) * (math.sqrt(1.0 / c) * 2.0 / (h + RANK) * 0.01))

    def dynamic_weights(self, x):
        b, n, _ = x.shape
        h, c = self.h, self.c
        z = x @ self.dyn_proj.t()
        hid = torch.nn.functional.gelu(z[..., :4 * c].reshape(b, n, 4, c), approximate="tanh")
        w = torch.einsum("bnkc,kcj->bnkj", hid, self.qkw.reshape(4, c, 2 * RANK * h)).reshape(b, n, 4, 2 * RANK, h)
        w1 = w[:, :, :, :RANK]
        w1 = w1 / torch.sqrt(w1.pow(2).mean(-1, keepdim=True) + 1e-6)
        dd = torch.tanh(z[..., 4 * c:]).reshape(b, n, 4, 1, h)
        return torch.cat([w1, w[:, :, :, RANK:], dd], dim=3)  # [B, N, 4, 2R+1, H]

    def visible(self, t0, t1, s0, s1, device):
        t = torch.arange(t0, t1, device=device)[:, None]
        s = torch.arange(s0, s1, device=device)[None, :]
        ok = torch.ones(t1 - t0, s1 - s0, dtype=torch.bool, device=device)
        if self.causal:
            ok = ok & (s <= t)
        if self.window > 0:
            ok = ok & (s > t - self.window)
            if not self.causal:
                ok = ok & (s < t + self.window)
        return ok

    def forward(self, x):
        b, n, dim = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.h, self.d).permute(2, 0, 3, 1, 4)
        dyn = self.dynamic_weights(x)
        outs = []
        for t0 in range(0, n, self.chunk):
            t1 = min(n, t0 + self.chunk)
            s0 = max(0, t0 - self.window + 1) if self.window > 0 else 0
            s1 = t1 if self.causal else (min(n, t1 + self.window - 1) if self.window > 0 else n)
            mask = self.visible(t0, t1, s0, s1, x.device)
            lg = (q[:, :, t0:t1] / math.sqrt(self.d)) @ k[:, :, s0:s1].transpose(-1, -2)
            lg = compose(lg, dyn[:, t0:t1, 0], dyn[:, s0:s1, 1], mask)
            p = torch.softmax(lg.masked_fill(~mask, -0.7 * torch.finfo(torch.float32).max), dim=-1)
            p = compose(p, dyn[:, t0:t1, 2], dyn[:, s0:s1, 3], mask)
            outs.append(p @ v[:, :, s0:s1])
        o = torch.cat(outs, dim=2).permute(0, 2, 1, 3).reshape(b, n, dim)
        return self.proj(o)


class Compose(common.OpCase):
    def __init__(self, b, h, n):
        scores, side = float(b) * h * n * n, float(b) * n * (2 * RANK + 1) * h
        super().__init__("compose", f"[{b}, {h}, {n}, {n}] R={RANK}", F32 * (2 * scores + 2 * side),
                         F32 * (3 * scores + 6 * side))
        self.b, self.h, self.n = b, h, n

    def make_inputs(self, device):
        dyn = (torch.randn(4, self.b, self.n, 2 * RANK + 1, self.h, device=device) * 0.1).requires_grad_()
        return [common.param((self.b, self.h, self.n, self.n), device), dyn]

    def forward(self, x):
        return compose(x[0], x[1][2], x[1][3])


class Mixer(common.OpCase):
    def __init__(self, b, n, dim, h, local):
        c, r = 4.0 * h, float(RANK)
        keys = min(n, 256) if local else n
        fwd = (2.0 * b * n * dim * (4 * dim + 4 * c + 4 * h) + 2.0 * b * n * 4 * c * 2 * r * h +
               4.0 * b * n * keys * dim + 2 * 2 * (4 * r + 2) * h * b * n * keys)
        super().__init__("dcmha", f"x [{b}, {n}, {dim}] H={h}", fwd_flops=fwd, bwd_flops=2 * fwd)
        self.b, self.n, self.dim, self.h, self.local = b, n, dim, h, local
        self.impl = "local256-causal" if local else "global"
        self.tokens = float(b) * n
        self.mixers = {}

    def mixer(self, device):
        key = str(device)
        if key not in self.mixers:
            torch.manual_seed(1234)
            self.mixers[key] = DcmhaMixer(self.dim, self.h, 256 if self.local else 0, self.local).to(device)
        return self.mixers[key]

    def make_inputs(self, device):
        # The parameters ride along as inputs, so the timed backward computes their gradients too, as mixgrad's
        # whole-graph backward does.
        return [common.param((self.b, self.n, self.dim), device)] + list(self.mixer(device).parameters())

    def forward(self, x):
        return self.mixer(x[0].device)(x[0])


def cases(device_type):
    if device_type == "cpu":
        return [Compose(1, 8, 512), Mixer(2, 512, 256, 8, False), Mixer(32, 250, 64, 4, False)]
    return [Compose(4, 16, 1024), Mixer(8, 2048, 1024, 16, False), Mixer(8, 2048, 1024, 16, True)]


def self_check():
    """compose() against explicit per-(t, s) H×H matrices 𝒲 = I + qw1ᵀqw2 + diag(qdd) + kw1ᵀkw2 + diag(kdd)."""
    g = torch.Generator().manual_seed(0)
    b, h, n = 1, 4, 6
    a = torch.randn(b, h, n, n, generator=g, dtype=torch.float64)
    qw = torch.randn(b, n, 2 * RANK + 1, h, generator=g, dtype=torch.float64)
    kw = torch.randn(b, n, 2 * RANK + 1, h, generator=g, dtype=torch.float64)
    got = compose(a, qw, kw)
    for t in range(n):
        for s in range(n):
            w = torch.eye(h, dtype=torch.float64) + torch.diag(qw[0, t, 2 * RANK] + kw[0, s, 2 * RANK])
            w = w + qw[0, t, :RANK].t() @ qw[0, t, RANK:2 * RANK] + kw[0, s, :RANK].t() @ kw[0, s, RANK:2 * RANK]
            want = a[0, :, t, s] @ w
            assert torch.allclose(got[0, :, t, s], want, rtol=1e-12, atol=1e-12), f"self-check failed at ({t}, {s})"
    print("self-check: compose() equals the explicit H×H matrices")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_harness_args(p)
    p.add_argument("--ops", default="compose,dcmha", help="comma-separated: compose, dcmha")
    p.add_argument("--self-check", action="store_true", help="only check compose() against explicit matrices")
    args = p.parse_args()
    if torch is None:
        sys.exit("bench_dcmha_torch.py: PyTorch is not installed (run with an interpreter that has torch)")
    self_check()
    if args.self_check:
        return
    wanted = [o for o in args.ops.split(",") if o]
    for o in wanted:
        if o not in ("compose", "dcmha"):
            sys.exit(f"bench_dcmha_torch.py: unknown op '{o}' (known: compose,dcmha)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = common.resolve_devices(args, "bench_dcmha_torch.py")
    print(f"torch {torch.__version__}: {torch.get_num_threads()} threads; median of {args.repeats} after "
          f"{args.warmup} warm-up; inputs rotated over >= {args.cold_mib} MiB")
    records = []
    for device in devices:
        name = "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"
        for case in cases(device.type):
            if case.op not in wanted:
                continue
            fwd, bwd = common.measure(case, device, args)
            passes = [("forward", fwd, case.fwd_bytes, case.fwd_flops)]
            if bwd is not None:
                passes.append(("backward", bwd, case.bwd_bytes, case.bwd_flops))
                if case.op == "dcmha":
                    passes.append(("forward+backward", (fwd[0] + bwd[0], bwd[1]), 0.0, case.fwd_flops + case.bwd_flops))
            for pass_name, (ms, calls), nbytes, flops in passes:
                r = {"op": case.op, "pass": pass_name, "device": name, "shape": case.shape, "dtype": "float32",
                     "ms": ms, "gbps": common.rate(nbytes, ms), "gflops": common.rate(flops, ms)}
                if getattr(case, "impl", None):
                    r["impl"] = case.impl
                if getattr(case, "tokens", 0):
                    r["tokens_per_s"] = case.tokens / (ms * 1e-3) if ms > 0 else None
                print(f"{name:<7} {case.op:<8} {case.shape:<28} {pass_name:<17} {ms:>10.4f} ms  {calls:>5} calls",
                      flush=True)
                records.append(r)
    common.write_records(args.json, records)


if __name__ == "__main__":
    main()
