// CUDA softmax / log-softmax rows. Kernels first (warp-per-row register kernels, block-per-row kernels), then
// the launchers. Lanes read 16-byte vectors when cols % 4 == 0 and every pointer is 16-byte aligned.
#include "kernels/cuda/softmax.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/check.h"

namespace mixgrad::kernels::cuda {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int64_t kWarpRowMax = 1024;  // longest row a warp keeps in registers (32 values per lane)
constexpr int kWarpsPerBlock = 4;
constexpr int64_t kMaxGrid = int64_t{1} << 20;

template <int W>
__device__ __forceinline__ void load_vec(const float* p, float* v) {
  if constexpr (W == 4) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
    v[0] = *p;
  }
}

template <int W>
__device__ __forceinline__ void store_vec(float* p, const float* v) {
  if constexpr (W == 4)
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  else
    *p = v[0];
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32), returned to every thread; smem holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  return warp_sum(lane < nwarps ? smem[lane] : 0.f);
}

// Running maximum m and sum of exp(x - m) (online softmax).
struct MaxSum {
  float m, s;
};

__device__ __forceinline__ void online_add(MaxSum& a, float v) {
  if (v > a.m) {
    a.s = a.s * expf(a.m - v) + 1.f;
    a.m = v;
  } else if (v != -INFINITY) {  // also lets a NaN poison the sum
    a.s += expf(v - a.m);
  }
}

// Symmetric in its arguments (no fused multiply-add), so both lanes of a butterfly step agree bit for bit.
__device__ __forceinline__ MaxSum combine(const MaxSum& a, const MaxSum& b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.f};
  return {m, __fadd_rn(__fmul_rn(a.s, expf(a.m - m)), __fmul_rn(b.s, expf(b.m - m)))};
}

__device__ __forceinline__ MaxSum warp_combine(MaxSum a) {
  for (int o = 16; o > 0; o >>= 1)
    a = combine(a, MaxSum{__shfl_xor_sync(kFullMask, a.m, o), __shfl_xor_sync(kFullMask, a.s, o)});
  return a;
}

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

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

unsigned warp_grid(int64_t rows) { return static_cast<unsigned>(std::min(ceil_div(rows, kWarpsPerBlock), kMaxGrid)); }
unsigned block_grid(int64_t rows) { return static_cast<unsigned>(std::min(rows, kMaxGrid)); }

// Threads per block for the block-per-row kernels: more for longer rows.
int block_threads(int64_t cols) { return cols <= 8192 ? 256 : cols <= 32768 ? 512 : 1024; }

// Calls f.template operator()<N, W>() with N = values per lane (a power of two, >= W) for cols <= 1024.
template <class F>
void dispatch_warp(int64_t cols, bool vec, F&& f) {
  int64_t n = 1;
  while (n * 32 < cols) n *= 2;
  if (vec) {
    switch (std::max<int64_t>(n, 4)) {
      case 4: f.template operator()<4, 4>(); return;
      case 8: f.template operator()<8, 4>(); return;
      case 16: f.template operator()<16, 4>(); return;
      default: f.template operator()<32, 4>(); return;
    }
  }
  switch (n) {
    case 1: f.template operator()<1, 1>(); return;
    case 2: f.template operator()<2, 1>(); return;
    case 4: f.template operator()<4, 1>(); return;
    case 8: f.template operator()<8, 1>(); return;
    case 16: f.template operator()<16, 1>(); return;
    default: f.template operator()<32, 1>(); return;
  }
}

template <bool kLog>
void launch_forward(float* y, const float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const bool vec = cols % 4 == 0 && aligned16(x) && aligned16(y);
  if (cols <= kWarpRowMax) {
    dispatch_warp(cols, vec, [&]<int N, int W>() {
      softmax_forward_warp_kernel<N, W, kLog><<<warp_grid(rows), kWarpsPerBlock * 32, 0, stream>>>(y, x, rows, cols);
    });
  } else if (vec) {
    softmax_forward_block_kernel<4, kLog><<<block_grid(rows), block_threads(cols), 0, stream>>>(y, x, rows, cols);
  } else {
    softmax_forward_block_kernel<1, kLog><<<block_grid(rows), block_threads(cols), 0, stream>>>(y, x, rows, cols);
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
    softmax_backward_block_kernel<4, kLog><<<block_grid(rows), block_threads(cols), 0, stream>>>(dx, dy, y, rows, cols);
  } else {
    softmax_backward_block_kernel<1, kLog><<<block_grid(rows), block_threads(cols), 0, stream>>>(dx, dy, y, rows, cols);
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
