// MEGA's damped multi-dimensional EMA (MultiHeadEMA, specs/lra.md §6.2) as one differentiable op. Implemented in
// engine/ops_ema.cpp on top of kernels/cpu/ema.h and kernels/cuda/ema.h (where the math and the two paths are
// described).
#pragma once
#include <cstdint>
#include <string>

#include "engine/tensor.h"

namespace mixgrad {

// How y = conv(x, K) is computed. automatic: the scan when the kernel spans the whole sequence (truncation 0 or
// >= L), where it is exact, else the direct convolution. scan when k < L is an error (the scan would sum taps the
// truncated kernel does not have); convolution is always allowed (O(B·L·k·d)).
enum class EmaPath { automatic, scan, convolution };

struct EmaOptions {
  bool bidirectional = true;  // MEGA's encoder layers: always on
  int64_t truncation = 0;     // kernel length k = min(truncation, L); 0 = no truncation (k = L)
  EmaPath path = EmaPath::automatic;
};

// Largest EMA dimension (ndim) the op accepts on every device (the CUDA scans keep the ndim states in registers).
inline constexpr int64_t kEmaMaxNdim = 64;

// out = silu(y + omega ⊙ x) with y[t] = Σ_{m<k} Kf[m]·x̃[t − m] (+ Σ_{m<k} Kb[m]·x̃[t + m] when bidirectional),
// K[r, l] = Σ_n sigmoid(delta)·beta·gamma/sqrt(ndim)·(1 − sigmoid(delta)·sigmoid(alpha))^l.
// x: [B, L, D] (float32/float64 on the CPU, float32 on CUDA). delta, alpha, beta, gamma: [rows, ndim] with
// rows = 2·D when bidirectional (rows [0, D) forward, [D, 2D) backward) else D, 1 <= ndim <= kEmaMaxNdim; omega: [D];
// all of x's dtype and device. lengths (optional, int32 or int64 [B], on the CPU or x's device; values in [1, L])
// gives each sample's valid prefix: padded inputs are zeroed before the convolution (as MEGA does), padded outputs
// are 0, so padded inputs get a zero gradient and never influence valid outputs. Gradients for x and all five
// parameters; memory O(B·L·D + rows·k), never [D, L, L].
Tensor multihead_ema(const Tensor& x, const Tensor& delta, const Tensor& alpha, const Tensor& beta, const Tensor& gamma,
                     const Tensor& omega, const Tensor& lengths = Tensor(), const EmaOptions& options = {});

// The path multihead_ema runs for sequence length L under `options` (error when scan is forced with k < L).
EmaPath ema_resolve_path(int64_t length, const EmaOptions& options);
std::string ema_path_name(EmaPath path);

// The materialised kernel K [rows, k] (rows and parameters as above) on the parameters' device; not differentiable.
// For inspection and tests.
Tensor ema_kernel(const Tensor& delta, const Tensor& alpha, const Tensor& beta, const Tensor& gamma, int64_t k);

}  // namespace mixgrad
