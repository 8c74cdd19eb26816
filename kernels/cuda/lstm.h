// CUDA twin of kernels/cpu/lstm.h (float32): the recurrence of one LSTM layer direction, forward and backward
// through time. Same layouts and semantics as the CPU kernels; `lengths` is a device pointer (or null) read by the
// kernels, never copied to the host. Each step is one cuBLAS GEMM (kernels/cuda/gemm.h, full FP32: the recurrence
// compounds rounding, so TF32 is not used) followed by one pointwise kernel, all on `stream`; never synchronises.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mixgrad::kernels::cuda {

int64_t lstm_work_size(int64_t B, int64_t H);

void lstm_forward(float* gates, float* y, float* cell, float* h_prev, float* h_n, const float* w_hh,
                  const int32_t* lengths, int64_t B, int64_t L, int64_t H, int64_t dirs, int64_t dir, float* work,
                  cudaStream_t stream);

void lstm_backward(float* dgates, const float* dy, const float* dh_n, const float* gates, const float* cell,
                   const float* w_hh, const int32_t* lengths, int64_t B, int64_t L, int64_t H, int64_t dirs,
                   int64_t dir, float* work, cudaStream_t stream);

void lstm_zero_padding(float* x, const int32_t* lengths, int64_t B, int64_t L, int64_t D, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
