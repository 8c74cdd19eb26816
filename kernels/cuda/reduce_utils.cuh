// Device helpers shared by the row-wise CUDA kernels (softmax, norm, loss, embedding, reduce): 16-byte vector
// loads/stores, warp-shuffle and block reductions, the online max/sum of softmax, and launch-size helpers.
// Kernels only: included by the .cu files, never by a plain C++ header.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace mixgrad::kernels::cuda {

inline constexpr unsigned kFullMask = 0xffffffffu;
inline constexpr int64_t kMaxGrid = int64_t{1} << 20;  // grid-stride loops never launch more blocks than this

// ---- Vector access ---------------------------------------------------------------------------------------------
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

// ---- Reductions --------------------------------------------------------------------------------------------------
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
  __syncthreads();  // a previous call may still be reading smem
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

// ---- Launch sizes (host) -------------------------------------------------------------------------------------------
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }  // null counts as aligned

// Blocks for a grid-stride loop over n items of `per_block` each.
inline unsigned grid_for(int64_t n, int64_t per_block) {
  return static_cast<unsigned>(std::min(ceil_div(n, per_block), kMaxGrid));
}

// Threads per block for the block-per-row kernels: more for longer rows.
inline int row_block_threads(int64_t cols) { return cols <= 8192 ? 256 : cols <= 32768 ? 512 : 1024; }

// Calls f.template operator()<N, W>() with N = values per lane (a power of two, >= W) for cols <= 1024
// (warp-per-row register kernels: 32 lanes x at most 32 values).
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

}  // namespace mixgrad::kernels::cuda
