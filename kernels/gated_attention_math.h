// MEGA / GAU gated-attention scores (specs/lra.md §6.2 steps 6-7, §6.4): the sizes of one call, which keys a query
// sees (its span and the span's valid prefix), and the attention functions f and f' — shared by the CPU kernels
// (kernels/cpu/gated_attention.cpp, float and double) and the CUDA kernels (kernels/cuda/gated_attention.cu, float).
// Kernels only: included by those two sources and their headers, not by public engine headers.
#pragma once
#include <cstdint>

#include "kernels/common.h"
#include "kernels/elementwise_math.h"

namespace mixgrad::kernels {

// Same order as mixgrad::GatedAttentionFn (engine/gated_attention.h).
enum class GattFn : int { softmax = 0, laplace = 1, relu2 = 2 };

// q, k, dq, dk: [batch, length, zdim]; v, out, dout, dv: [batch, length, vdim] (row-major, last dim contiguous).
// span: the attention span (length for full attention, the chunk size when chunked; the last chunk may be shorter).
// bias_half: P of rel_bias [2P − 1] (0: no bias; else P >= span). lse: [batch, length] (softmax only).
struct GattSizes {
  int64_t batch = 0, length = 0, zdim = 0, vdim = 0, span = 0, bias_half = 0;
  GattFn fn = GattFn::softmax;
  MIXGRAD_HD int64_t bias_len() const { return bias_half > 0 ? 2 * bias_half - 1 : 0; }
  MIXGRAD_HD int64_t spans() const { return (length + span - 1) / span; }
};

// Valid prefix of sample b: lengths[b] clamped to [0, length] (device lengths are not read back), length without.
MIXGRAD_HD int64_t gatt_valid_length(const int32_t* lengths, int64_t b, int64_t length) {
  if (lengths == nullptr) return length;
  const int64_t n = lengths[b];
  return n < 0 ? 0 : (n > length ? length : n);
}

// The valid block [lo, hi) of span `s` of a sample with `valid` tokens: both the queries that get an output and the
// keys they see (queries and keys of one span are the same positions). Empty (hi <= lo) when the span is all padding.
struct GattBlock {
  int64_t lo, hi;
};
MIXGRAD_HD GattBlock gatt_block(const GattSizes& s, int64_t span_index, int64_t valid) {
  const int64_t lo = span_index * s.span;
  const int64_t end = lo + s.span < s.length ? lo + s.span : s.length;
  return {lo, end < valid ? end : valid};
}

// The factor applied to q·k: 1/sqrt(zdim) for softmax; 1/n for laplace and relu², n = the number of valid keys in
// the span (>= 1 for every span that has a valid query).
template <class T>
MIXGRAD_HD T gatt_scale(const GattSizes& s, GattBlock blk) {
  if (s.fn == GattFn::softmax) return T(1) / ew_math::sqrt(T(s.zdim));
  const int64_t n = blk.hi - blk.lo;
  return T(1) / T(n > 1 ? n : 1);
}

// rel_bias[P − 1 + j − i] (0 without a bias).
template <class T>
MIXGRAD_HD T gatt_bias(const T* bias, int64_t half, int64_t i, int64_t j) {
  return bias != nullptr ? bias[half - 1 + j - i] : T(0);
}

// laplace(x) = 0.5·(1 + erf((x − μ)/(σ·√2))), μ = 0.707107, σ = 0.282095 (MEGA's constants, spec §6.2).
inline constexpr double kGattLaplaceMu = 0.707107;
inline constexpr double kGattLaplaceSigma = 0.282095;

// f(x) for the elementwise functions (laplace, relu²); softmax never calls it.
template <class T>
MIXGRAD_HD T gatt_value(GattFn fn, T x) {
  if (fn == GattFn::relu2) return x > T(0) ? x * x : T(0);
  const T z = (x - T(kGattLaplaceMu)) * T(kInvSqrt2 / kGattLaplaceSigma);
  return T(0.5) * (T(1) + ew_math::erf(z));
}

// f'(x): relu² → 2·max(x, 0); laplace → the normal density N(x; μ, σ²).
template <class T>
MIXGRAD_HD T gatt_grad(GattFn fn, T x) {
  if (fn == GattFn::relu2) return x > T(0) ? T(2) * x : T(0);
  const T z = (x - T(kGattLaplaceMu)) * T(1.0 / kGattLaplaceSigma);
  return T(kInvSqrt2Pi / kGattLaplaceSigma) * ew_math::exp(T(-0.5) * z * z);
}

}  // namespace mixgrad::kernels
