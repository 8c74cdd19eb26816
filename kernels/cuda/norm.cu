// CUDA LayerNorm / RMSNorm. RMSNorm is LayerNorm with the mean fixed at 0 and no bias, so one set of kernels
// templated on kRms serves both. Kernels first (warp-per-row register kernels, block-per-row kernels, the
// two-stage column sums for the parameter gradients), then the launchers.
#include "kernels/cuda/norm.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/reduce_utils.cuh"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int64_t kWarpRowMax = 1024;  // longest row a warp keeps in registers (32 values per lane)
constexpr int kWarpsPerBlock = 4;
constexpr int kRowBlock = 256;  // threads of the block-per-row kernels
// Column sums: 32 columns x 8 row lanes per block; rows split into chunks of at least kMinChunkRows so that
// there are about kTargetBlocks blocks.
constexpr int kColTile = 32;
constexpr int kRowLanes = 8;
constexpr int64_t kMinChunkRows = 64;
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kMaxGridY = 65535;

// W values of an optional per-column parameter (fill when p is null).
template <int W>
__device__ __forceinline__ void load_param(const float* p, int64_t j, float fill, float* v) {
  if (p) {
    load_vec<W>(p + j, v);
  } else {
#pragma unroll
    for (int t = 0; t < W; ++t) v[t] = fill;
  }
}

// Warp per row, lane holds N values: the k-th vector of W starts at column (k * 32 + lane) * W.
template <int N, int W, bool kRms>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    norm_forward_warp_kernel(float* y, float* mean_out, float* rstd_out, const float* x, const float* weight,
                             const float* bias, int64_t rows, int64_t cols, float eps) {
  const int lane = threadIdx.x & 31;
  const float inv_cols = 1.f / static_cast<float>(cols);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const float* xr = x + row * cols;
    float v[N];
    float q = 0.f;
#pragma unroll
    for (int k = 0; k < N / W; ++k) {
      const int64_t j = static_cast<int64_t>(k * 32 + lane) * W;
      if (j < cols) {
        load_vec<W>(xr + j, v + k * W);
      } else {
#pragma unroll
        for (int t = 0; t < W; ++t) v[k * W + t] = 0.f;
      }
    }
    // Shifted data: the row's first element is subtracted before anything is summed, so a large common offset
    // (x = 100 + noise) neither cancels in the variance nor costs the mean its low bits; v - shift is exact for
    // values within a factor of two of the shift. mu below is the mean of v - shift.
    float shift = 0.f, mu = 0.f;
    if constexpr (!kRms) {
      shift = __shfl_sync(0xffffffffu, v[0], 0);
#pragma unroll
      for (int k = 0; k < N / W; ++k) {
        if (static_cast<int64_t>(k * 32 + lane) * W < cols) {
#pragma unroll
          for (int t = 0; t < W; ++t) {
            v[k * W + t] -= shift;
            mu += v[k * W + t];
          }
        }
      }
      mu = warp_sum(mu) * inv_cols;
    }
#pragma unroll
    for (int k = 0; k < N / W; ++k) {
      if (static_cast<int64_t>(k * 32 + lane) * W < cols) {
#pragma unroll
        for (int t = 0; t < W; ++t) {
          const float d = v[k * W + t] - mu;
          q += d * d;
        }
      }
    }
    const float rs = 1.f / sqrtf(warp_sum(q) * inv_cols + eps);
#pragma unroll
    for (int k = 0; k < N / W; ++k) {
      const int64_t j = static_cast<int64_t>(k * 32 + lane) * W;
      if (j < cols) {
        float w[W], b[W], o[W];
        load_param<W>(weight, j, 1.f, w);
        load_param<W>(bias, j, 0.f, b);
#pragma unroll
        for (int t = 0; t < W; ++t) o[t] = (v[k * W + t] - mu) * rs * w[t] + b[t];
        store_vec<W>(y + row * cols + j, o);
      }
    }
    if (lane == 0) {
      if (mean_out) mean_out[row] = shift + mu;
      if (rstd_out) rstd_out[row] = rs;
    }
  }
}

// Block per row: (mean,) variance and output in three passes over the row.
template <int W, bool kRms>
__global__ void __launch_bounds__(kRowBlock)
    norm_forward_block_kernel(float* y, float* mean_out, float* rstd_out, const float* x, const float* weight,
                              const float* bias, int64_t rows, int64_t cols, float eps) {
  __shared__ float smem[32];
  const int64_t stride = static_cast<int64_t>(blockDim.x) * W;
  const float inv_cols = 1.f / static_cast<float>(cols);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* xr = x + row * cols;
    // Shifted data as in the warp kernel: mu is the mean of x - shift, shift = the row's first element.
    float shift = 0.f, mu = 0.f;
    if constexpr (!kRms) {
      shift = xr[0];
      float s = 0.f;
      for (int64_t j = static_cast<int64_t>(threadIdx.x) * W; j < cols; j += stride) {
        float v[W];
        load_vec<W>(xr + j, v);
#pragma unroll
        for (int t = 0; t < W; ++t) s += v[t] - shift;
      }
      mu = block_sum(s, smem) * inv_cols;
    }
    float q = 0.f;
    for (int64_t j = static_cast<int64_t>(threadIdx.x) * W; j < cols; j += stride) {
      float v[W];
      load_vec<W>(xr + j, v);
#pragma unroll
      for (int t = 0; t < W; ++t) q += ((v[t] - shift) - mu) * ((v[t] - shift) - mu);
    }
    const float rs = 1.f / sqrtf(block_sum(q, smem) * inv_cols + eps);
    for (int64_t j = static_cast<int64_t>(threadIdx.x) * W; j < cols; j += stride) {
      float v[W], w[W], b[W];
      load_vec<W>(xr + j, v);
      load_param<W>(weight, j, 1.f, w);
      load_param<W>(bias, j, 0.f, b);
#pragma unroll
      for (int t = 0; t < W; ++t) v[t] = ((v[t] - shift) - mu) * rs * w[t] + b[t];
      store_vec<W>(y + row * cols + j, v);
    }
    if (threadIdx.x == 0) {
      if (mean_out) mean_out[row] = shift + mu;
      if (rstd_out) rstd_out[row] = rs;
    }
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight and xhat = (x - mean) * rstd;
// RMSNorm drops the mean(g) term and has mean = 0. Warp per row, dy and x in registers.
template <int N, int W, bool kRms>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    norm_backward_warp_kernel(float* dx, const float* dy, const float* x, const float* mean, const float* rstd,
                              const float* weight, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x & 31;
  const float inv_cols = 1.f / static_cast<float>(cols);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t base = row * cols;
    const float mu = kRms ? 0.f : mean[row], rs = rstd[row];
    float g[N], h[N];
    float sg = 0.f, sgh = 0.f;
#pragma unroll
    for (int k = 0; k < N / W; ++k) {
      const int64_t j = static_cast<int64_t>(k * 32 + lane) * W;
      if (j < cols) {
        float w[W];
        load_vec<W>(dy + base + j, g + k * W);
        load_vec<W>(x + base + j, h + k * W);
        load_param<W>(weight, j, 1.f, w);
#pragma unroll
        for (int t = 0; t < W; ++t) {
          g[k * W + t] *= w[t];
          h[k * W + t] = (h[k * W + t] - mu) * rs;
        }
      } else {
#pragma unroll
        for (int t = 0; t < W; ++t) g[k * W + t] = 0.f, h[k * W + t] = 0.f;
      }
    }
#pragma unroll
    for (int k = 0; k < N; ++k) {
      sg += g[k];
      sgh += g[k] * h[k];
    }
    const float mg = kRms ? 0.f : warp_sum(sg) * inv_cols;
    const float mgh = warp_sum(sgh) * inv_cols;
#pragma unroll
    for (int k = 0; k < N; ++k) g[k] = rs * (g[k] - mg - h[k] * mgh);
#pragma unroll
    for (int k = 0; k < N / W; ++k) {
      const int64_t j = static_cast<int64_t>(k * 32 + lane) * W;
      if (j < cols) store_vec<W>(dx + base + j, g + k * W);
    }
  }
}

// Block-per-row version of norm_backward_warp_kernel: sums in one pass, dx in a second.
template <int W, bool kRms>
__global__ void __launch_bounds__(kRowBlock)
    norm_backward_block_kernel(float* dx, const float* dy, const float* x, const float* mean, const float* rstd,
                               const float* weight, int64_t rows, int64_t cols) {
  __shared__ float smem[32];
  const int64_t stride = static_cast<int64_t>(blockDim.x) * W;
  const float inv_cols = 1.f / static_cast<float>(cols);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * cols;
    const float mu = kRms ? 0.f : mean[row], rs = rstd[row];
    float sg = 0.f, sgh = 0.f;
    for (int64_t j = static_cast<int64_t>(threadIdx.x) * W; j < cols; j += stride) {
      float g[W], v[W], w[W];
      load_vec<W>(dy + base + j, g);
      load_vec<W>(x + base + j, v);
      load_param<W>(weight, j, 1.f, w);
#pragma unroll
      for (int t = 0; t < W; ++t) {
        sg += g[t] * w[t];
        sgh += g[t] * w[t] * ((v[t] - mu) * rs);
      }
    }
    const float mg = kRms ? 0.f : block_sum(sg, smem) * inv_cols;
    const float mgh = block_sum(sgh, smem) * inv_cols;
    for (int64_t j = static_cast<int64_t>(threadIdx.x) * W; j < cols; j += stride) {
      float g[W], v[W], w[W];
      load_vec<W>(dy + base + j, g);
      load_vec<W>(x + base + j, v);
      load_param<W>(weight, j, 1.f, w);
#pragma unroll
      for (int t = 0; t < W; ++t) g[t] = rs * (g[t] * w[t] - mg - (v[t] - mu) * rs * mgh);
      store_vec<W>(dx + base + j, g);
    }
  }
}

// Stage 1 of the parameter gradients: block (32, 8) sums columns [32 * blockIdx.x, +32) over the rows of chunk
// blockIdx.y (8 row lanes, added in lane order): out_w[chunk, c] = sum dy * xhat, out_b[chunk, c] = sum dy
// (either may be null). With one chunk, out_w / out_b are dweight / dbias themselves.
template <bool kRms>
__global__ void __launch_bounds__(kColTile* kRowLanes)
    param_grad_partial_kernel(float* out_w, float* out_b, const float* dy, const float* x, const float* mean,
                              const float* rstd, int64_t rows, int64_t cols, int64_t chunk_rows) {
  __shared__ float part_w[kRowLanes][kColTile + 1], part_b[kRowLanes][kColTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColTile + tx;
  for (int64_t chunk = blockIdx.y; chunk * chunk_rows < rows; chunk += gridDim.y) {
    const int64_t r_end = min(rows, (chunk + 1) * chunk_rows);
    float acc_w = 0.f, acc_b = 0.f;
    if (c < cols) {
      for (int64_t r = chunk * chunk_rows + ty; r < r_end; r += kRowLanes) {
        const float g = dy[r * cols + c];
        const float mu = kRms ? 0.f : mean[r];
        acc_w += g * ((x[r * cols + c] - mu) * rstd[r]);
        acc_b += g;
      }
    }
    part_w[ty][tx] = acc_w;
    part_b[ty][tx] = acc_b;
    __syncthreads();
    if (ty == 0 && c < cols) {
      float sw = part_w[0][tx], sb = part_b[0][tx];
#pragma unroll
      for (int k = 1; k < kRowLanes; ++k) sw += part_w[k][tx], sb += part_b[k][tx];
      if (out_w) out_w[chunk * cols + c] = sw;
      if (out_b) out_b[chunk * cols + c] = sb;
    }
    __syncthreads();
  }
}

// Stage 2: out[c] = sum over chunks (in order) of partial[chunk, c].
__global__ void column_sum_kernel(float* out, const float* partial, int64_t chunks, int64_t cols) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
    out[c] = s;
  }
}

// ---------------------------------------------------------------------------------------------------------------

unsigned warp_grid(int64_t rows) { return grid_for(rows, kWarpsPerBlock); }
unsigned block_grid(int64_t rows) { return grid_for(rows, 1); }

// Rows per chunk of the parameter-gradient column sums (the number of chunks follows).
int64_t chunk_rows_for(int64_t rows, int64_t cols) {
  const int64_t tiles = ceil_div(cols, kColTile);
  const int64_t chunks =
      std::min({ceil_div(rows, kMinChunkRows), std::max<int64_t>(1, kTargetBlocks / tiles), kMaxGridY});
  return ceil_div(rows, std::max<int64_t>(chunks, 1));
}

int64_t chunks_for(int64_t rows, int64_t cols) {
  return rows <= 0 || cols <= 0 ? 0 : ceil_div(rows, chunk_rows_for(rows, cols));
}

template <bool kRms>
void launch_forward(float* y, float* mean, float* rstd, const float* x, const float* weight, const float* bias,
                    int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const bool vec = cols % 4 == 0 && aligned16(y) && aligned16(x) && aligned16(weight) && aligned16(bias);
  if (cols <= kWarpRowMax) {
    dispatch_warp(cols, vec, [&]<int N, int W>() {
      norm_forward_warp_kernel<N, W, kRms>
          <<<warp_grid(rows), kWarpsPerBlock * 32, 0, stream>>>(y, mean, rstd, x, weight, bias, rows, cols, eps);
    });
  } else if (vec) {
    norm_forward_block_kernel<4, kRms>
        <<<block_grid(rows), kRowBlock, 0, stream>>>(y, mean, rstd, x, weight, bias, rows, cols, eps);
  } else {
    norm_forward_block_kernel<1, kRms>
        <<<block_grid(rows), kRowBlock, 0, stream>>>(y, mean, rstd, x, weight, bias, rows, cols, eps);
  }
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

template <bool kRms>
void launch_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x, const float* mean,
                     const float* rstd, const float* weight, int64_t rows, int64_t cols, void* workspace,
                     const char* op, cudaStream_t stream) {
  if (cols <= 0) return;
  if (rows <= 0) {  // empty sums: the parameter gradients are zero
    if (dweight) MIXGRAD_CUDA_CHECK(cudaMemsetAsync(dweight, 0, static_cast<size_t>(cols) * sizeof(float), stream));
    if (dbias) MIXGRAD_CUDA_CHECK(cudaMemsetAsync(dbias, 0, static_cast<size_t>(cols) * sizeof(float), stream));
    return;
  }
  if (dx) {
    const bool vec = cols % 4 == 0 && aligned16(dx) && aligned16(dy) && aligned16(x) && aligned16(weight);
    if (cols <= kWarpRowMax) {
      dispatch_warp(cols, vec, [&]<int N, int W>() {
        norm_backward_warp_kernel<N, W, kRms>
            <<<warp_grid(rows), kWarpsPerBlock * 32, 0, stream>>>(dx, dy, x, mean, rstd, weight, rows, cols);
      });
    } else if (vec) {
      norm_backward_block_kernel<4, kRms>
          <<<block_grid(rows), kRowBlock, 0, stream>>>(dx, dy, x, mean, rstd, weight, rows, cols);
    } else {
      norm_backward_block_kernel<1, kRms>
          <<<block_grid(rows), kRowBlock, 0, stream>>>(dx, dy, x, mean, rstd, weight, rows, cols);
    }
    MIXGRAD_CUDA_LAUNCH_CHECK();
  }
  if (!dweight && !dbias) return;
  const int64_t chunk_rows = chunk_rows_for(rows, cols), chunks = ceil_div(rows, chunk_rows);
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, kColTile)), static_cast<unsigned>(chunks));
  const dim3 block(kColTile, kRowLanes);
  if (chunks == 1) {
    param_grad_partial_kernel<kRms>
        <<<grid, block, 0, stream>>>(dweight, dbias, dy, x, mean, rstd, rows, cols, chunk_rows);
    MIXGRAD_CUDA_LAUNCH_CHECK();
    return;
  }
  if (!workspace)
    throw std::invalid_argument(std::string(op) + ": rows = " + std::to_string(rows) +
                                ", cols = " + std::to_string(cols) + " need a workspace but workspace is null");
  float* part_w = static_cast<float*>(workspace);
  float* part_b = part_w + chunks * cols;
  param_grad_partial_kernel<kRms><<<grid, block, 0, stream>>>(dweight ? part_w : nullptr, dbias ? part_b : nullptr, dy,
                                                              x, mean, rstd, rows, cols, chunk_rows);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  const unsigned col_grid = static_cast<unsigned>(std::min(ceil_div(cols, 256), kMaxGrid));
  if (dweight) {
    column_sum_kernel<<<col_grid, 256, 0, stream>>>(dweight, part_w, chunks, cols);
    MIXGRAD_CUDA_LAUNCH_CHECK();
  }
  if (dbias) {
    column_sum_kernel<<<col_grid, 256, 0, stream>>>(dbias, part_b, chunks, cols);
    MIXGRAD_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight, const float* bias,
                        int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  launch_forward<false>(y, mean, rstd, x, weight, bias, rows, cols, eps, stream);
}

size_t layer_norm_backward_workspace_bytes(int64_t rows, int64_t cols) {
  const int64_t chunks = chunks_for(rows, cols);
  return chunks > 1 ? static_cast<size_t>(2 * chunks * cols) * sizeof(float) : 0;
}

void layer_norm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x, const float* mean,
                         const float* rstd, const float* weight, int64_t rows, int64_t cols, void* workspace,
                         cudaStream_t stream) {
  launch_backward<false>(dx, dweight, dbias, dy, x, mean, rstd, weight, rows, cols, workspace, "layer_norm_backward",
                         stream);
}

void rms_norm_forward(float* y, float* rstd, const float* x, const float* weight, int64_t rows, int64_t cols, float eps,
                      cudaStream_t stream) {
  launch_forward<true>(y, nullptr, rstd, x, weight, nullptr, rows, cols, eps, stream);
}

size_t rms_norm_backward_workspace_bytes(int64_t rows, int64_t cols) {
  const int64_t chunks = chunks_for(rows, cols);
  return chunks > 1 ? static_cast<size_t>(chunks * cols) * sizeof(float) : 0;
}

void rms_norm_backward(float* dx, float* dweight, const float* dy, const float* x, const float* rstd,
                       const float* weight, int64_t rows, int64_t cols, void* workspace, cudaStream_t stream) {
  launch_backward<true>(dx, dweight, nullptr, dy, x, nullptr, rstd, weight, rows, cols, workspace, "rms_norm_backward",
                        stream);
}

}  // namespace mixgrad::kernels::cuda
