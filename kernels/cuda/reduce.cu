// CUDA sum/mean and max/argmax over one dimension. Kernels first, then the launch plan and the launchers.
#include "kernels/cuda/reduce.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/reduce_utils.cuh"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kBlock = 256;
// Rows shorter than this are reduced by one warp each (8 rows per block), longer ones by a block each.
constexpr int64_t kWarpRowMax = 1024;
// Splitting: aim for about this many blocks, and never give a block fewer than this many elements (inner == 1)
// or rows of the reduced dimension (inner > 1).
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kMinSplitElems = 16384;
constexpr int64_t kMinSplitRows = 256;
// Block shape for inner > 1: 32 columns of inner x 8 lanes along dim.
constexpr int kInnerTileX = 32;
constexpr int kInnerTileY = 8;
constexpr int64_t kMaxGridY = 65535;

// This thread's share (elements tid, tid + nthreads, ... in 16-byte vectors once p is aligned) of the sum of
// p[0, n): a scalar head up to the first 16-byte boundary, float4 body, scalar tail.
// Leading elements of p[0, n) before the first 16-byte boundary (at most 3).
__device__ __forceinline__ int64_t head_elems(const float* p, int64_t n) {
  return min(n, static_cast<int64_t>(((16 - (reinterpret_cast<uintptr_t>(p) & 15)) & 15) >> 2));
}

__device__ __forceinline__ float thread_range_sum(const float* p, int64_t n, int tid, int nthreads) {
  const int64_t head = head_elems(p, n);
  float acc = tid < head ? p[tid] : 0.f;
  const float* q = p + head;
  const int64_t m = n - head, m4 = m >> 2;
  const float4* q4 = reinterpret_cast<const float4*>(q);
  for (int64_t k = tid; k < m4; k += nthreads) {
    const float4 v = q4[k];
    acc += (v.x + v.y) + (v.z + v.w);
  }
  for (int64_t k = (m4 << 2) + tid; k < m; k += nthreads) acc += q[k];
  return acc;
}

// inner == 1, one warp per row of length dim: y[r] = scale * sum.
__global__ void sum_rows_warp_kernel(float* y, const float* x, int64_t rows, int64_t dim, float scale) {
  const int warps = blockDim.x >> 5;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + (threadIdx.x >> 5); row < rows;
       row += static_cast<int64_t>(gridDim.x) * warps) {
    const float s = warp_sum(thread_range_sum(x + row * dim, dim, threadIdx.x & 31, 32));
    if ((threadIdx.x & 31) == 0) y[row] = scale * s;
  }
}

// inner == 1, block b reduces chunk (b % splits) of row (b / splits). splits == 1: writes scale * sum to out[row];
// otherwise the raw partial sum to out[b] (out = workspace [rows, splits]).
__global__ void sum_rows_block_kernel(float* out, const float* x, int64_t rows, int64_t dim, int64_t splits,
                                      int64_t chunk, float scale) {
  __shared__ float smem[32];
  for (int64_t b = blockIdx.x; b < rows * splits; b += gridDim.x) {
    const int64_t row = b / splits, begin = (b % splits) * chunk;
    const int64_t n = min(chunk, dim - begin);
    const float s = block_sum(thread_range_sum(x + row * dim + begin, n, threadIdx.x, blockDim.x), smem);
    if (threadIdx.x == 0) out[b] = splits == 1 ? scale * s : s;
  }
}

// inner > 1, block (32, 8): threads over 32 columns of inner, 8 lanes striding over this block's range of dim;
// the 8 partial sums are added in lane order. splits == 1: y[o, i] = scale * sum; otherwise the raw sum goes to
// out[o, split, i] (out = workspace [outer, splits, inner]).
__global__ void sum_inner_kernel(float* out, const float* x, int64_t outer, int64_t dim, int64_t inner, int64_t splits,
                                 int64_t chunk, float scale) {
  __shared__ float partial[kInnerTileY][kInnerTileX + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kInnerTileX + tx;
  const int64_t split = blockIdx.z, d_begin = split * chunk, d_end = min(dim, d_begin + chunk);
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    float acc = 0.f;
    if (i < inner) {
      const float* col = x + o * dim * inner + i;
      for (int64_t d = d_begin + ty; d < d_end; d += kInnerTileY) acc += col[d * inner];
    }
    partial[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && i < inner) {
      float s = partial[0][tx];
#pragma unroll
      for (int k = 1; k < kInnerTileY; ++k) s += partial[k][tx];
      if (splits == 1)
        out[o * inner + i] = scale * s;
      else
        out[(o * splits + split) * inner + i] = s;
    }
    __syncthreads();
  }
}

// dx[o, d, i] = scale * dy[o, i], W consecutive outputs per thread (W == 4: one 16-byte store).
template <int W>
__global__ void sum_backward_kernel(float* dx, const float* dy, int64_t total, int64_t dim, int64_t inner,
                                    float scale) {
  const int64_t slab = dim * inner;
  const int64_t n = total / W;
  for (int64_t q = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < n;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v[W];
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const int64_t e = q * W + k;
      v[k] = scale * dy[(e / slab) * inner + e % inner];
    }
    if constexpr (W == 4)
      reinterpret_cast<float4*>(dx)[q] = make_float4(v[0], v[1], v[2], v[3]);
    else
      dx[q] = v[0];
  }
}

struct ArgMax {
  float v;
  int64_t i;
};

// The larger of two candidates under torch.max's order: NaN above everything, then value, then smaller index.
// A total order, so the result does not depend on the order of the reduction.
__device__ __forceinline__ ArgMax better(const ArgMax& a, const ArgMax& b) {
  const bool an = isnan(a.v), bn = isnan(b.v);
  if (an != bn) return an ? a : b;
  if (!an && a.v != b.v) return a.v > b.v ? a : b;
  return a.i <= b.i ? a : b;
}

__device__ __forceinline__ ArgMax warp_argmax(ArgMax a) {
  for (int o = 16; o > 0; o >>= 1) {
    const ArgMax b{__shfl_xor_sync(kFullMask, a.v, o),
                   static_cast<int64_t>(__shfl_xor_sync(kFullMask, static_cast<long long>(a.i), o))};
    a = better(a, b);
  }
  return a;
}

// This thread's best candidate of p[0, n), read like thread_range_sum (scalar head, float4 body, scalar tail).
__device__ __forceinline__ ArgMax thread_range_argmax(const float* p, int64_t n, int tid, int nthreads) {
  const int64_t head = head_elems(p, n);
  ArgMax best{-INFINITY, INT64_MAX};
  if (tid < head) best = ArgMax{p[tid], tid};
  const int64_t m = n - head, m4 = m >> 2;
  const float4* q4 = reinterpret_cast<const float4*>(p + head);
  for (int64_t k = tid; k < m4; k += nthreads) {
    const float4 v = q4[k];
    const int64_t j = head + (k << 2);
    best = better(better(best, ArgMax{v.x, j}),
                  better(ArgMax{v.y, j + 1}, better(ArgMax{v.z, j + 2}, ArgMax{v.w, j + 3})));
  }
  for (int64_t k = (m4 << 2) + tid; k < m; k += nthreads) best = better(best, ArgMax{p[head + k], head + k});
  return best;
}

// inner == 1: a warp per row (8 rows per block) or a block per row.
template <bool kBlockPerRow>
__global__ void __launch_bounds__(1024)
    max_rows_kernel(float* y, int64_t* argmax, const float* x, int64_t rows, int64_t dim) {
  __shared__ float smem_v[32];
  __shared__ int64_t smem_i[32];
  const int lane = threadIdx.x & 31;
  if constexpr (!kBlockPerRow) {
    const int warps = blockDim.x >> 5;
    for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + (threadIdx.x >> 5); row < rows;
         row += static_cast<int64_t>(gridDim.x) * warps) {
      const ArgMax best = warp_argmax(thread_range_argmax(x + row * dim, dim, lane, 32));
      if (lane == 0) {
        y[row] = best.v;
        argmax[row] = best.i;
      }
    }
  } else {
    const int warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
      ArgMax best = warp_argmax(thread_range_argmax(x + row * dim, dim, threadIdx.x, blockDim.x));
      __syncthreads();
      if (lane == 0) {
        smem_v[warp] = best.v;
        smem_i[warp] = best.i;
      }
      __syncthreads();
      if (warp == 0) {
        best = warp_argmax(lane < nwarps ? ArgMax{smem_v[lane], smem_i[lane]} : ArgMax{-INFINITY, INT64_MAX});
        if (lane == 0) {
          y[row] = best.v;
          argmax[row] = best.i;
        }
      }
    }
  }
}

// inner > 1: one thread per output (o, i) walking dim in order (coalesced across i).
__global__ void max_inner_kernel(float* y, int64_t* argmax, const float* x, int64_t outer, int64_t dim, int64_t inner) {
  for (int64_t oi = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; oi < outer * inner;
       oi += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float* col = x + (oi / inner) * dim * inner + oi % inner;
    float best = col[0];
    int64_t best_d = 0;
    for (int64_t d = 1; d < dim && !isnan(best); ++d) {
      const float v = col[d * inner];
      if (isnan(v) || v > best) {
        best = v;
        best_d = d;
      }
    }
    y[oi] = best;
    argmax[oi] = best_d;
  }
}

__global__ void max_backward_kernel(float* dx, const float* dy, const int64_t* argmax, int64_t total, int64_t dim,
                                    int64_t inner) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % inner, od = e / inner, d = od % dim, oi = (od / dim) * inner + i;
    dx[e] = argmax[oi] == d ? dy[oi] : 0.f;
  }
}

// ---------------------------------------------------------------------------------------------------------------

// How sum_dim_forward splits the reduced dimension: `splits` blocks of `chunk` entries of dim each.
struct SumPlan {
  int64_t splits = 1;
  int64_t chunk = 0;
};

SumPlan plan_sum(int64_t outer, int64_t dim, int64_t inner) {
  SumPlan plan{1, dim};
  if (outer <= 0 || inner <= 0 || dim <= 0) return plan;
  int64_t splits = 1;
  if (inner == 1) {
    if (dim < kWarpRowMax) return plan;
    splits = std::min(ceil_div(dim, kMinSplitElems), std::max<int64_t>(1, kTargetBlocks / outer));
  } else {
    const int64_t blocks = ceil_div(inner, kInnerTileX) * std::min(outer, kMaxGridY);
    splits = std::min(ceil_div(dim, kMinSplitRows), std::max<int64_t>(1, kTargetBlocks / blocks));
  }
  if (splits <= 1) return plan;
  plan.chunk = ceil_div(dim, splits);
  plan.splits = ceil_div(dim, plan.chunk);
  return plan;
}

void launch_sum_rows(float* out, const float* x, int64_t rows, int64_t dim, int64_t splits, int64_t chunk, float scale,
                     cudaStream_t stream) {
  if (splits == 1 && dim < kWarpRowMax) {
    constexpr int kRowsPerBlock = kBlock / 32;
    sum_rows_warp_kernel<<<grid_for(rows, kRowsPerBlock), kBlock, 0, stream>>>(out, x, rows, dim, scale);
  } else {
    sum_rows_block_kernel<<<grid_for(rows * splits, 1), kBlock, 0, stream>>>(out, x, rows, dim, splits, chunk, scale);
  }
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void launch_sum_inner(float* out, const float* x, int64_t outer, int64_t dim, int64_t inner, int64_t splits,
                      int64_t chunk, float scale, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(inner, kInnerTileX)),
                  static_cast<unsigned>(std::min(outer, kMaxGridY)), static_cast<unsigned>(splits));
  sum_inner_kernel<<<grid, dim3(kInnerTileX, kInnerTileY), 0, stream>>>(out, x, outer, dim, inner, splits, chunk,
                                                                        scale);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace

size_t sum_dim_forward_workspace_bytes(int64_t outer, int64_t dim, int64_t inner) {
  const SumPlan plan = plan_sum(outer, dim, inner);
  return plan.splits > 1 ? static_cast<size_t>(outer * plan.splits * inner) * sizeof(float) : 0;
}

void sum_dim_forward(float* y, const float* x, int64_t outer, int64_t dim, int64_t inner, float scale, void* workspace,
                     cudaStream_t stream) {
  if (outer <= 0 || inner <= 0) return;
  const SumPlan plan = plan_sum(outer, dim, inner);
  float* partial = static_cast<float*>(workspace);
  if (plan.splits > 1 && partial == nullptr)
    throw std::invalid_argument("sum_dim_forward: these sizes need a workspace of " +
                                std::to_string(sum_dim_forward_workspace_bytes(outer, dim, inner)) +
                                " bytes but workspace is null");
  if (inner == 1) {
    if (plan.splits == 1) {
      launch_sum_rows(y, x, outer, dim, 1, dim, scale, stream);
    } else {
      launch_sum_rows(partial, x, outer, dim, plan.splits, plan.chunk, scale, stream);
      launch_sum_rows(y, partial, outer, plan.splits, 1, plan.splits, scale, stream);
    }
  } else {
    if (plan.splits == 1) {
      launch_sum_inner(y, x, outer, dim, inner, 1, dim, scale, stream);
    } else {
      launch_sum_inner(partial, x, outer, dim, inner, plan.splits, plan.chunk, scale, stream);
      launch_sum_inner(y, partial, outer, plan.splits, inner, 1, plan.splits, scale, stream);
    }
  }
}

void sum_dim_backward(float* dx, const float* dy, int64_t outer, int64_t dim, int64_t inner, float scale,
                      cudaStream_t stream) {
  const int64_t total = outer * dim * inner;
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  if (total % 4 == 0 && aligned16(dx)) {
    sum_backward_kernel<4><<<grid_for(total / 4, kBlock), kBlock, 0, stream>>>(dx, dy, total, dim, inner, scale);
  } else {
    sum_backward_kernel<1><<<grid_for(total, kBlock), kBlock, 0, stream>>>(dx, dy, total, dim, inner, scale);
  }
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void max_dim_forward(float* y, int64_t* argmax, const float* x, int64_t outer, int64_t dim, int64_t inner,
                     cudaStream_t stream) {
  if (outer <= 0 || inner <= 0) return;
  if (dim <= 0)
    throw std::invalid_argument("max_dim_forward: cannot take the maximum over an empty dimension (outer = " +
                                std::to_string(outer) + ", inner = " + std::to_string(inner) + ")");
  if (inner == 1) {
    if (dim < kWarpRowMax) {
      constexpr int kRowsPerBlock = kBlock / 32;
      max_rows_kernel<false><<<grid_for(outer, kRowsPerBlock), kBlock, 0, stream>>>(y, argmax, x, outer, dim);
    } else {
      // Few long rows (a full-tensor argmax) get the largest block.
      const int threads = outer < 1024 ? 1024 : kBlock;
      max_rows_kernel<true><<<grid_for(outer, 1), threads, 0, stream>>>(y, argmax, x, outer, dim);
    }
  } else {
    max_inner_kernel<<<grid_for(outer * inner, kBlock), kBlock, 0, stream>>>(y, argmax, x, outer, dim, inner);
  }
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void max_dim_backward(float* dx, const float* dy, const int64_t* argmax, int64_t outer, int64_t dim, int64_t inner,
                      cudaStream_t stream) {
  const int64_t total = outer * dim * inner;
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  max_backward_kernel<<<grid_for(total, kBlock), kBlock, 0, stream>>>(dx, dy, argmax, total, dim, inner);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace mixgrad::kernels::cuda
