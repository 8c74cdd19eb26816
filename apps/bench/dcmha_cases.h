// Bench cases for DCMHA (specs/mixers.md §3): the Compose op alone (memory-bound: GB/s) and the dcmha token mixer's
// forward + backward (tokens/s, and FLOP/s of the model below). The PyTorch peer is
// apps/bench/peers/bench_dcmha_torch.py.
#pragma once
#include <vector>

#include "apps/bench/op_cases.h"

namespace mixgrad::bench {

// "compose": one post-stage Compose on scores [B, H, N, N] with R = 2, no static matrix (the released configs), full
// visibility. Bytes: the forward reads a and the stage's two weight slots and writes out; the backward reads g, a and
// the two slots, writes da and updates the two slots' gradients. CPU [1, 8, 512, 512]; CUDA [4, 16, 1024, 1024].
// "dcmha": the mixer on x [B, N, D] (global layer, chunk 128), forward and backward with every parameter; FLOPs =
// projections 2·B·N·D·(4I + 4C + 4H) + generator 2·B·N·4·C·2RH + attention 4·B·N²·I (§2.4 convention) + Compose
// 2·(4R + 2)·H·B·N² per stage; backward counted as 2× forward. CPU B 2, N 512, D 256, H 8; CUDA B 8, N 2048, D 1024,
// H 16, and the same with a causal local window of 256.
std::vector<OpCase> dcmha_op_cases();

}  // namespace mixgrad::bench
