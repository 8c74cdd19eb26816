// Bench cases for AFT (specs/mixers.md §4): the four ops alone ("aft": minimum bytes for GB/s, GEMM / band FLOPs
// for GFLOP/s) and the four mixers as a model calls them ("aft_mixer": forward, backward and forward+backward time,
// tokens/s). The peer is apps/bench/peers/bench_aft_torch.py (same shapes and records).
#pragma once
#include <vector>

#include "apps/bench/op_cases.h"

namespace mixgrad::bench {

// Shapes (impl = the variant), per layer:
//   full, local (s = 32), simple: causal [8, 1024, 256]   (the paper's enwik8 models: T = 1024, d = 256, Table 4)
//   conv: [64, 197, 192], 192 heads, kernel 11           (AFT-conv tiny on ImageNet, Table 7; 1-D over tokens)
// smoke: every case at [2, 16, 8] (window 3, kernel 3, 2 heads), to check the cases run — not for timing.
std::vector<OpCase> aft_op_cases(bool smoke = false);

}  // namespace mixgrad::bench
