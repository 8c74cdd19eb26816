// Bench cases for the damped multi-dimensional EMA (MEGA's MultiHeadEMA, specs/lra.md §6.2): forward, backward and
// forward+backward at L = 1K, 4K and 16K, on the scan path (full kernel) and the direct convolution (truncated).
#pragma once
#include <vector>

#include "apps/bench/op_cases.h"

namespace mixgrad::bench {

// Op "ema", bidirectional, ndim 16, per-sample lengths none. Shapes (MEGA's LRA widths; B chosen per L):
//   [50, 1024, 160]   truncation none (scan)   and  truncation 256 (convolution)     — LRA Image / Pathfinder-32
//   [16, 4096, 128]   truncation none (scan)   and  truncation 1024 (convolution)    — Text / Retrieval
//   [4, 16384, 64]    truncation none (scan)   and  truncation 4096 (convolution; CUDA only: ~70 GFLOP per pass)
// Bytes are the minimum to move: forward reads x and writes out and the saved pre-activation (3·n·4), backward
// reads dout, x and pre and writes dx (4·n·4); parameters are negligible. FLOPs: scan 4·ndim per element and
// direction (two multiply-adds per state), convolution 2·k per element and direction (the backward twice that: dx
// and the tap gradients).
std::vector<OpCase> ema_op_cases();

}  // namespace mixgrad::bench
