// CUDA ScaleNorm and masked BatchNorm (MEGA's sequence norms, specs/lra.md §6.2); formulas in kernels/norm_math.h,
// shared with the CPU reference kernels/cpu/norm.cpp. Kernels first, launchers after.
// ScaleNorm: a warp per row (two passes over the row, 16-byte loads when the row allows), its scalar gradient as
// per-row partials summed by one block in a fixed order. BatchNorm: per-channel sums over the valid rows in two
// stages — a block per (32-column tile, chunk of rows) with 8 row lanes writes a partial per chunk, then one thread
// per channel adds the chunks in order — for the mean, then the centred squares, then (backward) Σ dy and Σ dy·x̂;
// elementwise kernels apply the result. No atomics: every result is deterministic.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/reduce_utils.cuh"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;  // ScaleNorm rows per block
constexpr int kThreads = 256;      // elementwise and per-channel kernels
constexpr int kColTile = 32;       // BatchNorm column sums: 32 channels x 8 row lanes per block
constexpr int kRowLanes = 8;
constexpr int64_t kMinChunkRows = 64;
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kMaxGridY = 65535;

// ---- ScaleNorm ---------------------------------------------------------------------------------------------------

template <int W>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    scale_norm_forward_kernel(float* y, float* rstd, const float* x, const float* g, int64_t rows, int64_t cols,
                              float eps) {
  const int lane = threadIdx.x & 31;
  const float gv = *g;
  for (int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < rows;
       row += int64_t(gridDim.x) * kWarpsPerBlock) {
    const float* xr = x + row * cols;
    float sq = 0.f;
    for (int64_t j = int64_t(lane) * W; j < cols; j += 32 * W) {
      float v[W];
      load_vec<W>(xr + j, v);
#pragma unroll
      for (int t = 0; t < W; ++t) sq += v[t] * v[t];
    }
    const float rs = norm_rstd(warp_sum(sq) / static_cast<float>(cols), eps), scale = gv * rs;
    for (int64_t j = int64_t(lane) * W; j < cols; j += 32 * W) {
      float v[W];
      load_vec<W>(xr + j, v);
#pragma unroll
      for (int t = 0; t < W; ++t) v[t] *= scale;
      store_vec<W>(y + row * cols + j, v);
    }
    if (rstd && lane == 0) rstd[row] = rs;
  }
}

// dx (may be null) and row_dg[row] = rstd·Σ_c dy·x (may be null).
template <int W>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    scale_norm_backward_kernel(float* dx, float* row_dg, const float* dy, const float* x, const float* rstd,
                               const float* g, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x & 31;
  const float gv = *g;
  for (int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < rows;
       row += int64_t(gridDim.x) * kWarpsPerBlock) {
    const float* xr = x + row * cols;
    const float* dyr = dy + row * cols;
    float s = 0.f;
    for (int64_t j = int64_t(lane) * W; j < cols; j += 32 * W) {
      float v[W], d[W];
      load_vec<W>(xr + j, v);
      load_vec<W>(dyr + j, d);
#pragma unroll
      for (int t = 0; t < W; ++t) s += d[t] * v[t];
    }
    s = warp_sum(s);
    const float rs = rstd[row];
    if (row_dg && lane == 0) row_dg[row] = rs * s;
    if (!dx) continue;
    const float k = rs * rs * s / static_cast<float>(cols), g_r = gv * rs;
    for (int64_t j = int64_t(lane) * W; j < cols; j += 32 * W) {
      float v[W], d[W];
      load_vec<W>(xr + j, v);
      load_vec<W>(dyr + j, d);
#pragma unroll
      for (int t = 0; t < W; ++t) v[t] = scale_norm_dx(d[t], v[t], g_r, k);
      store_vec<W>(dx + row * cols + j, v);
    }
  }
}

// One block: out[0] = Σ values[0 .. n), each thread striding in a fixed pattern, then a fixed reduction tree.
__global__ void __launch_bounds__(kThreads) sum_all_kernel(float* out, const float* values, int64_t n) {
  __shared__ float smem[32];
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += values[i];
  s = block_sum(s, smem);
  if (threadIdx.x == 0) *out = s;
}

// ---- BatchNorm ---------------------------------------------------------------------------------------------------

// What a column-sum pass adds per valid element: x (for the mean), (x − mean)² (for the variance), or dy and dy·x̂
// (for the gradients).
enum class BnSum { x, centred_square, grad };

struct BnSumArgs {
  const float* x;
  const float* dy;
  const int32_t* lengths;
  const float* mean;
  const float* rstd;
  int64_t rows, length, channels, chunk_rows;
};

// Block (tile, chunk): threads (tx, ty) sum rows r0 + ty, r0 + ty + 8, ... of channel tile·32 + tx; the 8 row lanes
// are then added in order into part_a / part_b [chunks, C] (part_b only for BnSum::grad).
template <BnSum M>
__global__ void __launch_bounds__(kColTile* kRowLanes) bn_partial_kernel(float* part_a, float* part_b, BnSumArgs a) {
  __shared__ float sa[kRowLanes][kColTile + 1], sb[kRowLanes][kColTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t C = a.channels, j = int64_t(blockIdx.x) * kColTile + tx;
  const int64_t r0 = int64_t(blockIdx.y) * a.chunk_rows;
  const int64_t r1 = r0 + a.chunk_rows < a.rows ? r0 + a.chunk_rows : a.rows;
  float acc_a = 0.f, acc_b = 0.f;
  if (j < C) {
    const float mu = M == BnSum::x ? 0.f : a.mean[j];
    const float rs = M == BnSum::grad ? a.rstd[j] : 0.f;
    for (int64_t r = r0 + ty; r < r1; r += kRowLanes) {
      if (!norm_row_valid(a.lengths, r, a.length)) continue;
      const float v = a.x[r * C + j];
      if constexpr (M == BnSum::x) {
        acc_a += v;
      } else if constexpr (M == BnSum::centred_square) {
        acc_a += (v - mu) * (v - mu);
      } else {
        const float d = a.dy[r * C + j];
        acc_a += d;
        acc_b += d * ((v - mu) * rs);
      }
    }
  }
  sa[ty][tx] = acc_a;
  sb[ty][tx] = acc_b;
  __syncthreads();
  if (ty != 0 || j >= C) return;
  float ta = 0.f, tb = 0.f;
#pragma unroll
  for (int l = 0; l < kRowLanes; ++l) ta += sa[l][tx], tb += sb[l][tx];
  part_a[int64_t(blockIdx.y) * C + j] = ta;
  if constexpr (M == BnSum::grad) part_b[int64_t(blockIdx.y) * C + j] = tb;
}

__device__ __forceinline__ float chunk_sum(const float* part, int64_t chunks, int64_t C, int64_t j) {
  float s = 0.f;
  for (int64_t k = 0; k < chunks; ++k) s += part[k * C + j];
  return s;
}

struct BnCount {
  const int32_t* lengths;
  int64_t batch, length;
  __device__ __forceinline__ int64_t valid() const { return norm_valid_count(lengths, batch, length); }
};

__global__ void bn_mean_kernel(float* mean, const float* part, int64_t chunks, int64_t C, BnCount count) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= C) return;
  const int64_t n = count.valid();
  mean[j] = n > 0 ? chunk_sum(part, chunks, C, j) / static_cast<float>(n) : 0.f;
}

// Biased variance → rstd, the running-statistics update (when running_mean is non-null) and the too-few flag.
__global__ void bn_var_kernel(float* rstd, float* running_mean, float* running_var, int32_t* too_few, const float* mean,
                              const float* part, int64_t chunks, int64_t C, BnCount count, float momentum, float eps) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= C) return;
  const int64_t n = count.valid();
  const float var = n > 0 ? chunk_sum(part, chunks, C, j) / static_cast<float>(n) : 0.f;
  rstd[j] = norm_rstd(var, eps);
  if (running_mean && running_var)
    batch_norm_running_update(running_mean[j], running_var[j], mean[j], var, n, momentum);
  if (too_few && j == 0 && n < 2) *too_few = 1;
}

__global__ void bn_eval_stats_kernel(float* mean, float* rstd, const float* running_mean, const float* running_var,
                                     int64_t C, float eps) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= C) return;
  mean[j] = running_mean[j];
  rstd[j] = norm_rstd(running_var[j], eps);
}

__global__ void bn_apply_kernel(float* y, const float* x, const int32_t* lengths, const float* mean, const float* rstd,
                                const float* weight, const float* bias, int64_t rows, int64_t length, int64_t C) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * C; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / C, c = i % C;
    y[i] = norm_row_valid(lengths, r, length)
               ? batch_norm_value(x[i], mean[c], rstd[c], weight ? weight[c] : 1.f, bias ? bias[c] : 0.f)
               : 0.f;
  }
}

// dbias = Σ dy, dweight = Σ dy·x̂; coef = [Σ dy / n, Σ dy·x̂ / n] (training) or zeros (eval) for the dx kernel.
__global__ void bn_grad_finalize_kernel(float* dweight, float* dbias, float* coef, const float* part_a,
                                        const float* part_b, int64_t chunks, int64_t C, BnCount count, bool training) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= C) return;
  const float sa = chunk_sum(part_a, chunks, C, j), sb = chunk_sum(part_b, chunks, C, j);
  dbias[j] = sa;
  dweight[j] = sb;
  const int64_t n = training ? count.valid() : 0;
  coef[j] = n > 0 ? sa / static_cast<float>(n) : 0.f;
  coef[C + j] = n > 0 ? sb / static_cast<float>(n) : 0.f;
}

__global__ void bn_dx_kernel(float* dx, const float* dy, const float* x, const int32_t* lengths, const float* mean,
                             const float* rstd, const float* weight, const float* coef, int64_t rows, int64_t length,
                             int64_t C) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * C; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / C, c = i % C;
    if (!norm_row_valid(lengths, r, length)) {
      dx[i] = 0.f;
      continue;
    }
    const float rs = rstd[c], xhat = (x[i] - mean[c]) * rs;
    dx[i] = batch_norm_dx(dy[i], xhat, (weight ? weight[c] : 1.f) * rs, coef[c], coef[C + c]);
  }
}

// ---- Launch helpers ----------------------------------------------------------------------------------------------

unsigned warp_rows_grid(int64_t rows) { return grid_for(rows, kWarpsPerBlock); }
unsigned per_channel_grid(int64_t C) { return grid_for(C, kThreads); }
unsigned elementwise_grid(int64_t n) { return grid_for(n, kThreads); }

// Rows per chunk of the column sums: at least kMinChunkRows, about kTargetBlocks blocks, at most kMaxGridY chunks.
int64_t bn_chunk_rows(const BatchNormSizes& s) {
  const int64_t rows = std::max<int64_t>(s.rows(), 1), tiles = ceil_div(std::max<int64_t>(s.channels, 1), kColTile);
  const int64_t want = std::clamp<int64_t>(kTargetBlocks / tiles, 1, kMaxGridY);
  const int64_t chunks = std::clamp<int64_t>(ceil_div(rows, kMinChunkRows), 1, want);
  return ceil_div(rows, chunks);
}

int64_t bn_chunks(const BatchNormSizes& s) { return ceil_div(std::max<int64_t>(s.rows(), 1), bn_chunk_rows(s)); }

template <BnSum M>
void launch_partial(float* part_a, float* part_b, const BnSumArgs& a, int64_t chunks, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(a.channels, kColTile)), static_cast<unsigned>(chunks));
  bn_partial_kernel<M><<<grid, dim3(kColTile, kRowLanes), 0, stream>>>(part_a, part_b, a);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace

void scale_norm_forward(float* y, float* rstd, const float* x, const float* g, int64_t rows, int64_t cols, float eps,
                        cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  if (cols % 4 == 0 && aligned16(y) && aligned16(x))
    scale_norm_forward_kernel<4>
        <<<warp_rows_grid(rows), kWarpsPerBlock * 32, 0, stream>>>(y, rstd, x, g, rows, cols, eps);
  else
    scale_norm_forward_kernel<1>
        <<<warp_rows_grid(rows), kWarpsPerBlock * 32, 0, stream>>>(y, rstd, x, g, rows, cols, eps);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

size_t scale_norm_backward_workspace_bytes(int64_t rows) {
  return static_cast<size_t>(std::max<int64_t>(rows, 0)) * sizeof(float);
}

void scale_norm_backward(float* dx, float* dg, const float* dy, const float* x, const float* rstd, const float* g,
                         int64_t rows, int64_t cols, void* workspace, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) {
    if (dg) MIXGRAD_CUDA_CHECK(cudaMemsetAsync(dg, 0, sizeof(float), stream));
    return;
  }
  if (dg && !workspace)
    throw std::invalid_argument(
        "scale_norm_backward: dg was requested but workspace is null (rows = " + std::to_string(rows) + ")");
  float* row_dg = dg ? static_cast<float*>(workspace) : nullptr;
  if (cols % 4 == 0 && aligned16(dx) && aligned16(dy) && aligned16(x))
    scale_norm_backward_kernel<4>
        <<<warp_rows_grid(rows), kWarpsPerBlock * 32, 0, stream>>>(dx, row_dg, dy, x, rstd, g, rows, cols);
  else
    scale_norm_backward_kernel<1>
        <<<warp_rows_grid(rows), kWarpsPerBlock * 32, 0, stream>>>(dx, row_dg, dy, x, rstd, g, rows, cols);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  if (!dg) return;
  sum_all_kernel<<<1, kThreads, 0, stream>>>(dg, row_dg, rows);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

size_t batch_norm_workspace_bytes(const BatchNormSizes& s) {
  return static_cast<size_t>(2 * bn_chunks(s) * s.channels + 2 * s.channels) * sizeof(float);
}

void batch_norm_forward(float* y, float* mean, float* rstd, float* running_mean, float* running_var, const float* x,
                        const int32_t* lengths, const float* weight, const float* bias, const BatchNormSizes& s,
                        bool training, float momentum, float eps, void* workspace, int32_t* too_few,
                        cudaStream_t stream) {
  const int64_t C = s.channels, rows = s.rows();
  if (C <= 0 || rows <= 0) return;
  if (training) {
    if (!workspace) throw std::invalid_argument("batch_norm_forward: training mode needs a workspace, got null");
    const int64_t chunk_rows = bn_chunk_rows(s), chunks = bn_chunks(s);
    float* part = static_cast<float*>(workspace);
    const BnCount count{lengths, s.batch, s.length};
    BnSumArgs a{x, nullptr, lengths, mean, rstd, rows, s.length, C, chunk_rows};
    launch_partial<BnSum::x>(part, nullptr, a, chunks, stream);
    bn_mean_kernel<<<per_channel_grid(C), kThreads, 0, stream>>>(mean, part, chunks, C, count);
    MIXGRAD_CUDA_LAUNCH_CHECK();
    launch_partial<BnSum::centred_square>(part, nullptr, a, chunks, stream);
    bn_var_kernel<<<per_channel_grid(C), kThreads, 0, stream>>>(rstd, running_mean, running_var, too_few, mean, part,
                                                                chunks, C, count, momentum, eps);
  } else {
    bn_eval_stats_kernel<<<per_channel_grid(C), kThreads, 0, stream>>>(mean, rstd, running_mean, running_var, C, eps);
  }
  MIXGRAD_CUDA_LAUNCH_CHECK();
  bn_apply_kernel<<<elementwise_grid(rows * C), kThreads, 0, stream>>>(y, x, lengths, mean, rstd, weight, bias, rows,
                                                                       s.length, C);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void batch_norm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                         const int32_t* lengths, const float* mean, const float* rstd, const float* weight,
                         const BatchNormSizes& s, bool training, void* workspace, cudaStream_t stream) {
  const int64_t C = s.channels, rows = s.rows();
  if (C <= 0) return;
  if (rows <= 0) {
    MIXGRAD_CUDA_CHECK(cudaMemsetAsync(dweight, 0, static_cast<size_t>(C) * sizeof(float), stream));
    MIXGRAD_CUDA_CHECK(cudaMemsetAsync(dbias, 0, static_cast<size_t>(C) * sizeof(float), stream));
    return;
  }
  if (!workspace) throw std::invalid_argument("batch_norm_backward: workspace is null");
  const int64_t chunk_rows = bn_chunk_rows(s), chunks = bn_chunks(s);
  float* part_a = static_cast<float*>(workspace);
  float* part_b = part_a + chunks * C;
  float* coef = part_b + chunks * C;
  launch_partial<BnSum::grad>(part_a, part_b, BnSumArgs{x, dy, lengths, mean, rstd, rows, s.length, C, chunk_rows},
                              chunks, stream);
  bn_grad_finalize_kernel<<<per_channel_grid(C), kThreads, 0, stream>>>(dweight, dbias, coef, part_a, part_b, chunks, C,
                                                                        BnCount{lengths, s.batch, s.length}, training);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  if (!dx) return;
  bn_dx_kernel<<<elementwise_grid(rows * C), kThreads, 0, stream>>>(dx, dy, x, lengths, mean, rstd, weight, coef, rows,
                                                                    s.length, C);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace mixgrad::kernels::cuda
