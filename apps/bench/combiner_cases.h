// Bench cases for Combiner attention (specs/mixers.md §5): forward and backward of every variant, non-causal and
// causal, at a few sequence lengths.
#pragma once
#include <vector>

#include "apps/bench/op_cases.h"

namespace mixgrad::bench {

// Op "combiner" on q, k, v [B, H, L, 64] with B·L = 16384 tokens and H = 8 (FlashAttention's benchmark layout at
// d 64), L in {1024, 4096} on both devices and 16384 on CUDA only, span ceil(sqrt(L)). FLOPs count the work the
// index structure implies: 4·d per (query, column) pair and per (span, member) pair, backward 2.5× forward (the
// softmax-attention convention of §2.4).
std::vector<OpCase> combiner_op_cases();

}  // namespace mixgrad::bench
