#!/usr/bin/env python3
"""PyTorch peer for mixgrad's LRA training speed on ListOps (compare with the tok/s that
`build/bin/lra train --task listops --preset P --max-steps N` prints).

Builds the same LRA Transformer as models/lra_transformer.cpp for a preset of apps/lra/lra_presets.cpp (token
embedding N(0, 1), a zero-initialised class token, LRA's fixed sinusoidal positions, pre-LN blocks with a fused
bias-free qkv projection, key-padding softmax attention and a tanh-GELU MLP, final LayerNorm, class-token or masked-mean pooling,
Dense-ReLU-Dense head; xavier-uniform block layers with q, k and v initialised as separate matrices, a lecun-normal
head: LRA's choices) with the same parameter names and count, and times full training steps
(batch to the device, forward, cross-entropy, backward, optional clip, AdamW with the preset's schedule) on
batches padded to their longest sample, exactly as mixgrad's dynamic padding (SequencePadding{0, 1}) makes them.

Throughput is counted the way mixgrad counts it: valid tokens (the samples' lengths, not the padding and not the
class token) per second of step time. Prints one JSON record per run in the format of apps/bench
({op, pass, device, shape, dtype, ms, gbps, gflops, ...}, ms = the median step) on stdout and a readable line on
stderr; --json FILE appends the record to a JSON array in FILE (created when missing).

Data: --data DIR reads DIR/basic_train.tsv (the LRA release format, or `lra generate listops` output); without it,
random token sequences with lengths uniform in [--min-len, --max-len] (the record's "data" field says which).

Usage (Debian's python3-torch: run it with /usr/bin/python3):
    /usr/bin/python3 apps/bench/peers/lra_train_torch.py --preset mini --data /tmp/lo_mini --threads 2
    /usr/bin/python3 apps/bench/peers/lra_train_torch.py --preset paper --device cuda --attention sdpa
    /usr/bin/python3 apps/bench/peers/lra_train_torch.py --preset paper --info   # parameter listing only
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("lra_train_torch.py: PyTorch is not installed "
             "(Debian: apt-get install python3-torch; run /usr/bin/python3)")

# ---- presets (apps/lra/lra_presets.cpp, task listops) ------------------------------------------------------------
# The LRA rsqrt schedule is const·rsqrt(max(step, warmup)); mixgrad's --lr is its peak const/√warmup.
# qkv_dim 0 = the model width: the presets store it so (set_sizes), which makes --embed-dim carry the qkv width along.
PRESETS = {
    "paper": dict(depth=4, embed_dim=512, heads=8, qkv_dim=0, mlp_dim=1024, max_len=2000, dropout=0.1,
                  attn_dropout=0.1, batch_size=32, lr=0.05 / math.sqrt(1000), schedule="rsqrt", lr_warmup=1000,
                  weight_decay=0.1, clip_norm=0.0, updates=5000, epochs=0, pool="cls",
                  # the generator's bounds (ListOpsConfig defaults: strict, so 501..1999 tokens) and train count
                  gen_min=500, gen_max=2000, gen_train=96000),
    "mini": dict(depth=2, embed_dim=64, heads=4, qkv_dim=0, mlp_dim=128, max_len=250, dropout=0.1,
                 attn_dropout=0.1, batch_size=32, lr=3e-3, schedule="cosine", lr_warmup=300, weight_decay=0.01,
                 clip_norm=0.0, updates=0, epochs=4, pool="mean", gen_min=50, gen_max=250, gen_train=20000),
}
VOCAB, CLASSES, PAD = 16, 10, 0
# apps/data/listops.h: PAD 0, digits 0..9 -> 1..10, [MIN 11, [MAX 12, [MED 13, [SM 14, close (`]` or `X`) 15.
TOKEN_IDS = {**{str(d): 1 + d for d in range(10)}, "[MIN": 11, "[MAX": 12, "[MED": 13, "[SM": 14, "]": 15, "X": 15}
LN_EPS = 1e-6
BETAS, ADAM_EPS = (0.9, 0.98), 1e-9  # LRA's Adam (lra_recipe)


# ---- model (models/lra_transformer.cpp, nn/transformer.cpp, nn/mixers/softmax_attention.cpp) ---------------------
def sinusoidal_positions(n, d):
    """LRA's fixed table [n, d]: sin(p·ω_i) in column 2i, cos(p·ω_i) in column 2i + 1, ω_i = 10000^(−2i/d).
    Computed in float64 and rounded once, as mixgrad does, so both start from the same float32 table."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    w = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float64) / d)[None, :]
    return torch.stack([torch.sin(pos * w), torch.cos(pos * w)], dim=2).reshape(n, d).float()


class SoftmaxAttention(nn.Module):
    def __init__(self, dim, inner, heads, attn_drop, proj_drop, impl):
        super().__init__()
        self.heads, self.head_dim, self.attn_drop, self.impl = heads, inner // heads, attn_drop, impl
        # One fused projection in timm's (3, H, Dh) channel order, like mixgrad's packed_qkv_attention; no bias
        # (LRA's attention has none; its output projection has none either, mixgrad's and this one's have one).
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)
        self.drop = nn.Dropout(proj_drop)

    def forward(self, x, keep):
        # keep: bool [B, 1, 1, n], True where the key is a real token (key padding; queries are never masked).
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        p = self.attn_drop if self.training else 0.0
        if self.impl == "sdpa":
            # Its default scale is 1/sqrt(q.size(-1)) = 1/sqrt(I/H), the same as below. A boolean mask rules out
            # the flash kernel; PyTorch picks among the others.
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p)
        else:
            # Scaling q (B·H·n·Dh values) costs less than scaling the scores (B·H·n·n); the result is the same.
            s = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)
            a = F.dropout(torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1), p, self.training)
            o = a @ v
        return self.drop(self.proj(o.transpose(1, 2).reshape(b, n, -1)))


class MLP(nn.Module):
    def __init__(self, dim, hidden, drop):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        # flax's nn.gelu, LRA's, is the tanh approximation (F.gelu's default would be the exact erf form).
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x), approximate="tanh"))))


class Block(nn.Module):
    def __init__(self, c, impl):
        super().__init__()
        self.norm1 = nn.LayerNorm(c["embed_dim"], eps=LN_EPS)
        self.attn = SoftmaxAttention(c["embed_dim"], c["qkv_dim"], c["heads"], c["attn_dropout"], c["dropout"], impl)
        self.norm2 = nn.LayerNorm(c["embed_dim"], eps=LN_EPS)
        self.mlp = MLP(c["embed_dim"], c["mlp_dim"], c["dropout"])

    def forward(self, x, keep):
        x = x + self.attn(self.norm1(x), keep)
        return x + self.mlp(self.norm2(x))


class LraTransformer(nn.Module):
    """mixgrad's LraTransformer for token input, pool cls or mean, sinusoidal positions, one document (ListOps).
    Attribute names follow mixgrad's, so the parameter listing matches `lra info` name for name."""

    def __init__(self, c, impl):
        super().__init__()
        d = c["embed_dim"]
        self.dropout, self.pool = c["dropout"], c["pool"]
        if self.pool == "cls":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.embed = nn.Embedding(VOCAB, d)  # N(0, 1), PyTorch's default and LRA's; no padding_idx in either
        # A buffer, not a parameter: the table is fixed, and mixgrad does not count it either.
        self.register_buffer("sinusoid", sinusoidal_positions(c["max_len"] + 1, d), persistent=False)
        self.blocks = nn.ModuleList([Block(c, impl) for _ in range(c["depth"])])
        self.norm = nn.LayerNorm(d, eps=LN_EPS)
        self.head = nn.Sequential(nn.Linear(d, c["mlp_dim"]), nn.ReLU(), nn.Linear(c["mlp_dim"], CLASSES))
        # LRA's block layers: xavier-uniform weights (the fused qkv as three [I, D] matrices, LRA's separate query,
        # key and value layers), zero biases; the head keeps flax's Dense default, lecun-normal (std 1/sqrt(fan_in)).
        # The embedding and LayerNorms keep PyTorch's defaults, which are mixgrad's.
        for name, m in self.blocks.named_modules():
            if isinstance(m, nn.Linear):
                parts = 3 if name.endswith("qkv") else 1
                for w in m.weight.data.chunk(parts, dim=0):
                    nn.init.xavier_uniform_(w)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.head.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, m.in_features ** -0.5)
                nn.init.zeros_(m.bias)

    def forward(self, tokens, lengths):
        b = tokens.shape[0]
        x = self.embed(tokens)
        if self.pool == "cls":
            x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
            lengths = lengths + 1  # the class token is valid too
        n = x.shape[1]
        x = F.dropout(x + self.sinusoid[:n], self.dropout, self.training)
        valid = torch.arange(n, device=x.device)[None, :] < lengths[:, None]  # [B, n]
        for blk in self.blocks:
            x = blk(x, valid[:, None, None, :])
        x = self.norm(x)
        if self.pool == "cls":
            return self.head(x[:, 0])
        # Masked mean: the valid positions' sum over the sample's length (mixgrad's masked_mean).
        pooled = (x * valid[:, :, None].to(x.dtype)).sum(1) / lengths[:, None].clamp(min=1).to(x.dtype)
        return self.head(pooled)


# ---- schedule (nn/optim LrSchedule) ----------------------------------------------------------------------------
def lr_at(step, kind, peak, warmup, total, min_lr=0.0):
    """The learning rate of 0-based optimiser step `step`: linear warm-up, then cosine / linear / rsqrt / constant."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    t = min(max((step - warmup) / max(1, total - warmup), 0.0), 1.0)
    if kind == "cosine":
        return min_lr + 0.5 * (peak - min_lr) * (1.0 + math.cos(math.pi * t))
    if kind == "linear":
        return peak - (peak - min_lr) * t
    if kind == "rsqrt":
        return peak * math.sqrt(max(warmup, 1) / (step + 1))
    return peak


# ---- data (apps/data/listops_tsv.cpp, sequence_batches.cpp) ----------------------------------------------------
def tokenize(source):
    """`(` and `)` deleted before the split (so they never separate tokens), whitespace split, ids as above.
    None for an unknown token or an empty source."""
    ids = [TOKEN_IDS.get(t) for t in source.replace("(", "").replace(")", "").split()]
    return ids if ids and None not in ids else None


class ListOpsRows:
    """basic_train.tsv kept as raw lines; a row is tokenized only when a batch draws it, because tokenizing the
    paper set's 96,000 rows of ~1,000 tokens in Python would take far longer than the benchmark itself. A bad row
    (not two fields, label not 0..9, unknown token, empty source) is skipped and counted, as mixgrad's reader does."""

    def __init__(self, path, max_len):
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        if not lines or lines[0].rstrip("\r") != "Source\tTarget":
            sys.exit(f"lra_train_torch.py: {path}: line 1 is not the header \"Source<TAB>Target\"")
        if lines[-1] == "":
            lines.pop()  # the final line end
        self.rows = lines[1:]
        if not self.rows:
            sys.exit(f"lra_train_torch.py: {path}: only the header line, expected data rows")
        self.max_len, self.bad, self.cut = max_len, set(), set()  # row numbers, so a row drawn twice counts once

    def __len__(self):
        return len(self.rows)

    def get(self, i):
        fields = self.rows[i].rstrip("\r").split("\t")
        ids = None
        if len(fields) == 2 and re.fullmatch(r"[0-9]+", fields[1]) and int(fields[1]) <= 9:
            ids = tokenize(fields[0])
        if ids is None:
            self.bad.add(i)
            return None
        if len(ids) > self.max_len:
            ids = ids[:self.max_len]
            self.cut.add(i)
        return ids, int(fields[1])


def pad_batch(samples):
    """tokens int64 [B, L] zero-padded to the batch's longest sample, lengths int64 [B], labels int64 [B]."""
    longest = max(len(s) for s, _ in samples)
    tokens = torch.full((len(samples), longest), PAD, dtype=torch.int64)
    for r, (s, _) in enumerate(samples):
        tokens[r, :len(s)] = torch.tensor(s, dtype=torch.int64)
    lengths = torch.tensor([len(s) for s, _ in samples], dtype=torch.int64)
    return tokens, lengths, torch.tensor([y for _, y in samples], dtype=torch.int64)


def tsv_batches(rows, batch, count, gen):
    """`count` full batches taken in order from seeded permutations of the rows (a new one whenever the last runs
    out, like a new epoch; a partial batch at the end of a permutation is not used)."""
    out, order, pos, cur, good = [], [], 0, [], 0
    while len(out) < count:
        if pos == len(order):
            if order and good < batch:  # checked after a whole pass, since bad rows show only when drawn
                sys.exit(f"lra_train_torch.py: {good} usable rows are fewer than one batch of {batch}")
            order, pos, good = torch.randperm(len(rows), generator=gen).tolist(), 0, 0
            cur = []  # an epoch's leftover does not spill into the next
        s = rows.get(order[pos])
        pos += 1
        if s is not None:
            cur.append(s)
            good += 1
        if len(cur) == batch:
            out.append(pad_batch(cur))
            cur = []
    return out


def synthetic_batches(batch, count, min_len, max_len, gen):
    """Random ids 1..15 (no padding inside a sample), lengths uniform in [min_len, max_len], random labels."""
    out = []
    for _ in range(count):
        lens = torch.randint(min_len, max_len + 1, (batch,), generator=gen).tolist()
        ys = torch.randint(0, CLASSES, (batch,), generator=gen).tolist()
        out.append(pad_batch([(torch.randint(1, VOCAB, (n,), generator=gen).tolist(), y) for n, y in zip(lens, ys)]))
    return out


# ---- the run -----------------------------------------------------------------------------------------------------
def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--task", default="listops", choices=["listops"])
    ap.add_argument("--preset", default="mini", choices=sorted(PRESETS))
    d = "default: the preset's"
    # Model flags, named as `lra train`'s.
    ap.add_argument("--embed-dim", type=int, help=f"model width ({d})")
    ap.add_argument("--depth", type=int, help=f"encoder blocks ({d})")
    ap.add_argument("--heads", type=int, help=f"attention heads ({d})")
    ap.add_argument("--qkv-dim", type=int, help=f"qkv width; 0 = the model width ({d})")
    ap.add_argument("--mlp-dim", type=int, help=f"MLP hidden width, also the head's ({d})")
    ap.add_argument("--max-len", type=int, help=f"longest sequence; longer ones are cut ({d})")
    ap.add_argument("--dropout", type=float, help=f"dropout ({d})")
    ap.add_argument("--attn-dropout", type=float, help=f"attention dropout ({d})")
    # Recipe flags.
    ap.add_argument("--batch-size", type=int, help=f"batch size ({d})")
    ap.add_argument("--lr", type=float, help=f"peak learning rate ({d})")
    ap.add_argument("--schedule", choices=["cosine", "linear", "rsqrt", "constant"], help=f"lr schedule ({d})")
    ap.add_argument("--lr-warmup", type=int, help=f"linear lr warm-up steps (`lra train --warmup`; {d})")
    ap.add_argument("--updates", type=int,
                    help="total optimiser steps the schedule spans (default: the preset's updates, else its epochs "
                         "over the training rows; only the lr of the timed steps depends on it)")
    ap.add_argument("--weight-decay", type=float, help=f"decoupled weight decay ({d})")
    ap.add_argument("--clip-norm", type=float, help=f"clip the gradient norm to this, 0 = off ({d})")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights, dropout and data (default 0)")
    # Data.
    ap.add_argument("--data", help="folder with basic_train.tsv (default: synthetic sequences)")
    ap.add_argument("--min-len", type=int,
                    help="synthetic data: shortest sequence (default: the preset generator's shortest, 501 / 51); "
                         "the longest is --max-len")
    # Timing.
    ap.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    ap.add_argument("--warmup-steps", type=int, default=5, help="untimed steps before them (default 5)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ap.add_argument("--threads", type=int, default=cores,
                    help="torch.set_num_threads(N) and one inter-op thread (default: every core this process may use, "
                         "as mixgrad's OpenMP does; Debian's PyTorch would otherwise use one)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--attention", default="math", choices=["math", "sdpa"],
                    help="math: matmul, softmax, matmul (default); sdpa: F.scaled_dot_product_attention (PyTorch 2)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 CUDA matrix products (`lra train --tf32`)")
    ap.add_argument("--adamw", default="default", choices=["default", "foreach", "fused"],
                    help="torch.optim.AdamW implementation (default: PyTorch's choice)")
    ap.add_argument("--log-every", type=int, default=0, help="print the loss every N steps on stderr (0 = off)")
    ap.add_argument("--json", help="append the record to the JSON array in this file")
    ap.add_argument("--info", action="store_true", help="print the configuration and parameters, then exit")
    return ap.parse_args()


def config_from(args):
    c = dict(PRESETS[args.preset])
    for key in ("embed_dim", "depth", "heads", "qkv_dim", "mlp_dim", "max_len", "dropout", "attn_dropout",
                "batch_size", "lr", "schedule", "lr_warmup", "weight_decay", "clip_norm"):
        if getattr(args, key) is not None:
            c[key] = getattr(args, key)
    c["qkv_dim"] = c["qkv_dim"] or c["embed_dim"]
    c["min_len"] = args.min_len if args.min_len is not None else c["gen_min"] + 1
    problems = []
    if min(c["embed_dim"], c["depth"], c["heads"], c["mlp_dim"], c["max_len"], c["batch_size"]) < 1:
        problems.append("sizes must be >= 1")
    if c["qkv_dim"] % c["heads"]:
        problems.append(f"--heads {c['heads']} must divide the qkv width {c['qkv_dim']}")
    if c["embed_dim"] % 2:
        problems.append("sinusoidal positions need an even --embed-dim")
    if not (0 <= c["dropout"] < 1 and 0 <= c["attn_dropout"] < 1):
        problems.append("dropout rates must be in [0, 1)")
    if not args.data and not 1 <= c["min_len"] <= c["max_len"]:
        problems.append(f"--min-len {c['min_len']} must be in [1, max_len {c['max_len']}]")
    if args.steps < 1 or args.warmup_steps < 0:
        problems.append("--steps must be >= 1 and --warmup-steps >= 0")
    if problems:
        sys.exit("lra_train_torch.py: " + "; ".join(problems))
    return c


def print_info(args, c, model):
    print(f"LRA task {args.task}, preset {args.preset} (PyTorch peer)")
    print(f"  transformer: tokens (vocab {VOCAB}) of length <= {c['max_len']}{' + class token' if c['pool'] == 'cls' else ''}, dim {c['embed_dim']}, "
          f"depth {c['depth']}, heads {c['heads']}, qkv {c['qkv_dim']}, MLP {c['mlp_dim']}, {CLASSES} classes")
    print(f"  pool {c['pool']}, positions sinusoidal, dropout {c['dropout']} (attention {c['attn_dropout']}), "
          f"LayerNorm eps {LN_EPS}")
    print(f"  recipe: batch {c['batch_size']}, lr {c['lr']:.6g} ({c['schedule']}), warm-up {c['lr_warmup']} steps, "
          f"weight decay {c['weight_decay']}, clip {c['clip_norm'] or 'off'}")
    print("parameters:")
    for name, p in model.named_parameters():
        print(f"  {name:<40} {str(list(p.shape)):<18} {p.numel()}")
    print(f"total parameters: {sum(p.numel() for p in model.parameters())}")


def append_json(path, rec):
    """Keeps FILE a JSON array (the other peers' format) and adds this run's record to it."""
    records = []
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path) as f:
            records = json.load(f)
        if not isinstance(records, list):
            sys.exit(f"lra_train_torch.py: {path} does not hold a JSON array of records")
    records.append(rec)
    with open(path, "w") as f:
        json.dump(records, f, indent=1)
        f.write("\n")


def main():
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)  # must come before any parallel work
    c = config_from(args)
    if args.attention == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
        sys.exit(f"lra_train_torch.py: --attention sdpa needs PyTorch >= 2.0 (this is {torch.__version__})")
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    model = LraTransformer(c, args.attention)
    params = sum(p.numel() for p in model.parameters())
    if args.info:
        print_info(args, c, model)
        return
    if dev.type == "cuda":
        # The spelling that PyTorch 1.12 through 2.x all accept ("high" = TF32 allowed, "highest" = full fp32).
        torch.set_float32_matmul_precision("high" if args.tf32 else "highest")
    model.to(dev).train()

    # Every batch is built (and padded) before the clock starts: mixgrad's loader does this on a worker thread,
    # outside the step time it reports. The copy to the device stays inside the step, as in mixgrad's.
    gen = torch.Generator().manual_seed(args.seed)
    n_batches = args.warmup_steps + args.steps
    if args.data:
        if not os.path.isfile(os.path.join(args.data, "basic_train.tsv")):
            sys.exit(f"lra_train_torch.py: --data {args.data} has no basic_train.tsv "
                     "(`build/bin/lra generate listops --preset P --out DIR` writes one)")
        rows = ListOpsRows(os.path.join(args.data, "basic_train.tsv"), c["max_len"])
        batches = tsv_batches(rows, c["batch_size"], n_batches, gen)
        n_train = len(rows)
        data = f"{os.path.join(args.data, 'basic_train.tsv')} ({n_train} rows"
        data += f", {len(rows.bad)} bad rows skipped among those drawn" if rows.bad else ""
        data += f", {len(rows.cut)} drawn rows cut to {c['max_len']} tokens)" if rows.cut else ")"
    else:
        batches = synthetic_batches(c["batch_size"], n_batches, c["min_len"], c["max_len"], gen)
        n_train = c["gen_train"]
        data = f"synthetic: random tokens, lengths uniform in [{c['min_len']}, {c['max_len']}]"
    # The schedule's length as mixgrad's trainer sets it (updates, else epochs × ceil(rows / batch)).
    total = args.updates or c["updates"] or c["epochs"] * -(-n_train // c["batch_size"])

    # Every parameter decays (mixgrad's lra passes no exemptions), as one AdamW group does.
    kw = {} if args.adamw == "default" else {args.adamw: True}
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=c["lr"], betas=BETAS, eps=ADAM_EPS,
                                weight_decay=c["weight_decay"], **kw)
    except (TypeError, RuntimeError) as e:  # fused is PyTorch 2.x (and CUDA-only before 2.4)
        sys.exit(f"lra_train_torch.py: --adamw {args.adamw} is not available here (torch {torch.__version__}): {e}")

    times, losses, valid_tokens, padded_tokens = [], [], 0, 0
    for i, (tokens, lengths, labels) in enumerate(batches):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        tokens, lengths, labels = tokens.to(dev), lengths.to(dev), labels.to(dev)
        loss = F.cross_entropy(model(tokens, lengths), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if c["clip_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), c["clip_norm"])
        lr = lr_at(i, c["schedule"], c["lr"], c["lr_warmup"], total)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
        losses.append(loss.item())  # after the clock: mixgrad reads its losses back only at log lines
        if not math.isfinite(losses[-1]):
            sys.exit(f"lra_train_torch.py: the loss is {losses[-1]} at step {i + 1} (try a lower --lr)")
        if i >= args.warmup_steps:
            times.append(dt)
            valid_tokens += int(lengths.sum())
            padded_tokens += tokens.numel()
        if args.log_every and (i + 1) % args.log_every == 0:
            print(f"step {i + 1}: loss {losses[-1]:.4f} lr {lr:.3g} {dt * 1e3:.1f} ms "
                  f"({int(lengths.sum())} tokens, padded to {tokens.shape[1]})", file=sys.stderr)

    ms_median, ms_mean = statistics.median(times) * 1e3, statistics.mean(times) * 1e3
    tok_s = valid_tokens / sum(times)  # tokens over time, as mixgrad's tok/s (batches differ in length)
    rec = {"op": "lra_train_step", "pass": "train_step", "peer": "pytorch", "torch": torch.__version__,
           "task": args.task, "preset": args.preset, "device": str(dev), "threads": torch.get_num_threads(),
           "batch": c["batch_size"], "shape": f"{args.task}/{args.preset} batch {c['batch_size']}",
           "dtype": "float32", "params": params, "ms": ms_median, "ms_median": ms_median, "ms_mean": ms_mean,
           "tokens_per_s": tok_s, "tokens_per_step": valid_tokens / len(times),
           "padded_tokens_per_step": padded_tokens / len(times), "steps": args.steps,
           "warmup_steps": args.warmup_steps, "data": data, "attention": args.attention,
           "tf32": bool(args.tf32 and dev.type == "cuda"), "adamw": args.adamw,
           "model": {k: c[k] for k in ("depth", "embed_dim", "heads", "qkv_dim", "mlp_dim", "max_len", "dropout",
                                       "attn_dropout")},
           "loss_first": losses[0], "loss_last": losses[-1], "gbps": None, "gflops": None}
    print(json.dumps(rec))
    print(f"lra_train_torch: {args.task}/{args.preset} on {dev} ({rec['threads']} threads, torch {torch.__version__}, "
          f"{args.attention} attention), batch {c['batch_size']}, {params:,} parameters: median {ms_median:.1f} ms "
          f"(mean {ms_mean:.1f}) per step over {args.steps} steps, {tok_s:,.0f} tok/s "
          f"({valid_tokens / len(times):.0f} valid of {padded_tokens / len(times):.0f} padded tokens per step); "
          f"data {data}", file=sys.stderr)
    if args.json:
        append_json(args.json, rec)


if __name__ == "__main__":
    main()
