// CUDA softmax / log-softmax rows. Kernels first (warp-per-row register kernels, block-per-row kernels), then
// the launchers. Lanes read 16-byte vectors when cols % 4 == 0 and every pointer is 16-byte aligned.
#include "kernels/cuda/softmax.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/check.h"
#include "kernels/cuda/reduce_utils.cuh"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int64_t kWarpRowMax = 1024;  // longest row a warp keeps in registers (32 values per lane)
constexpr int kWarpsPerBlock = 4;

// Warp per row: lane holds N values, the k-th vector of W starting at column (k * 32 + lane) * W.
template <int N, int W, bool kLog>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    softmax_forward_warp_kernel(float* y, const float* x, int64_t rows, int64_t cols) {
  static_assert(N % W == 0, "a lane holds whole vectors");
  const int lane = threadIdx.x & 31;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const float* xr = x + row * cols;
    float* yr = y + row * cols;
    float v[N];
#pragma unroll
    for (int k = 0; k < N / W; ++k) {
      const int64_t j = static_cast<int64_t>(k * 32 + lane) * W;
      if (j < cols) {
        load_vec<W>(xr + j, v + k * W);
      } else {
#pragma unroll
        for (int t = 0; t < W; ++t) v[k * W + t] = -INFINITY;
      }
    }
    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < N; ++k) m = fmaxf(m, v[k]);
    m = warp_max(m);
    if (m == -INFINITY) {  // fully masked row
#pragma unroll
      for (int k = 0; k < N; ++k) v[k] = kLog ? -INFINITY : 0.f;
    } else {
      float s = 0.f;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float e = expf(v[k] - m);
        s += e;
        if constexpr (!kLog) v[k] = e;
      }
      s = warp_sum(s);
      if constexpr (kLog) {
        const float shift = m + logf(s);
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] -= shift;
      } else {
        const float inv = 1.f / s;
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] *= inv;
      }
    }
#pragma unroll
    for (int k = 0; k < N / W; ++k) {
      const int64_t j = static_cast<int64_t>(k * 32 + lane) * W;
      if (j < cols) store_vec<W>(yr + j, v + k * W);
    }
  }
}

// Block per row: online max/sum over the row, one block-wide combine, then a second pass writing y.
template <int W, bool kLog>
__global__ void softmax_forward_block_kernel(float* y, const float* x, int64_t rows, int64_t cols) {
  __shared__ float smem_m[32], smem_s[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * W;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* xr = x + row * cols;
    float* yr = y + row * cols;
    MaxSum acc{-INFINITY, 0.f};
    for (int64_t j = static_cast<int64_t>(threadIdx.x) * W; j < cols; j += stride) {
      float v[W];
      load_vec<W>(xr + j, v);
#pragma unroll
      for (int t = 0; t < W; ++t) online_add(acc, v[t]);
    }
    acc = warp_combine(acc);
    __syncthreads();
    if (lane == 0) smem_m[warp] = acc.m, smem_s[warp] = acc.s;
    __syncthreads();
    acc = warp_combine(lane < nwarps ? MaxSum{smem_m[lane], smem_s[lane]} : MaxSum{-INFINITY, 0.f});
    if (acc.m == INFINITY) acc.s = NAN;  // like the two-pass formula (inf - inf): a +inf entry makes the row NaN
    const bool masked = acc.m == -INFINITY;
    const float inv = 1.f / acc.s, shift = acc.m + logf(acc.s);
    for (int64_t j = static_cast<int64_t>(threadIdx.x) * W; j < cols; j += stride) {
      float v[W];
      load_vec<W>(xr + j, v);
#pragma unroll
      for (int t = 0; t < W; ++t) {
        if constexpr (kLog)
          v[t] = masked ? -INFINITY : v[t] - shift;
        else
          v[t] = masked ? 0.f : expf(v[t] - acc.m) * inv;
      }
      store_vec<W>(yr + j, v);
    }
  }
}

// Warp per row backward with dy and y in registers. softmax: dx = y * (dy - sum(dy * y));
// log-softmax: dx = dy - exp(y) * sum(dy), 0 for a row of y that is all -inf.
template <int N, int W, bool kLog>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    softmax_backward_warp_kernel(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x & 31;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t base = row * cols;
    float g[N], v[N];
    bool live = false;  // log-softmax: some y > -inf
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < N / W; ++k) {
      const int64_t j = static_cast<int64_t>(k * 32 + lane) * W;
      if (j < cols) {
        load_vec<W>(dy + base + j, g + k * W);
        load_vec<W>(y + base + j, v + k * W);
      } else {
#pragma unroll
        for (int t = 0; t < W; ++t) g[k * W + t] = 0.f, v[k * W + t] = kLog ? -INFINITY : 0.f;
      }
    }
#pragma unroll
    for (int k = 0; k < N; ++k) {
      if constexpr (kLog) {
        s += g[k];
        live = live || v[k] > -INFINITY;
      } else {
        s += g[k] * v[k];
      }
    }
    s = warp_sum(s);
    if constexpr (kLog) live = __any_sync(kFullMask, live);
#pragma unroll
    for (int k = 0; k < N; ++k) {
      if constexpr (kLog)
        g[k] = live ? g[k] - expf(v[k]) * s : 0.f;
      else
        g[k] = v[k] * (g[k] - s);
    }
#pragma unroll
    for (int k = 0; k < N / W; ++k) {
      const int64_t j = static_cast<int64_t>(k * 32 + lane) * W;
      if (j < cols) store_vec<W>(dx + base + j, g + k * W);
    }
  }
}

template <int W, bool kLog>
__global__ void softmax_backward_block_kernel(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols) {
  __shared__ float smem[32];
  const int64_t stride = static_cast<int64_t>(blockDim.x) * W;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * cols;
    float s = 0.f;
    int live = 0;
    for (int64_t j = static_cast<int64_t>(threadIdx.x) * W; j < cols; j += stride) {
      float g[W], v[W];
      load_vec<W>(dy + base + j, g);
      load_vec<W>(y + base + j, v);
#pragma unroll
      for (int t = 0; t < W; ++t) {
        if constexpr (kLog) {
          s += g[t];
          live |= v[t] > -INFINITY;
        } else {
          s += g[t] * v[t];
        }
      }
    }
    s = block_sum(s, smem);
    if constexpr (kLog) live = __syncthreads_or(live);
    for (int64_t j = static_cast<int64_t>(threadIdx.x) * W; j < cols; j += stride) {
      float g[W], v[W];
      load_vec<W>(dy + base + j, g);
      load_vec<W>(y + base + j, v);
#pragma unroll
      for (int t = 0; t < W; ++t) {
        if constexpr (kLog)
          g[t] = live ? g[t] - expf(v[t]) * s : 0.f;
        else
          g[t] = v[t] * (g[t] - s);
      }
      store_vec<W>(dx + base + j, g);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------

unsigned warp_grid(int64_t rows) { return grid_for(rows, kWarpsPerBlock); }
unsigned block_grid(int64_t rows) { return grid_for(rows, 1); }

template <bool kLog>
void launch_forward(float* y, const float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const bool vec = cols % 4 == 0 && aligned16(x) && aligned16(y);
  if (cols <= kWarpRowMax) {
    dispatch_warp(cols, vec, [&]<int N, int W>() {
      softmax_forward_warp_kernel<N, W, kLog><<<warp_grid(rows), kWarpsPerBlock * 32, 0, stream>>>(y, x, rows, cols);
    });
  } else if (vec) {
    softmax_forward_block_kernel<4, kLog><<<block_grid(rows), row_block_threads(cols), 0, stream>>>(y, x, rows, cols);
  } else {
    softmax_forward_block_kernel<1, kLog><<<block_grid(rows), row_block_threads(cols), 0, stream>>>(y, x, rows, cols);
  }
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

template <bool kLog>
void launch_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const bool vec = cols % 4 == 0 && aligned16(dx) && aligned16(dy) && aligned16(y);
  if (cols <= kWarpRowMax) {
    dispatch_warp(cols, vec, [&]<int N, int W>() {
      softmax_backward_warp_kernel<N, W, kLog>
          <<<warp_grid(rows), kWarpsPerBlock * 32, 0, stream>>>(dx, dy, y, rows, cols);
    });
  } else if (vec) {
    softmax_backward_block_kernel<4, kLog>
        <<<block_grid(rows), row_block_threads(cols), 0, stream>>>(dx, dy, y, rows, cols);
  } else {
    softmax_backward_block_kernel<1, kLog>
        <<<block_grid(rows), row_block_threads(cols), 0, stream>>>(dx, dy, y, rows, cols);
  }
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace

void softmax_forward(float* y, const float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  launch_forward<false>(y, x, rows, cols, stream);
}

void softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols, cudaStream_t stream) {
  launch_backward<false>(dx, dy, y, rows, cols, stream);
}

void log_softmax_forward(float* y, const float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  launch_forward<true>(y, x, rows, cols, stream);
}

void log_softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols, cudaStream_t stream) {
  launch_backward<true>(dx, dy, y, rows, cols, stream);
}

}  // namespace mixgrad::kernels::cuda
