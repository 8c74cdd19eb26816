// CUDA fused cross-entropy. Kernels first (one template serves warp-per-row and block-per-row), then launchers.
#include "kernels/cuda/loss.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/check.h"
#include "kernels/cuda/reduce_utils.cuh"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int64_t kWarpRowMax = 1024;
constexpr int kWarpsPerBlock = 4;

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

__global__ void inverse_count_kernel(float* inv_count, const int64_t* target, int64_t rows, int64_t ignore_index) {
  __shared__ unsigned long long partial[32];
  unsigned long long n = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) n += target[r] != ignore_index;
  for (int o = 16; o > 0; o >>= 1) n += __shfl_down_sync(0xffffffffu, n, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = n;
  __syncthreads();
  if (warp == 0) {
    n = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : 0ull;
    for (int o = 16; o > 0; o >>= 1) n += __shfl_down_sync(0xffffffffu, n, o);
    if (lane == 0) *inv_count = n > 0 ? static_cast<float>(1.0 / static_cast<double>(n)) : __int_as_float(0x7fc00000);
  }
}

// ---------------------------------------------------------------------------------------------------------------

// Calls f.template operator()<W, kBlockPerRow>(grid, threads): a warp per row up to 1024 classes, else a block.
template <class F>
void dispatch(int64_t rows, int64_t classes, bool vec, F&& f) {
  if (classes <= kWarpRowMax) {
    const unsigned grid = grid_for(rows, kWarpsPerBlock);
    if (vec)
      f.template operator()<4, false>(grid, kWarpsPerBlock * 32);
    else
      f.template operator()<1, false>(grid, kWarpsPerBlock * 32);
  } else {
    const unsigned grid = grid_for(rows, 1);
    const int threads = row_block_threads(classes);
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

void cross_entropy_inverse_count(float* inv_count, const int64_t* target, int64_t rows, int64_t ignore_index,
                                 cudaStream_t stream) {
  inverse_count_kernel<<<1, 256, 0, stream>>>(inv_count, target, rows, ignore_index);
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
