// Bench cases for the gated-attention scores op (engine/gated_attention.h): MEGA's and GAU's attention at the LRA
// sizes, full and chunked, forward, backward and forward + backward, with tokens/s and peak memory.
#pragma once
#include <vector>

#include "apps/bench/op_cases.h"

namespace mixgrad::bench {

// Op "gated_attention", rel_bias sized to the span, no padding (shapes q/k [B, L, Z], v [B, L, E]; specs/lra.md §7.2,
// §7.3):
//   softmax full      [8, 2000, 64 | 160]      ListOps MEGA
//   softmax chunk 128 [8, 2000, 64 | 160]      ListOps MEGA-chunk
//   laplace full      [8, 1024, 96 | 320]      Image MEGA
//   relu2 full        [8, 1024, 64 | 384]      Pathfinder GAU (flash_lra_pf32)
//   softmax full      [4, 4096, 64 | 256]      Text MEGA
//   laplace chunk 4096 [2, 16384, 32 | 128]    Path-X MEGA-chunk (CUDA only: ~140 GFLOP per forward + backward)
// FLOPs per attended (query, key) pair: forward 2·(Z + E) (scores, A·V); backward 6·Z + 4·E (scores recomputed,
// dout·vᵀ, dv, dq, dk). Bytes: forward reads q, k, v and writes out; backward reads q, k, v, out, dout and writes
// dq, dk, dv (the minimum; the score tiles never reach memory). smoke: one tiny case per function.
std::vector<OpCase> gated_attention_op_cases(bool smoke = false);

}  // namespace mixgrad::bench
