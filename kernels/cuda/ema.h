// MEGA's damped multi-dimensional EMA on CUDA, float32: the same kernels, signatures and paths as the CPU reference
// kernels/cpu/ema.h (read it for the math and for which path runs when and why), plus the stream. Device pointers;
// never synchronises. Thread layout: the scans run one thread per (sample, channel) with the ndim states in
// registers (ndim <= kEmaMaxNdim); the direct convolution runs one thread per output element (channels fastest, so
// loads are coalesced); the tap gradient dK runs one block per (row, tap) and every batch reduction sums per-sample
// partials in sample order, so results are deterministic.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/ema_math.h"

namespace mixgrad::kernels::cuda {

inline constexpr int64_t kEmaMaxNdim = 64;

void ema_coefficients(float* coef, float* decay, const float* delta, const float* alpha, const float* beta,
                      const float* gamma, int64_t rows, int64_t ndim, cudaStream_t stream);
void ema_coefficients_backward(float* ddelta, float* dalpha, float* dbeta, float* dgamma, const float* dcoef,
                               const float* ddecay, const float* delta, const float* alpha, const float* beta,
                               const float* gamma, int64_t rows, int64_t ndim, cudaStream_t stream);
void ema_kernel(float* kernel, const float* coef, const float* decay, int64_t rows, int64_t ndim, int64_t k,
                cudaStream_t stream);
void ema_kernel_backward(float* dcoef, float* ddecay, const float* dkernel, const float* coef, const float* decay,
                         int64_t rows, int64_t ndim, int64_t k, cudaStream_t stream);
void ema_conv_forward(float* out, float* pre, const float* x, const int32_t* lengths, const float* kernel,
                      const float* omega, const EmaSizes& s, cudaStream_t stream);
void ema_scan_forward(float* out, float* pre, const float* x, const int32_t* lengths, const float* coef,
                      const float* decay, const float* omega, const EmaSizes& s, cudaStream_t stream);
void ema_pre_grad(float* dpre, float* domega, const float* dout, const float* pre, const float* x,
                  const int32_t* lengths, const EmaSizes& s, cudaStream_t stream);
void ema_conv_backward(float* dx, float* dkernel, const float* dpre, const float* x, const int32_t* lengths,
                       const float* kernel, const float* omega, const EmaSizes& s, cudaStream_t stream);
void ema_scan_backward(float* dx, float* dcoef, float* ddecay, float* partial, const float* dpre, const float* x,
                       const int32_t* lengths, const float* coef, const float* decay, const float* omega,
                       const EmaSizes& s, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
