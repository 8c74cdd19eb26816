#!/usr/bin/env python3
"""PyTorch peer of mixgrad's CSP bench cases (apps/bench/csp_cases.cpp): the CSP operator written the way the
authors' code (DaShenZi721/CSP, the `SWD` class) writes it, at the same shapes, with the same timing method and the
same JSON records {op, pass, device, shape, dtype, ms, gbps, gflops} as `bench` (docs/benchmarks/README.md).

The operator (specs/csp.md §11.1):  y = sort(gather(v, 1, idx).view(B, N/K, K, D), dim=2).values.view(B, N, D)
with idx[j, c] = (j - s_c) mod N. The index tensor is built once per case and device and expanded (a free view) to
[B, N, D], which is slightly kinder to PyTorch than rebuilding it per call. The backward is autograd's (the sort's
and the gather's backward: a scatter of dY through the sort indices, then a scatter_add for the gather).
"copy" is v.clone(), the bandwidth reference; its backward is a pass-through, so its bytes are 0 (null GB/s).

Timing, input rotation (--cold-mib), warm-up and medians are bench_ops_torch.py's (imported from this folder).

Usage:
  python3 apps/bench/peers/bench_csp_torch.py --device cpu --threads 2 --json /tmp/torch-csp-cpu.json
  python3 apps/bench/peers/bench_csp_torch.py --device cuda --json /tmp/torch-csp-cuda.json
Path-X uses B = --pathx-batch-cpu (4) on the CPU and --pathx-batch-cuda (60, the spec's) on CUDA; the batch is in
the shape string, as in the C++ cases (call csp_op_cases(4) there for the CPU numbers).
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ops_torch as common  # noqa: E402  (timing harness, OpCase, rate; handles a missing torch)

torch = common.torch
F32 = 4.0


def shifts_constant(d, n, k):
    """specs/csp.md §4.1: s_0 = 0, s_c = K·(c − 1) mod N."""
    return [0] + [(k * (c - 1)) % n for c in range(1, d)]


def shifts_exponential(layer, layers, d, n):
    """specs/csp.md §4.2, in double precision exactly as the reference: ceil(N ** ((l·D + i) / (L·D))) mod N."""
    return [int(math.ceil(float(n) ** ((layer * d + i) / (layers * d)))) % n for i in range(d)]


class Csp(common.OpCase):
    def __init__(self, b, n, d, k, schedule, layer=0, layers=1):
        tag = "constant" if schedule == "constant" else f"exp l={layer}/{layers}"
        el = float(b) * n * d
        super().__init__("csp", f"[{b}, {n}, {d}] K={k} {tag}", F32 * 2 * el, F32 * 3 * el)
        self.b, self.n, self.d, self.k = b, n, d, k
        self.shifts = shifts_constant(d, n, k) if schedule == "constant" else shifts_exponential(layer, layers, d, n)
        self.idx = {}

    def index(self, device):
        key = str(device)
        if key not in self.idx:
            s = torch.tensor(self.shifts, dtype=torch.int64, device=device)
            j = torch.arange(self.n, dtype=torch.int64, device=device)
            idx = torch.remainder(j[:, None] - s[None, :], self.n)  # [N, D]: idx[j, c] = (j - s_c) mod N
            self.idx[key] = idx.unsqueeze(0).expand(self.b, self.n, self.d)
        return self.idx[key]

    def make_inputs(self, device):
        return [common.param((self.b, self.n, self.d), device)]

    def forward(self, x):
        v = x[0]
        u = torch.gather(v, 1, self.index(v.device))
        y = torch.sort(u.view(self.b, self.n // self.k, self.k, self.d), dim=2).values
        return y.view(self.b, self.n, self.d)


class Copy(common.OpCase):
    def __init__(self, b, n, d):
        super().__init__("copy", f"[{b}, {n}, {d}]", F32 * 2 * float(b) * n * d, 0.0)
        self.b, self.n, self.d = b, n, d

    def make_inputs(self, device):
        return [common.param((self.b, self.n, self.d), device)]

    def forward(self, x):
        return x[0].clone()


def cases(pathx_batch):
    sizes = [(64, 64, 512, 2, "constant", 0, 1),           # CSP-ViT CIFAR-10 layer
             (50, 1024, 320, 2, "exponential", 4, 8),      # CSP-MEGA LRA Image
             (pathx_batch, 16384, 128, 2, "exponential", 3, 4)]  # CSP-MEGA Path-X
    out = []
    for b, n, d, k, sched, layer, layers in sizes:
        out += [Csp(b, n, d, k, sched, layer, layers), Copy(b, n, d)]
    return out


def self_check(device):
    """The PyTorch expression against a loop reference on a tiny input (distinct values), before timing."""
    g = torch.Generator().manual_seed(0)
    b, n, d, k = 2, 8, 5, 2
    c = Csp(b, n, d, k, "exponential", 1, 2)
    v = torch.randn(b, n, d, generator=g)
    y = c.forward([v.to(device)]).cpu()
    for bb in range(b):
        for ch in range(d):
            s = c.shifts[ch] % n
            u = [v[bb, (j - s) % n, ch].item() for j in range(n)]
            want = [x for gs in range(0, n, k) for x in sorted(u[gs:gs + k])]
            assert y[bb, :, ch].tolist() == want, f"self-check failed at b={bb} c={ch}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_harness_args(p)
    p.add_argument("--ops", default="csp,copy", help="comma-separated: csp, copy")
    p.add_argument("--pathx-batch-cpu", type=int, default=4, help="Path-X batch on the CPU")
    p.add_argument("--pathx-batch-cuda", type=int, default=60, help="Path-X batch on CUDA (the spec's)")
    args = p.parse_args()
    if torch is None:
        sys.exit("bench_csp_torch.py: PyTorch is not installed (Debian: apt-get install python3-torch, then run with /usr/bin/python3; or run on the GPU machine)")
    if args.repeats < 1 or args.warmup < 0 or args.pathx_batch_cpu < 1 or args.pathx_batch_cuda < 1:
        sys.exit("bench_csp_torch.py: --repeats and the Path-X batches must be >= 1, --warmup >= 0")
    wanted = [o for o in args.ops.split(",") if o]
    for o in wanted:
        if o not in ("csp", "copy"):
            sys.exit(f"bench_csp_torch.py: unknown op '{o}' (known: csp,copy)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = common.resolve_devices(args, "bench_csp_torch.py")

    print(f"torch {torch.__version__}: {torch.get_num_threads()} threads; median of {args.repeats} after "
          f"{args.warmup} warm-up; inputs rotated over >= {args.cold_mib} MiB")
    print(f"{'device':<7} {'op':<6} {'shape':<34} {'pass':<8} {'ms':>10} {'GB/s':>9} {'calls':>6}")
    records = []
    for device in devices:
        self_check(device)
        name = "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"
        batch = args.pathx_batch_cpu if device.type == "cpu" else args.pathx_batch_cuda
        for case in cases(batch):
            if case.op not in wanted:
                continue
            fwd, bwd = common.measure(case, device, args)
            passes = [("forward", fwd, case.fwd_bytes)]
            if bwd is not None:
                passes.append(("backward", bwd, case.bwd_bytes))
            for pass_name, (ms, calls), nbytes in passes:
                r = {"op": case.op, "pass": pass_name, "device": name, "shape": case.shape, "dtype": "float32",
                     "ms": ms, "gbps": common.rate(nbytes, ms), "gflops": None}
                gb = "-" if r["gbps"] is None else f"{r['gbps']:.1f}"
                print(f"{name:<7} {case.op:<6} {case.shape:<34} {pass_name:<8} {ms:>10.4f} {gb:>9} {calls:>6}",
                      flush=True)
                records.append(r)
    common.write_records(args.json, records)


if __name__ == "__main__":
    main()
