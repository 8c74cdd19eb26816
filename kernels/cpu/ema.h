// MEGA's damped multi-dimensional EMA (MultiHeadEMA, specs/lra.md §6.2), the CPU reference for kernels/cuda/ema.h.
//
// The op (layout and parameter rows: kernels/ema_math.h), per sample b with valid prefix n_b and channel j:
//   x̃[t] = x[t] for t < n_b, 0 otherwise (padded inputs are zeroed before the convolution, as MEGA does)
//   y[t] = Σ_{m=0}^{k−1} Kf[j, m]·x̃[t−m]  (+ Σ_{m=0}^{k−1} Kb[j, m]·x̃[t+m] when bidirectional), x̃ = 0 outside
//   pre[t] = y[t] + omega[j]·x[t],  out[t] = silu(pre[t])        for t < n_b
//   pre[t] = out[t] = 0                                           for t >= n_b (masked, so padded inputs get a zero
//                                                                 gradient; MEGA leaves them to later masking)
// with K[r, l] = Σ_n coef[r, n]·decay[r, n]^l (ema_coefficients) and k = kernel_length = min(truncation, L).
//
// Two paths compute y, neither materialises anything of size [d, L, L]; memory is O(B·L·d + rows·k):
//  - scan (ema_scan_*): s_t[n] = decay[n]·s_{t−1}[n] + x̃_t, y_t = Σ_n coef[n]·s_t[n] (the backward kernel: the same
//    scan from t = n_b − 1 down). O(B·L·d·ndim). It sums every tap m <= t, so it equals the kernel form only when
//    k = L (truncation >= L, or none): the engine op runs it exactly then.
//  - direct convolution (ema_kernel + ema_conv_*): the kernel K [rows, k] is materialised (O(rows·k) memory) and
//    y is summed tap by tap, O(B·L·k·d). It runs whenever k < L (truncation shorter than the sequence), where the scan
//    would be wrong, and when a caller forces it (tests compare both paths). A truncated scan (subtracting
//    decay^k·s_{t−k}) was rejected: it cancels catastrophically in float when decay is close to 1.
// Gradients: ema_pre_grad gives dpre = dout·silu'(pre) (0 on padded rows) and domega; then ema_conv_backward gives dx
// (the transposed convolution: Kf and Kb swap directions) and dK (per-tap correlation of dpre with x̃, reduced over
// the batch), and ema_kernel_backward maps dK to dcoef/ddecay; or ema_scan_backward gives dx (reverse scans) and
// dcoef/ddecay directly (forward-mode scans of s and ds/ddecay, per-sample partials reduced over the batch in a
// fixed order). ema_coefficients_backward maps dcoef/ddecay to the parameters. Every reduction is deterministic.
#pragma once
#include <cstdint>

#include "kernels/ema_math.h"

namespace mixgrad::kernels::cpu {

// coef, decay: [rows, ndim] from delta, alpha, beta, gamma [rows, ndim].
template <class T>
void ema_coefficients(T* coef, T* decay, const T* delta, const T* alpha, const T* beta, const T* gamma, int64_t rows,
                      int64_t ndim);
// ddelta, dalpha, dbeta, dgamma (overwritten) from dcoef, ddecay.
template <class T>
void ema_coefficients_backward(T* ddelta, T* dalpha, T* dbeta, T* dgamma, const T* dcoef, const T* ddecay,
                               const T* delta, const T* alpha, const T* beta, const T* gamma, int64_t rows,
                               int64_t ndim);

// kernel [rows, k] = Σ_n coef·decay^l.
template <class T>
void ema_kernel(T* kernel, const T* coef, const T* decay, int64_t rows, int64_t ndim, int64_t k);
// dcoef[r, n] = Σ_l dK[r, l]·decay^l, ddecay[r, n] = Σ_l dK[r, l]·coef·l·decay^(l−1) (overwritten).
template <class T>
void ema_kernel_backward(T* dcoef, T* ddecay, const T* dkernel, const T* coef, const T* decay, int64_t rows,
                         int64_t ndim, int64_t k);

// out and pre (the pre-activation, saved for the backward) [B, L, D]; lengths [B] or null.
template <class T>
void ema_conv_forward(T* out, T* pre, const T* x, const int32_t* lengths, const T* kernel, const T* omega,
                      const EmaSizes& s);
// Requires s.kernel_length == s.length (the scan sums every tap).
template <class T>
void ema_scan_forward(T* out, T* pre, const T* x, const int32_t* lengths, const T* coef, const T* decay, const T* omega,
                      const EmaSizes& s);

// dpre [B, L, D] = dout·silu'(pre) on valid rows, 0 on padded ones; domega [D] = Σ_{b, t} dpre·x.
template <class T>
void ema_pre_grad(T* dpre, T* domega, const T* dout, const T* pre, const T* x, const int32_t* lengths,
                  const EmaSizes& s);

// dx [B, L, D] (0 on padded rows) and dkernel [rows, k] from dpre.
template <class T>
void ema_conv_backward(T* dx, T* dkernel, const T* dpre, const T* x, const int32_t* lengths, const T* kernel,
                       const T* omega, const EmaSizes& s);
// dx [B, L, D], dcoef and ddecay [rows, ndim]; partial is scratch of 2·B·rows·ndim elements. Requires k == L.
template <class T>
void ema_scan_backward(T* dx, T* dcoef, T* ddecay, T* partial, const T* dpre, const T* x, const int32_t* lengths,
                       const T* coef, const T* decay, const T* omega, const EmaSizes& s);

}  // namespace mixgrad::kernels::cpu
