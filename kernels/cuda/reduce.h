// Sum/mean and max/argmax over one dimension of a contiguous float tensor viewed as [outer, dim, inner] on CUDA;
// the CPU reference is kernels/cpu/reduce.h (same semantics). Deterministic: no atomics, and the split of the
// work depends only on the sizes (and on the 16-byte alignment of x for the vectorised loads).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mixgrad::kernels::cuda {

// Scratch bytes sum_dim_forward needs for these sizes (0 when it needs none; then workspace may be null). Non-zero
// when few outputs reduce long rows (e.g. the full sum of a large tensor): the rows are then split across blocks,
// the per-block partial sums go to the workspace and a second pass adds them in a fixed order.
size_t sum_dim_forward_workspace_bytes(int64_t outer, int64_t dim, int64_t inner);

// y[o, i] = scale * sum_d x[o, d, i], fp32 accumulation. inner == 1: a warp per row (dim < 1024) or a block per
// row, split over several blocks through the workspace when there are few rows; inner > 1: threads over inner
// (coalesced), a loop over dim, dim also split through the workspace when there are few outputs.
// workspace: sum_dim_forward_workspace_bytes(outer, dim, inner) bytes, 16-byte aligned.
void sum_dim_forward(float* y, const float* x, int64_t outer, int64_t dim, int64_t inner, float scale, void* workspace,
                     cudaStream_t stream);

// dx[o, d, i] = scale * dy[o, i].
void sum_dim_backward(float* dx, const float* dy, int64_t outer, int64_t dim, int64_t inner, float scale,
                      cudaStream_t stream);

// y[o, i] = max_d x[o, d, i] and its index (first on ties, a NaN is the maximum). Throws std::invalid_argument
// (on the host, before any launch) when dim == 0 and the output is not empty.
void max_dim_forward(float* y, int64_t* argmax, const float* x, int64_t outer, int64_t dim, int64_t inner,
                     cudaStream_t stream);

// dx[o, d, i] = dy[o, i] where d == argmax[o, i], else 0 (dx fully written; an argmax outside [0, dim) selects
// nothing).
void max_dim_backward(float* dx, const float* dy, const int64_t* argmax, int64_t outer, int64_t dim, int64_t inner,
                      cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
