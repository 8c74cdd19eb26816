// MEGA's damped multi-dimensional EMA (specs/lra.md §6.2): the sizes of one call and the scalar formulas shared by
// the CPU kernels (kernels/cpu/ema.cpp, float and double) and the CUDA kernels (kernels/cuda/ema.cu, float).
#pragma once
#include <cstdint>

#include "kernels/common.h"
#include "kernels/elementwise_math.h"

namespace mixgrad::kernels {

// x, out, pre, dx, dout: [batch, length, channels] row-major (channels contiguous). The parameters delta, alpha, beta,
// gamma are [rows, ndim] with rows = channels (causal) or 2·channels (bidirectional: rows [0, channels) the forward
// kernel Kf, rows [channels, 2·channels) the backward kernel Kb); omega is [channels]. The materialised kernel is
// [rows, kernel_length] with kernel_length = min(truncation, length).
struct EmaSizes {
  int64_t batch = 0, length = 0, channels = 0, ndim = 0, kernel_length = 0;
  bool bidirectional = false;
  MIXGRAD_HD int64_t rows() const { return bidirectional ? 2 * channels : channels; }
};

// Valid prefix of sample b: lengths[b] clamped to [0, length], or length without lengths.
MIXGRAD_HD int64_t ema_valid_length(const int32_t* lengths, int64_t b, int64_t length) {
  if (lengths == nullptr) return length;
  const int64_t n = lengths[b];
  return n < 0 ? 0 : (n > length ? length : n);
}

// Per (row, n): p = sigmoid(delta), a = sigmoid(alpha); decay q = 1 − p·a; coef c = p·beta·gamma/sqrt(ndim), so that
// K[row, l] = Σ_n c[row, n]·q[row, n]^l.
template <class T>
MIXGRAD_HD void ema_coef(T delta, T alpha, T beta, T gamma, T scale, T& coef, T& decay) {
  const T p = stable_sigmoid(delta), a = stable_sigmoid(alpha);
  decay = T(1) - p * a;
  coef = p * beta * gamma * scale;
}

// The chain rule of ema_coef: from dL/dcoef and dL/ddecay to the four parameters' gradients.
template <class T>
MIXGRAD_HD void ema_coef_backward(T dcoef, T ddecay, T delta, T alpha, T beta, T gamma, T scale, T& ddelta, T& dalpha,
                                  T& dbeta, T& dgamma) {
  const T p = stable_sigmoid(delta), a = stable_sigmoid(alpha);
  const T dp = dcoef * beta * gamma * scale - ddecay * a;
  const T da = -ddecay * p;
  dbeta = dcoef * p * gamma * scale;
  dgamma = dcoef * p * beta * scale;
  ddelta = dp * p * (T(1) - p);
  dalpha = da * a * (T(1) - a);
}

// q^l as exp(l·log q) (as the reference code builds its Vandermonde matrix): relative error O(eps·l·|log q|) instead
// of the O(eps·l) of l repeated products. q in [0, 1]; q^0 = 1 also for q = 0.
template <class T>
MIXGRAD_HD T ema_pow(T q, int64_t l) {
  if (l == 0) return T(1);
  if (q <= T(0)) return T(0);
  return ew_math::exp(T(l) * ew_math::log(q));
}

template <class T>
MIXGRAD_HD T ema_silu(T z) {
  return z * stable_sigmoid(z);
}

// d silu(z) / dz = s·(1 + z·(1 − s)), s = sigmoid(z).
template <class T>
MIXGRAD_HD T ema_silu_grad(T z) {
  const T s = stable_sigmoid(z);
  return s * (T(1) + z * (T(1) - s));
}

}  // namespace mixgrad::kernels
