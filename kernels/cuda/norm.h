// LayerNorm and RMSNorm over the last dimension of a contiguous float [rows, cols] tensor on CUDA; the CPU
// reference is kernels/cpu/norm.h (same semantics and nullable pointers). cols <= 1024: a warp per row with the
// row in registers; longer rows: a block per row. fp32 accumulation, deterministic: the weight/bias gradients are
// column sums done in two stages (per-chunk-of-rows partial sums into the workspace, then a fixed-order sum).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mixgrad::kernels::cuda {

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight, const float* bias,
                        int64_t rows, int64_t cols, float eps, cudaStream_t stream);

// Scratch bytes layer_norm_backward needs (0 when the rows fit in one chunk; then workspace may be null). Only
// used when dweight or dbias is requested.
size_t layer_norm_backward_workspace_bytes(int64_t rows, int64_t cols);

// workspace: layer_norm_backward_workspace_bytes(rows, cols) bytes, 16-byte aligned.
void layer_norm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x, const float* mean,
                         const float* rstd, const float* weight, int64_t rows, int64_t cols, void* workspace,
                         cudaStream_t stream);

void rms_norm_forward(float* y, float* rstd, const float* x, const float* weight, int64_t rows, int64_t cols, float eps,
                      cudaStream_t stream);

// Scratch bytes rms_norm_backward needs (0 when the rows fit in one chunk). Only used when dweight is requested.
size_t rms_norm_backward_workspace_bytes(int64_t rows, int64_t cols);

// workspace: rms_norm_backward_workspace_bytes(rows, cols) bytes, 16-byte aligned.
void rms_norm_backward(float* dx, float* dweight, const float* dy, const float* x, const float* rstd,
                       const float* weight, int64_t rows, int64_t cols, void* workspace, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
