#!/usr/bin/env python3
"""PyTorch peer for mixgrad's ViT training-step speed (compare with the images/s that
`build/bin/vit train --max-steps N` prints; docs/benchmarks/vit-cpu.md).

Builds the same timm-style ViT as models/vit.cpp (patch embedding as Conv2d, class token, learned position
embedding, pre-norm blocks with fused qkv, exact-erf GELU MLP, final LayerNorm, linear head) for a preset, and
times full training steps (forward, cross-entropy, backward, AdamW) on random images of the preset's shape.
Prints one JSON record per device in the same format as apps/bench: {op, pass, device, shape, dtype, ms, ...}.

Usage (Debian's python3-torch: run it with /usr/bin/python3):
    /usr/bin/python3 apps/bench/peers/vit_train_torch.py --preset fmnist-tiny --batch-size 128 --threads 2
    python3 apps/bench/peers/vit_train_torch.py --preset fmnist-small --device cuda --steps 200 [--compile]
        [--precision tf32|bf16]   # the GPU peers of issue 18 (eager and torch.compile, same precision)
"""
import argparse
import contextlib
import json
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("vit_train_torch.py: PyTorch is not installed (Debian: apt-get install python3-torch; run /usr/bin/python3)")

PRESETS = {
    # img, chans, patch, dim, depth, heads, mlp, classes, pool, qkv_bias
    "fmnist-tiny": (28, 1, 4, 64, 4, 4, 128, 10, "token", True),
    "fmnist-small": (28, 1, 4, 64, 6, 4, 128, 10, "token", True),
    "cifar10-paper": (32, 3, 4, 512, 6, 8, 512, 10, "avg", False),
}


class Block(nn.Module):
    def __init__(self, dim, heads, mlp, qkv_bias, eps):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, mlp)
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, x):
        b, n, d = x.shape
        h = self.norm1(x)
        q, k, v = self.qkv(h).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)  # the "math" path
        x = x + self.proj((a @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, img, chans, patch, dim, depth, heads, mlp, classes, pool, qkv_bias, eps=1e-6):
        super().__init__()
        self.pool = pool
        n = (img // patch) ** 2
        self.patch_embed = nn.Conv2d(chans, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "token" else None
        self.pos_embed = nn.Parameter(torch.randn(1, n + (pool == "token"), dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp, qkv_bias, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x[:, 0]) if self.pool == "token" else self.norm(x.mean(1))
        return self.head(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="fmnist-tiny", choices=sorted(PRESETS))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30, help="timed steps (after --warmup)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the records to this file")
    ap.add_argument("--compile", action="store_true", help="time torch.compile(model) instead of eager mode")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                    help="CUDA matrix products: fp32; tf32 (allow_tf32); bf16 (autocast to bfloat16 around forward "
                         "and loss, fp32 weights and AdamW state) — the peers of mixgrad's --precision")
    args = ap.parse_args()
    if args.compile and not hasattr(torch, "compile"):
        sys.exit(f"vit_train_torch.py: --compile needs torch.compile (PyTorch >= 2.0), this is {torch.__version__}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = PRESETS[args.preset]
    img, chans, classes = cfg[0], cfg[1], cfg[7]
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    model = ViT(*cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    run = torch.compile(model) if args.compile else model
    autocast = (torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())
    x = torch.randn(args.batch_size, chans, img, img, device=dev)
    y = torch.randint(0, classes, (args.batch_size,), device=dev)
    times = []
    for i in range(args.warmup + args.steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast:
            loss = F.cross_entropy(run(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    rec = {"op": "vit_train_step", "pass": "train_step", "device": str(dev),
           "framework": f"torch {torch.__version__}" + (" compile" if args.compile else " eager"),
           "shape": f"{args.preset} batch {args.batch_size}", "dtype": "float32", "precision": args.precision,
           "ms": ms,
           "images_per_s": args.batch_size / (ms / 1e3), "threads": args.threads,
           "params": sum(p.numel() for p in model.parameters()), "gbps": None, "gflops": None}
    print(json.dumps(rec))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([rec], f, indent=1)


if __name__ == "__main__":
    main()
