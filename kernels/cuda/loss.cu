// CUDA fused cross-entropy. Kernels first (one template serves warp-per-row and block-per-row), then launchers.
#include "kernels/cuda/loss.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/check.h"

namespace mixgrad::kernels::cuda {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int64_t kWarpRowMax = 1024;
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

// Rows are handled by a warp (kBlockPerRow false: kWarpsPerBlock rows per block) or by the whole block.
template <bool kBlockPerRow>
struct RowGroup {
  __device__ static int rank() { return kBlockPerRow ? threadIdx.x : threadIdx.x & 31; }
  __device__ static int size() { return kBlockPerRow ? blockDim.x : 32; }
  __device__ static int64_t first_row() {
    return kBlockPerRow ? blockIdx.x : static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  }
  __device__ static int64_t row_step() {
    return kBlockPerRow ? gridDim.x : static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  }
};

// Target of a row if it is a class, -1 if the row is ignored (or its target is bad, which is flagged).
__device__ __forceinline__ int64_t checked_target(int64_t t, int64_t classes, int64_t ignore_index, int* bad_target) {
  if (t == ignore_index) return -1;
  if (t < 0 || t >= classes) {
    if (bad_target) *bad_target = 1;
    return -1;
  }
  return t;
}

template <int W, bool kBlockPerRow>
__global__ void cross_entropy_forward_kernel(float* loss, float* lse, const float* logits, const int64_t* target,
                                             int64_t rows, int64_t classes, int64_t ignore_index, float eps,
                                             int* bad_target) {
  using G = RowGroup<kBlockPerRow>;
  __shared__ float smem_m[32], smem_s[32], smem_z[32];
  const int lane = threadIdx.x & 31;
  const int64_t stride = static_cast<int64_t>(G::size()) * W;
  for (int64_t row = G::first_row(); row < rows; row += G::row_step()) {
    const float* z = logits + row * classes;
    MaxSum acc{-INFINITY, 0.f};
    float sum_z = 0.f;
    for (int64_t j = static_cast<int64_t>(G::rank()) * W; j < classes; j += stride) {
      float v[W];
      load_vec<W>(z + j, v);
#pragma unroll
      for (int t = 0; t < W; ++t) {
        online_add(acc, v[t]);
        sum_z += v[t];
      }
    }
    acc = warp_combine(acc);
    sum_z = warp_sum(sum_z);
    if constexpr (kBlockPerRow) {
      const int warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
      __syncthreads();
      if (lane == 0) smem_m[warp] = acc.m, smem_s[warp] = acc.s, smem_z[warp] = sum_z;
      __syncthreads();
      const bool have = lane < nwarps;
      acc = warp_combine(have ? MaxSum{smem_m[lane], smem_s[lane]} : MaxSum{-INFINITY, 0.f});
      sum_z = warp_sum(have ? smem_z[lane] : 0.f);
    }
    if (G::rank() == 0) {
      if (acc.m == INFINITY) acc.s = NAN;  // like the two-pass formula (inf - inf): a +inf logit gives lse NaN
      const float l = acc.m == -INFINITY ? -INFINITY : acc.m + logf(acc.s);
      lse[row] = l;
      const int64_t t = checked_target(target[row], classes, ignore_index, bad_target);
      float v = 0.f;
      if (t >= 0) {
        v = (1.f - eps) * (l - z[t]);
        if (eps != 0.f) v += eps * (l - sum_z / static_cast<float>(classes));
      }
      loss[row] = v;
    }
  }
}

template <int W, bool kBlockPerRow>
__global__ void cross_entropy_backward_kernel(float* dlogits, const float* dloss, const float* logits, const float* lse,
                                              const int64_t* target, int64_t rows, int64_t classes,
                                              int64_t ignore_index, float eps, int* bad_target) {
  using G = RowGroup<kBlockPerRow>;
  const int64_t stride = static_cast<int64_t>(G::size()) * W;
  const float off = eps / static_cast<float>(classes);
  for (int64_t row = G::first_row(); row < rows; row += G::row_step()) {
    const int64_t t = checked_target(target[row], classes, ignore_index, G::rank() == 0 ? bad_target : nullptr);
    const float g = t >= 0 ? dloss[row] : 0.f, l = lse[row], hit = 1.f - eps;
    const float* z = logits + row * classes;
    float* dz = dlogits + row * classes;
    for (int64_t j = static_cast<int64_t>(G::rank()) * W; j < classes; j += stride) {
      float v[W];
      if (t >= 0) {
        load_vec<W>(z + j, v);
#pragma unroll
        for (int k = 0; k < W; ++k) v[k] = g * (expf(v[k] - l) - off - (j + k == t ? hit : 0.f));
      } else {
#pragma unroll
        for (int k = 0; k < W; ++k) v[k] = 0.f;
      }
      store_vec<W>(dz + j, v);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Calls f.template operator()<W, kBlockPerRow>(grid, threads): a warp per row up to 1024 classes, else a block.
template <class F>
void dispatch(int64_t rows, int64_t classes, bool vec, F&& f) {
  if (classes <= kWarpRowMax) {
    const unsigned grid = static_cast<unsigned>(std::min(ceil_div(rows, kWarpsPerBlock), kMaxGrid));
    if (vec)
      f.template operator()<4, false>(grid, kWarpsPerBlock * 32);
    else
      f.template operator()<1, false>(grid, kWarpsPerBlock * 32);
  } else {
    const unsigned grid = static_cast<unsigned>(std::min(rows, kMaxGrid));
    const int threads = classes <= 8192 ? 256 : classes <= 32768 ? 512 : 1024;
    if (vec)
      f.template operator()<4, true>(grid, threads);
    else
      f.template operator()<1, true>(grid, threads);
  }
}

}  // namespace

void cross_entropy_forward(float* loss, float* lse, const float* logits, const int64_t* target, int64_t rows,
                           int64_t classes, int64_t ignore_index, float label_smoothing, int* bad_target,
                           cudaStream_t stream) {
  if (rows <= 0) return;
  const bool vec = classes % 4 == 0 && aligned16(logits);
  dispatch(rows, classes, vec, [&]<int W, bool kBlockPerRow>(unsigned grid, int threads) {
    cross_entropy_forward_kernel<W, kBlockPerRow><<<grid, threads, 0, stream>>>(
        loss, lse, logits, target, rows, classes, ignore_index, label_smoothing, bad_target);
  });
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void cross_entropy_backward(float* dlogits, const float* dloss, const float* logits, const float* lse,
                            const int64_t* target, int64_t rows, int64_t classes, int64_t ignore_index,
                            float label_smoothing, int* bad_target, cudaStream_t stream) {
  if (rows <= 0 || classes <= 0) return;
  const bool vec = classes % 4 == 0 && aligned16(logits) && aligned16(dlogits);
  dispatch(rows, classes, vec, [&]<int W, bool kBlockPerRow>(unsigned grid, int threads) {
    cross_entropy_backward_kernel<W, kBlockPerRow><<<grid, threads, 0, stream>>>(
        dlogits, dloss, logits, lse, target, rows, classes, ignore_index, label_smoothing, bad_target);
  });
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace mixgrad::kernels::cuda
