// Norms over a contiguous float tensor on CUDA; the CPU reference is kernels/cpu/norm.h (same semantics and
// nullable pointers). LayerNorm and RMSNorm (kernels/cuda/norm.cu): cols <= 1024: a warp per row with the row in
// registers; longer rows: a block per row. fp32 accumulation, deterministic: the weight/bias gradients are column
// sums done in two stages (per-chunk-of-rows partial sums into the workspace, then a fixed-order sum). ScaleNorm and
// masked BatchNorm per channel of [B, L, C]: kernels/cuda/sequence_norm.cu (its thread layout is described there).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/norm_math.h"

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

// ScaleNorm: y = x·g·rstd per row; g is a device pointer to one float (no read-back). rstd may be null.
void scale_norm_forward(float* y, float* rstd, const float* x, const float* g, int64_t rows, int64_t cols, float eps,
                        cudaStream_t stream);

// Scratch bytes scale_norm_backward needs when dg is requested (one float per row).
size_t scale_norm_backward_workspace_bytes(int64_t rows);

// dx and dg (one element) may each be null; workspace: scale_norm_backward_workspace_bytes(rows) bytes when dg is
// requested. dg is the per-row partials summed by one block in a fixed order (deterministic).
void scale_norm_backward(float* dx, float* dg, const float* dy, const float* x, const float* rstd, const float* g,
                         int64_t rows, int64_t cols, void* workspace, cudaStream_t stream);

// Scratch bytes of batch_norm_forward and batch_norm_backward (per-chunk partial column sums and two [C] rows).
size_t batch_norm_workspace_bytes(const BatchNormSizes& s);

// As the CPU's batch_norm_forward; lengths, running statistics and parameters are device pointers. too_few (a device
// int32, may be null) is set to 1 in training mode when fewer than 2 positions are valid (no unbiased variance):
// the engine registers it as a deferred check when the lengths live on the device.
void batch_norm_forward(float* y, float* mean, float* rstd, float* running_mean, float* running_var, const float* x,
                        const int32_t* lengths, const float* weight, const float* bias, const BatchNormSizes& s,
                        bool training, float momentum, float eps, void* workspace, int32_t* too_few,
                        cudaStream_t stream);

// As the CPU's batch_norm_backward (dweight and dbias always written, dx may be null).
void batch_norm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                         const int32_t* lengths, const float* mean, const float* rstd, const float* weight,
                         const BatchNormSizes& s, bool training, void* workspace, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
