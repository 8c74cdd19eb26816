// Optimizer kernels on CUDA: one fused AdamW launch over all parameters, SGD per tensor, and global-norm
// clipping without a host round-trip. Twin of kernels/cpu/optim.h (same semantics, float only).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mixgrad::kernels::cuda {

// Multi-tensor tables: params / grads / exp_avg / exp_avg_sq / tensors, sizes and starts are arrays in DEVICE
// memory (uploaded once by the caller and reused every step); starts[t] = sizes[0] + ... + sizes[t-1] and
// total = sum of sizes are also passed by value. Work split: the concatenated range [0, total) is cut into
// fixed chunks of 4096 elements, one block per chunk (grid-stride past 2^20 blocks); a block finds the tensor
// holding its first element by binary search over `starts` (log2(num_tensors) cached loads, once per chunk)
// and walks the tensors overlapping its chunk. Per tensor it uses 128-bit loads when all its pointers are
// 16-byte aligned (scalar head/tail otherwise). A null grad / tensor pointer is skipped.

// One AdamW step over all tensors, PyTorch semantics (see kernels::cpu::adamw_step), one launch.
void adamw_step(float* const* params, const float* const* grads, float* const* exp_avg, float* const* exp_avg_sq,
                const int64_t* sizes, const int64_t* starts, int num_tensors, int64_t total, float lr, float beta1,
                float beta2, float eps, float weight_decay, float bias_correction1, float bias_correction2,
                cudaStream_t stream);

// One SGD step on one tensor (host-side pointers to device memory), PyTorch semantics (see kernels::cpu::sgd_step).
void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n, float lr, float momentum,
              float dampening, float weight_decay, bool nesterov, bool first_step, cudaStream_t stream);

// Bytes of the `partial` workspace of sum_squares_multi for this total: one float per stage-1 block,
// min(ceil(total / 4096), 1024) floats, so at most 4 KiB. 0 when total == 0.
int64_t sum_squares_multi_workspace_bytes(int64_t total);

// *result (device) = sum over all tensors of x^2 (null tensors count as zeros). Deterministic two-stage
// reduction without atomics: stage 1 writes one fp32 partial per block (the block count depends only on
// total), stage 2 (one block) sums the partials in a fixed order in double. `partial` must hold
// sum_squares_multi_workspace_bytes(total) bytes.
void sum_squares_multi(float* partial, float* result, const float* const* tensors, const int64_t* sizes,
                       const int64_t* starts, int num_tensors, int64_t total, cudaStream_t stream);

// x <- x * (*scale) for every tensor; `scale` is one float in device memory (e.g. written by clip_coef). When
// *scale == 1 the kernel returns without touching the tensors.
void scale_multi(float* const* tensors, const int64_t* sizes, const int64_t* starts, int num_tensors, int64_t total,
                 const float* scale, cudaStream_t stream);

// *coef = min(1, max_norm / (sqrt(*total_sq) + 1e-6)) on the device (both pointers device memory), so that
// clip_grad_norm_ is sum_squares_multi -> clip_coef -> scale_multi with no synchronisation.
void clip_coef(float* coef, const float* total_sq, float max_norm, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
