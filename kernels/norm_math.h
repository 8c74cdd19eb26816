// MEGA's sequence norms (specs/lra.md §6.2): the sizes of a BatchNorm call and the scalar formulas of ScaleNorm and
// masked BatchNorm, shared by the CPU kernels (kernels/cpu/norm.cpp, float and double) and the CUDA kernels
// (kernels/cuda/sequence_norm.cu, float), so both devices compute the same expressions.
// Kernels only: included by those sources and their headers, not by engine headers.
#pragma once
#include <cstdint>

#include "kernels/common.h"
#include "kernels/elementwise_math.h"

namespace mixgrad::kernels {

// x, y, dy, dx: [batch, length, channels] row-major (channels contiguous). lengths (int32 [batch] or null) gives
// each sample's valid prefix; positions t >= lengths[b] are padding.
struct BatchNormSizes {
  int64_t batch = 0, length = 0, channels = 0;
  MIXGRAD_HD int64_t rows() const { return batch * length; }
};

// Whether row r = b·length + t is a valid (non-padded) position: t < lengths[b] (every row without lengths).
MIXGRAD_HD bool norm_row_valid(const int32_t* lengths, int64_t row, int64_t length) {
  return lengths == nullptr || row % length < static_cast<int64_t>(lengths[row / length]);
}

// Number of valid positions: Σ_b clamp(lengths[b], 0, length), or batch·length without lengths.
MIXGRAD_HD int64_t norm_valid_count(const int32_t* lengths, int64_t batch, int64_t length) {
  if (lengths == nullptr) return batch * length;
  int64_t n = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t v = lengths[b];
    n += v < 0 ? 0 : (v > length ? length : v);
  }
  return n;
}

// 1 / sqrt(v + eps): v is mean(x²) for ScaleNorm, the (biased or running) variance for BatchNorm.
template <class T>
MIXGRAD_HD T norm_rstd(T v, T eps) {
  return T(1) / ew_math::sqrt(v + eps);
}

// ---- ScaleNorm: y = x·g·r with r = 1 / sqrt(mean_c(x²) + eps) per row -----------------------------------------
// dx = g·r·(dy − x·r²·mean_c(dy·x)); with k = r²·Σ_c(dy·x) / cols this is g·r·(dy − x·k). dg = Σ_rows r·Σ_c(dy·x).
template <class T>
MIXGRAD_HD T scale_norm_dx(T dy, T x, T g_r, T k) {
  return g_r * (dy - x * k);
}

// ---- BatchNorm ----------------------------------------------------------------------------------------------------
// x̂ = (x − mean)·rstd, y = x̂·weight + bias (weight 1 / bias 0 when absent).
template <class T>
MIXGRAD_HD T batch_norm_value(T x, T mean, T rstd, T weight, T bias) {
  return (x - mean) * rstd * weight + bias;
}

// PyTorch's BatchNorm1d running-statistics update from the batch mean and biased variance over n values:
// running_mean ← (1 − m)·running_mean + m·mean, running_var ← (1 − m)·running_var + m·var·n/(n − 1) (unbiased).
// n < 2 has no unbiased variance: the engine op rejects it (PyTorch raises too); n is clamped here so that a
// device-side rejection (reported later) never divides by zero.
template <class T>
MIXGRAD_HD void batch_norm_running_update(T& running_mean, T& running_var, T mean, T var, int64_t n, T momentum) {
  const T unbiased = n > 1 ? var * T(n) / T(n - 1) : var;
  running_mean = (T(1) - momentum) * running_mean + momentum * mean;
  running_var = (T(1) - momentum) * running_var + momentum * unbiased;
}

// dx of a valid position. Training (batch statistics over n valid values, sum_dy = Σ dy, sum_dy_xhat = Σ dy·x̂ over
// them): dx = weight·rstd·(dy − sum_dy/n − x̂·sum_dy_xhat/n); the caller passes mean_dy = sum_dy/n and
// mean_dy_xhat = sum_dy_xhat/n. Eval (running statistics are constants): dx = weight·rstd·dy (mean terms 0).
template <class T>
MIXGRAD_HD T batch_norm_dx(T dy, T xhat, T weight_rstd, T mean_dy, T mean_dy_xhat) {
  return weight_rstd * (dy - mean_dy - xhat * mean_dy_xhat);
}

}  // namespace mixgrad::kernels
