// Softmax and log-softmax over the last dimension of a contiguous float [rows, cols] tensor on CUDA; the CPU
// reference is kernels/cpu/softmax.h (same semantics: a fully -inf row gives softmax 0 / log-softmax -inf and a
// zero gradient). cols <= 1024: a warp per row with the row in registers; longer rows: a block per row with an
// online max/sum, then a second pass over the row. fp32 accumulation, deterministic.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mixgrad::kernels::cuda {

void softmax_forward(float* y, const float* x, int64_t rows, int64_t cols, cudaStream_t stream);

// dx = y * (dy - sum(dy * y)) per row.
void softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols, cudaStream_t stream);

void log_softmax_forward(float* y, const float* x, int64_t rows, int64_t cols, cudaStream_t stream);

// dx = dy - exp(y) * sum(dy) per row (0 for a row of y that is all -inf).
void log_softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
