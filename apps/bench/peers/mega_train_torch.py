#!/usr/bin/env python3
"""PyTorch peer for mixgrad's MEGA training speed (compare with `build/bin/bench --mega-train` at the same flags).

The MEGA LRA encoder written from the project's spec (specs/lra.md §6.2), not from MEGA's code:
  * MultiHeadEMA (bidirectional, ndim h): the kernel form K[j, l] = Σ_n p·β·q^l·γ/√h (p = σ(δ), q = 1 − p·σ(α)),
    l < k = min(truncation, L), applied as the two-sided convolution
    y[t] = Σ_{m<k} Kf[m]·x[t−m] + Σ_{m<k} Kb[m]·x[t+m], out = SiLU(y + ω ⊙ x).
    --ema fft (default): one real FFT per call of size ≥ L + 2k − 2 (the next power of two) — what MEGA's code
    does; --ema direct: a depthwise F.conv1d with the 2k − 1 taps (O(L·k) per channel).
  * single-head gated attention: V = SiLU(x̂W_v + b_v); X′ = Drop(EMA(x̂)); [u, zr, hx] = X′W_mx + b_mx;
    φ = σ(u); Z, γ = split(SiLU(zr)); Q, K = Z ⊙ κ + μ; scores with the relative bias b_rel (2P − 1 scalars,
    P = L, or the chunk for chunked attention) under softmax (·z^−½), laplace or relu² (·1/n, n = valid keys);
    O = A·V; Ĥ = SiLU(hx + (γ ⊙ O)W_h + b_h); Y = x + φ ⊙ (Ĥ − x); chunked attention with --chunk c.
  * normalized FFN fc2(Drop(SiLU(fc1(x)))) with a residual; LayerNorm / ScaleNorm / BatchNorm, pre- or post-norm.
  * token embedding N(0, d^−½) with a zero pad row, no positions, final norm if pre-norm, masked-mean pool, head
    GELU(Linear(d → cls_out)) then Linear(cls_out → classes, no bias).
The attention materialises the [L, L] (or [c, c] per chunk) scores: that is what a plain PyTorch implementation
does (PyTorch 1.13, Debian's, has no fused attention with an additive bias).

Training: every step draws fixed-length batches of random tokens 1..vocab−1 (no padding unless --min-len < L) and
random labels, built before the clock starts; a step is forward, cross-entropy, backward, gradient clipping and
AdamW (β (0.9, 0.98), eps 1e-8, weight decay; MEGA's LRA recipe) with a linear warm-up. Throughput is valid tokens
per second of step time. Output: one record per run in the format of apps/bench's JSON
({op, pass, device, shape, dtype, ms, gbps, gflops, tokens_per_s, ...}; ms = the median step); --json FILE writes the
records (bench_ops_torch.write_records).

Usage (Debian's python3-torch: run it with /usr/bin/python3):
    /usr/bin/python3 apps/bench/peers/mega_train_torch.py --threads 2                      # ListOps sizes, B 4
    /usr/bin/python3 apps/bench/peers/mega_train_torch.py --embed-dim 16 --zdim 8 --hdim 32 --ffn 32 --layers 2 \\
        --length 64 --batch 2 --steps 2 --warmup-steps 1 --json /tmp/mega_torch.json
"""
import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ops_torch as common  # noqa: E402  (write_records; handles a missing torch)

torch = common.torch
if torch is not None:
    import torch.nn as nn
    import torch.nn.functional as F
    Module = nn.Module
else:  # keep --help usable without torch
    Module = object

BETAS, ADAM_EPS = (0.9, 0.98), 1e-8  # MEGA's LRA recipe (specs/lra.md §7.2)
NORM_EPS = 1e-5
LAPLACE_MU, LAPLACE_SIGMA = 0.707107, 0.282095


# ---- EMA (spec §6.2) -------------------------------------------------------------------------------------------
class MultiHeadEMA(Module):
    def __init__(self, d, ndim, truncation, impl):
        super().__init__()
        self.d, self.ndim, self.truncation, self.impl = d, ndim, truncation, impl
        rows = 2 * d  # bidirectional: rows [0, d) forward, [d, 2d) backward
        self.delta = nn.Parameter(torch.randn(rows, ndim) * 0.2)
        self.alpha = nn.Parameter(torch.randn(rows, ndim) * 0.2)
        signs = torch.tensor([1.0 if n % 2 == 0 else -1.0 for n in range(ndim)])
        self.beta = nn.Parameter(torch.randn(rows, ndim) * 0.02 + signs)
        self.gamma = nn.Parameter(torch.randn(rows, ndim))
        self.omega = nn.Parameter(torch.randn(d))

    def kernel(self, k):
        """K [2d, k]: Σ_n p·β·γ/√h · q^l, the powers as exp(l·log q) (0 < q < 1)."""
        p = torch.sigmoid(self.delta)
        q = 1.0 - p * torch.sigmoid(self.alpha)
        coef = p * self.beta * self.gamma / math.sqrt(self.ndim)  # [2d, h]
        powers = torch.exp(torch.arange(k, device=p.device, dtype=p.dtype)[None, None, :] * torch.log(q)[:, :, None])
        return torch.einsum("rn,rnl->rl", coef, powers)

    def two_sided(self, k):
        """Taps w[i], i = s + k − 1 for offsets s in (−k, k): y[t] = Σ_s w[s]·x[t − s] (s ≥ 0 forward, s ≤ 0
        backward; the s = 0 tap is in both sums)."""
        kk = self.kernel(k)
        kf, kb = kk[:self.d], kk[self.d:]
        return torch.cat([kb[:, 1:].flip(-1), kf[:, :1] + kb[:, :1], kf[:, 1:]], dim=-1)  # [d, 2k − 1]

    def forward(self, x, keep):
        # x [B, L, d]; keep [B, L] bool or None (no padding). Pads are zeroed before the convolution; ω uses raw x.
        b, L, d = x.shape
        k = L if self.truncation <= 0 else min(self.truncation, L)
        xs = x if keep is None else x * keep[:, :, None].to(x.dtype)
        xt = xs.transpose(1, 2)  # [B, d, L]
        w = self.two_sided(k)
        if self.impl == "fft":
            n = 1 << (L + 2 * k - 2 - 1).bit_length()  # the full linear convolution has L + 2k − 2 samples
            c = torch.fft.irfft(torch.fft.rfft(xt, n=n) * torch.fft.rfft(w, n=n), n=n)
            y = c[..., k - 1:k - 1 + L]
        else:  # conv1d correlates: weight index i meets x[t + i − (k − 1)], so the taps go in reversed
            y = F.conv1d(xt, w.flip(-1)[:, None, :], padding=k - 1, groups=d)
        return F.silu(y.transpose(1, 2) + self.omega * x)


# ---- norms -----------------------------------------------------------------------------------------------------
class ScaleNorm(Module):
    def __init__(self):
        super().__init__()
        self.scalar = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.scalar * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS)


class SequenceNorm(Module):
    def __init__(self, kind, d):
        super().__init__()
        self.kind = kind
        self.norm = {"layernorm": lambda: nn.LayerNorm(d, eps=NORM_EPS), "scalenorm": ScaleNorm,
                     "batchnorm": lambda: nn.BatchNorm1d(d, eps=NORM_EPS)}[kind]()

    def forward(self, x):
        if self.kind == "batchnorm":  # statistics over (batch × positions) per channel; no padding (checked)
            return self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.norm(x)


# ---- gated attention (spec §6.2 steps 1-8) --------------------------------------------------------------------
def laplace(x):
    return 0.5 * (1.0 + torch.erf((x - LAPLACE_MU) / (LAPLACE_SIGMA * math.sqrt(2.0))))


class GatedAttention(Module):
    def __init__(self, c):
        super().__init__()
        d, z, v = c["d"], c["z"], c["v"]
        self.d, self.z, self.v, self.fn, self.chunk, self.prenorm = d, z, v, c["attention"], c["chunk"], c["prenorm"]
        self.dropout, self.act_dropout = c["dropout"], c["act_dropout"]
        self.norm = SequenceNorm(c["norm"], d)
        self.ema = MultiHeadEMA(d, c["ndim"], c["truncation"], c["ema"])
        self.v_proj = nn.Linear(d, v)
        self.mx_proj = nn.Linear(d, d + z + v + d)
        self.h_proj = nn.Linear(v, d)
        self.qk_weight = nn.Parameter(torch.randn(2, z) * 0.02)
        self.qk_bias = nn.Parameter(torch.zeros(2, z))
        span = c["chunk"] if 0 < c["chunk"] < c["L"] else c["L"]
        self.span = span
        self.rel_pos_bias = nn.Parameter(torch.randn(2 * span - 1) * 0.02)
        for lin in (self.v_proj, self.mx_proj, self.h_proj):
            nn.init.normal_(lin.weight, 0.0, 0.02)
            nn.init.zeros_(lin.bias)
        i = torch.arange(span)
        self.register_buffer("bias_index", (span - 1 + i[None, :] - i[:, None]), persistent=False)  # [span, span]

    def attend(self, q, k, v, keep):
        # q, k [B, G, c, z], v [B, G, c, v] (G chunks of c positions; G = 1 for full attention); keep [B, G, c] or None
        s = q @ k.transpose(-2, -1)
        bias = self.rel_pos_bias[self.bias_index]
        if self.fn == "softmax":
            s = s * self.z ** -0.5 + bias
            if keep is not None:  # padded keys → −∞, except in a span with no valid key (left unmasked)
                any_valid = keep.any(-1, keepdim=True)[..., None]
                s = s.masked_fill(~keep[:, :, None, :] & any_valid, float("-inf"))
            a = torch.softmax(s, dim=-1)
        else:
            if keep is None:
                n = float(s.shape[-1])
            else:
                n = keep.sum(-1).clamp(min=1).to(s.dtype)[:, :, None, None]
            s = s / n + bias
            a = laplace(s) if self.fn == "laplace" else torch.relu(s).square()
            if keep is not None:
                a = a * keep[:, :, None, :].to(a.dtype)
        a = F.dropout(a, self.act_dropout, self.training) if self.act_dropout > 0 else a
        return a @ v

    def forward(self, x, keep):
        b, L, d = x.shape
        residual = x
        xh = self.norm(x) if self.prenorm else x
        v = F.silu(self.v_proj(xh))
        xe = F.dropout(self.ema(xh, keep), self.dropout, self.training)
        u, zr, hx = torch.split(self.mx_proj(xe), [d, self.z + self.v, d], dim=-1)
        phi = torch.sigmoid(u)
        zz, gamma = torch.split(F.silu(zr), [self.z, self.v], dim=-1)
        q = zz * self.qk_weight[0] + self.qk_bias[0]
        k = zz * self.qk_weight[1] + self.qk_bias[1]
        c = self.span
        g = L // c  # chunked attention needs L % c == 0 (checked); full attention is one chunk of L
        shape = lambda t: t.reshape(b, g, c, t.shape[-1])
        kp = None if keep is None else keep.reshape(b, g, c)
        v = F.dropout(v, self.act_dropout, self.training) if self.act_dropout > 0 else v
        o = self.attend(shape(q), shape(k), shape(v), kp).reshape(b, L, self.v)
        h = F.silu(hx + self.h_proj(gamma * o))
        h = F.dropout(h, self.dropout, self.training)
        y = residual + phi * (h - residual)
        return y if self.prenorm else self.norm(y)


class NormalizedFFN(Module):
    def __init__(self, c):
        super().__init__()
        self.prenorm, self.dropout, self.act_dropout = c["prenorm"], c["dropout"], c["act_dropout"]
        self.norm = SequenceNorm(c["norm"], c["d"])
        self.fc1 = nn.Linear(c["d"], c["ffn"])
        self.fc2 = nn.Linear(c["ffn"], c["d"])
        for lin in (self.fc1, self.fc2):
            nn.init.normal_(lin.weight, 0.0, 0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, x):
        r = x
        x = self.norm(x) if self.prenorm else x
        x = F.silu(self.fc1(x))
        x = F.dropout(x, self.act_dropout, self.training) if self.act_dropout > 0 else x
        x = F.dropout(self.fc2(x), self.dropout, self.training) + r
        return x if self.prenorm else self.norm(x)


class MegaBlock(Module):
    def __init__(self, c):
        super().__init__()
        self.attn = GatedAttention(c)
        self.ffn = NormalizedFFN(c)

    def forward(self, x, keep):
        return self.ffn(self.attn(x, keep))


class MegaLra(Module):
    def __init__(self, c):
        super().__init__()
        d = c["d"]
        self.prenorm, self.dropout = c["prenorm"], c["dropout"]
        self.embed = nn.Embedding(c["vocab"], d, padding_idx=0)
        nn.init.normal_(self.embed.weight, 0.0, d ** -0.5)
        with torch.no_grad():
            self.embed.weight[0].zero_()
        self.blocks = nn.ModuleList([MegaBlock(c) for _ in range(c["layers"])])
        self.final_norm = SequenceNorm(c["norm"], d) if c["prenorm"] else None
        self.head_fc = nn.Linear(d, c["cls_out"])
        self.head_out = nn.Linear(c["cls_out"], c["classes"], bias=False)
        for lin in (self.head_fc, self.head_out):
            nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(self.head_fc.bias)

    def forward(self, tokens, lengths, keep):
        x = F.dropout(self.embed(tokens), self.dropout, self.training)
        mask = None if keep is None else keep[:, :, None].to(x.dtype)
        if mask is not None:
            x = x * mask
        for blk in self.blocks:
            x = blk(x, keep)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if mask is not None:
            x = x * mask
        pooled = x.sum(1) / lengths[:, None].to(x.dtype)  # masked mean: valid positions over the true length
        return self.head_out(F.gelu(F.dropout(self.head_fc(pooled), self.dropout, self.training)))


# ---- the run -----------------------------------------------------------------------------------------------------
def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--embed-dim", type=int, default=80, help="model width d (default 80: ListOps, §7.2)")
    ap.add_argument("--zdim", type=int, default=64, help="shared representation z (default 64)")
    ap.add_argument("--hdim", type=int, default=160, help="value / gate width v (default 160)")
    ap.add_argument("--ffn", type=int, default=160, help="normalized FFN hidden width (default 160)")
    ap.add_argument("--layers", type=int, default=6, help="MEGA blocks (default 6)")
    ap.add_argument("--ndim", type=int, default=16, help="EMA dimension h (default 16)")
    ap.add_argument("--truncation", type=int, default=1024, help="EMA kernel length cap, 0 = L (default 1024)")
    ap.add_argument("--ema", default="fft", choices=["fft", "direct"], help="EMA convolution (default fft)")
    ap.add_argument("--length", type=int, default=2000, help="sequence length L (default 2000)")
    ap.add_argument("--min-len", type=int, default=0,
                    help="random lengths in [min-len, L] with padding (default 0: every sample has L tokens)")
    ap.add_argument("--batch", type=int, default=4, help="batch size (default 4)")
    ap.add_argument("--vocab", type=int, default=16, help="vocabulary incl. the pad id 0 (default 16)")
    ap.add_argument("--classes", type=int, default=10, help="classes (default 10)")
    ap.add_argument("--cls-out", type=int, default=0, help="head hidden width (default 0: 2·d, as §7.2)")
    ap.add_argument("--chunk", type=int, default=-1, help="attention chunk, -1 = full (default -1)")
    ap.add_argument("--attention", default="softmax", choices=["softmax", "laplace", "relu2"],
                    help="attention function (default softmax)")
    ap.add_argument("--norm", default="layernorm", choices=["layernorm", "scalenorm", "batchnorm"],
                    help="norm (default layernorm)")
    ap.add_argument("--prenorm", action="store_true", help="pre-norm blocks (default: post-norm, ListOps's)")
    ap.add_argument("--dropout", type=float, default=0.1, help="dropout (default 0.1)")
    ap.add_argument("--act-dropout", type=float, default=0.0, help="attention / hidden dropout (default 0)")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    ap.add_argument("--lr-warmup", type=int, default=3000, help="linear warm-up steps (default 3000)")
    ap.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    ap.add_argument("--clip-norm", type=float, default=1.0, help="gradient norm clip, 0 = off (default 1.0)")
    ap.add_argument("--seed", type=int, default=0, help="seed of weights, dropout and data (default 0)")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps (default 10)")
    ap.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first (default 2)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ap.add_argument("--threads", type=int, default=cores,
                    help="torch.set_num_threads(N), one inter-op thread (default: every core this process may use)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--json", help="write the record to this JSON file")
    ap.add_argument("--info", action="store_true", help="print the configuration and parameters, then exit")
    return ap.parse_args()


def config_from(args):
    c = dict(d=args.embed_dim, z=args.zdim, v=args.hdim, ffn=args.ffn, layers=args.layers, ndim=args.ndim,
             truncation=args.truncation, ema=args.ema, L=args.length, batch=args.batch, vocab=args.vocab,
             classes=args.classes, cls_out=args.cls_out or 2 * args.embed_dim, chunk=args.chunk,
             attention=args.attention, norm=args.norm, prenorm=args.prenorm, dropout=args.dropout,
             act_dropout=args.act_dropout, min_len=args.min_len or args.length)
    problems = []
    for key in ("d", "z", "v", "ffn", "layers", "ndim", "L", "batch"):
        if c[key] < 1:
            problems.append(f"{key} = {c[key]} must be >= 1")
    if c["vocab"] < 2 or c["classes"] < 2:
        problems.append(f"--vocab {c['vocab']} and --classes {c['classes']} must be >= 2")
    if c["truncation"] < 0:
        problems.append(f"--truncation {c['truncation']} must be >= 0 (0 = L)")
    if c["chunk"] == 0 or c["chunk"] < -1:
        problems.append(f"--chunk {c['chunk']} must be -1 (full) or >= 1")
    if 0 < c["chunk"] < c["L"] and c["L"] % c["chunk"]:
        problems.append(f"--length {c['L']} must be a multiple of --chunk {c['chunk']} (pad to it, as MEGA does)")
    if not 1 <= c["min_len"] <= c["L"]:
        problems.append(f"--min-len {args.min_len} must be in [1, --length {c['L']}]")
    if c["min_len"] < c["L"] and c["norm"] == "batchnorm":
        problems.append("--norm batchnorm needs fixed-length batches here (--min-len 0): torch's BatchNorm1d would "
                        "count the padding in its statistics")
    if not (0 <= c["dropout"] < 1 and 0 <= c["act_dropout"] < 1):
        problems.append("dropout rates must be in [0, 1)")
    if args.steps < 1 or args.warmup_steps < 0:
        problems.append("--steps must be >= 1 and --warmup-steps >= 0")
    if problems:
        sys.exit("mega_train_torch.py: " + "; ".join(problems))
    return c


def shape_of(c):
    """The record's shape string; apps/bench's mega_train case writes the same one for the same sizes."""
    return (f"[{c['batch']}, {c['L']}] d={c['d']} z={c['z']} v={c['v']} ffn={c['ffn']} layers={c['layers']} "
            f"ndim={c['ndim']} trunc={c['truncation']} chunk={c['chunk']} {c['attention']} {c['norm']}"
            f"{' prenorm' if c['prenorm'] else ''}")


def make_batches(c, count, gen):
    out = []
    for _ in range(count):
        tokens = torch.randint(1, c["vocab"], (c["batch"], c["L"]), generator=gen)
        lengths = torch.randint(c["min_len"], c["L"] + 1, (c["batch"],), generator=gen)
        keep = None
        if c["min_len"] < c["L"]:
            keep = torch.arange(c["L"])[None, :] < lengths[:, None]
            tokens = tokens * keep
        out.append((tokens, lengths, keep, torch.randint(0, c["classes"], (c["batch"],), generator=gen)))
    return out


def main():
    args = parse_args()
    if torch is None:
        sys.exit("mega_train_torch.py: PyTorch is not installed (Debian: apt-get install python3-torch; run "
                 "/usr/bin/python3)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    c = config_from(args)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # mixgrad's default FP32 GEMMs
    model = MegaLra(c)
    params = sum(p.numel() for p in model.parameters())
    if args.info:
        print(f"MEGA LRA encoder (PyTorch peer): {shape_of(c)}, EMA {c['ema']}")
        for name, p in model.named_parameters():
            print(f"  {name:<40} {str(list(p.shape)):<18} {p.numel()}")
        print(f"total parameters: {params}")
        return
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=BETAS, eps=ADAM_EPS, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    batches = make_batches(c, args.warmup_steps + args.steps, gen)

    times, losses, tokens_timed = [], [], 0
    for i, (tokens, lengths, keep, labels) in enumerate(batches):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        tokens, lengths, labels = tokens.to(dev), lengths.to(dev), labels.to(dev)
        keep = None if keep is None else keep.to(dev)
        loss = F.cross_entropy(model(tokens, lengths, keep), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
        for g in opt.param_groups:  # linear warm-up (the decay after it does not matter for a few steps)
            g["lr"] = args.lr * min(1.0, (i + 1) / max(1, args.lr_warmup))
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            sys.exit(f"mega_train_torch.py: the loss is {losses[-1]} at step {i + 1}")
        if i >= args.warmup_steps:
            times.append(dt)
            tokens_timed += int(lengths.sum())

    ms = statistics.median(times) * 1e3
    tok_s = tokens_timed / sum(times)
    rec = {"op": "mega_train", "pass": "train_step", "device": str(dev), "shape": shape_of(c), "dtype": "float32",
           "ms": ms, "gbps": None, "gflops": None, "tokens_per_s": tok_s, "peer": "pytorch",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "params": params, "ema": c["ema"],
           "ms_mean": statistics.mean(times) * 1e3, "steps": args.steps, "warmup_steps": args.warmup_steps,
           "loss_first": losses[0], "loss_last": losses[-1]}
    print(f"mega_train_torch: {rec['shape']} on {dev} ({rec['threads']} threads, torch {torch.__version__}, EMA "
          f"{c['ema']}), {params:,} parameters: median {ms:.1f} ms per step over {args.steps} steps, "
          f"{tok_s:,.0f} tok/s; loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    common.write_records(args.json, [rec])


if __name__ == "__main__":
    main()
