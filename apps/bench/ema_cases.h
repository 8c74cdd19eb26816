// Bench cases for the damped multi-dimensional EMA (MEGA's MultiHeadEMA, specs/lra.md §6.2): forward, backward and
// forward+backward at MEGA's LRA sizes and at L = 4K / 16K, on the scan path (full kernel) and the direct convolution
// (truncated).
#pragma once
#include <vector>

#include "apps/bench/op_cases.h"

namespace mixgrad::bench {

// Op "ema", bidirectional, ndim 16, no per-sample lengths. Shapes [B, L, d] (d and truncation as MEGA's LRA runs,
// specs/lra.md §7.2; B small enough for this machine's memory and time, not MEGA's batch):
//   [8, 2000, 80]     truncation 1024 (convolution)                          — ListOps
//   [4, 4000, 128]    truncation 1024 (convolution)                          — Text / Retrieval
//   [8, 1024, 160]    truncation 1024 = L (scan, exact)                      — Image
//   [50, 1024, 160]   truncation none (scan) and 256 (convolution)           — Image at MEGA's batch 50
//   [16, 4096, 128]   truncation none (scan) and 1024 (convolution)
//   [4, 16384, 64]    truncation none (scan) and 4096 (convolution; CUDA only: ~70 GFLOP per pass) — Path-X
// Bytes (GB/s) are the float32 tensors of size n = B·L·d the op must move: forward reads x and writes out and the
// saved pre-activation y + ω⊙x (3·n·4; the SiLU's backward needs it or a second convolution), backward reads dout,
// x and the pre-activation and writes dx (4·n·4); the [2d, 16] parameters, their gradients and the [2d, k] kernel
// are left out (< 1 % at these sizes). FLOPs: scan 4·ndim per element and direction (two multiply-adds per state),
// convolution 2·k per element and direction (the backward twice that: dx and the tap gradients).
// smoke: [2, 16, 8] with truncation none (scan) and 5 (convolution), to check the cases run — not for timing.
std::vector<OpCase> ema_op_cases(bool smoke = false);

}  // namespace mixgrad::bench
