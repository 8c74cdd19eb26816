// Op selectors and random-stream bookkeeping shared by the CPU and CUDA elementwise kernels
// (kernels/cpu/elementwise.h, kernels/cuda/elementwise.h), and the random-number transforms both sides must
// compute identically. Plain C++, no CUDA headers.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common.h"

namespace mixgrad::kernels {

// y = f(x). `alpha`/`beta` are only read by pow_scalar (y = x^alpha) and affine (y = alpha*x + beta, which
// covers scalar add/sub/mul/div and neg). gelu_erf and gelu_tanh are PyTorch's gelu(approximate="none") and
// gelu(approximate="tanh").
enum class UnaryOp { neg, exp, log, sqrt, tanh, sigmoid, relu, gelu_erf, gelu_tanh, silu, pow_scalar, affine };

// out = a (op) b. maximum/minimum propagate NaN like torch.maximum/torch.minimum.
enum class BinaryOp { add, sub, mul, div, maximum, minimum };

// unary_backward reads the saved forward output `y` instead of `x` for these ops (x may then be nullptr);
// for every other op it reads `x` (y may be nullptr); neg and affine read neither.
constexpr MIXGRAD_HD bool unary_backward_uses_output(UnaryOp op) {
  return op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::tanh || op == UnaryOp::sigmoid;
}
constexpr MIXGRAD_HD bool unary_backward_uses_input(UnaryOp op) {
  return !unary_backward_uses_output(op) && op != UnaryOp::neg && op != UnaryOp::affine;
}

// ---- Random streams --------------------------------------------------------------------------------------
// Every random kernel reads Philox draws `philox_u32(seed, offset, d)` (kernels/philox.h): draw d comes from the
// 128-bit counter block (counter_lo = d / 4, counter_hi = offset). A call therefore only touches counters whose
// high half equals `offset`, and consumes the blocks counter_lo in [0, blocks) given below. The engine's
// generator may advance `offset` by 1 per call (streams of different offsets never overlap); the block counts
// are provided for generators that prefer to account for them.
//
//   uniform_fill, dropout_forward/backward: element i <- draw i               -> ceil(n / 4) blocks
//   normal_fill:       element i <- Box-Muller on draws (2i, 2i+1)            -> ceil(n / 2) blocks
//   trunc_normal_fill: attempt k (k = 0, 1, ..., kTruncNormalMaxAttempts-1) of element i uses the normal
//                      sample of pair index i + k*n, i.e. draws (2(i+k*n), 2(i+k*n)+1); the first attempt
//                      that lands in [a, b] is kept; if none does, the last attempt is clamped into [a, b].
//                      At most ceil(n * kTruncNormalMaxAttempts / 2) blocks.
constexpr int kTruncNormalMaxAttempts = 64;

constexpr int64_t uniform_fill_philox_blocks(int64_t n) { return (n + 3) / 4; }
constexpr int64_t dropout_philox_blocks(int64_t n) { return (n + 3) / 4; }
constexpr int64_t normal_fill_philox_blocks(int64_t n) { return (n + 1) / 2; }
constexpr int64_t trunc_normal_fill_philox_blocks(int64_t n) { return (n * kTruncNormalMaxAttempts + 1) / 2; }

// The same map as philox_uniform, applied to a draw already at hand (kernels that use all four lanes of a block).
MIXGRAD_HD float philox_uniform_from_u32(uint32_t draw) {
  return static_cast<float>(draw >> 8) * (1.0f / 16777216.0f);
}

// Standard normal sample from draws (u1, u2) by Box-Muller, in double so that host and device agree on the float
// result. u1 = (u1 + 1/2) / 2^32 lies in (0, 1) (never 0, so the log is finite: |z| <= 6.7).
MIXGRAD_HD double box_muller_normal(uint32_t u1, uint32_t u2) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  constexpr double kInv2Pow32 = 1.0 / 4294967296.0;
  const double r = ::sqrt(-2.0 * ::log((static_cast<double>(u1) + 0.5) * kInv2Pow32));
  return r * ::cos(kTwoPi * (static_cast<double>(u2) * kInv2Pow32));
}

}  // namespace mixgrad::kernels
