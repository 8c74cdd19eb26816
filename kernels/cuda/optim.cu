// Optimizer kernels on CUDA: fused multi-tensor AdamW, per-tensor SGD, and the three steps of global-norm
// clipping (sum of squares, clip coefficient, scale) kept on the device.
#include "kernels/cuda/optim.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/check.h"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 4096;                  // elements per block-iteration of the multi-tensor kernels
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride beyond this
constexpr int64_t kMaxPartials = 1024;            // stage-1 blocks of sum_squares_multi (fills an H100 at 8 blocks/SM)
constexpr int kWarps = kThreads / 32;

struct AdamWScalars {
  float decay;  // 1 - lr * weight_decay
  bool apply_decay;
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;  // lr / bias_correction1
  float bc2_sqrt;   // sqrt(bias_correction2)
  float eps;
};

struct SgdScalars {
  float lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, first_step;
};

// ---------------------------------------------------------------------------------------------- device helpers

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Last t with starts[t] <= g: the tensor holding global element g (empty tensors share their start with the next
// tensor and are skipped this way).
__device__ __forceinline__ int find_tensor(const int64_t* starts, int num_tensors, int64_t g) {
  int lo = 0, hi = num_tensors - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (starts[mid] <= g)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Calls f(t, begin, end) for each tensor t overlapping the global range [g0, g1) ([begin, end) local to t).
// Block-uniform: every thread of the block makes the same calls.
template <class F>
__device__ __forceinline__ void for_each_segment(const int64_t* sizes, const int64_t* starts, int num_tensors,
                                                 int64_t g0, int64_t g1, F&& f) {
  for (int t = find_tensor(starts, num_tensors, g0); t < num_tensors; ++t) {
    const int64_t start = starts[t];
    if (start >= g1) break;
    const int64_t begin = max(g0, start) - start, end = min(g1, start + sizes[t]) - start;
    if (begin < end) f(t, begin, end);
  }
}

// Block-stride loop over the local range [begin, end): scalar(i) per element, or, when `vec`, scalar for the
// unaligned head and tail and vector(j) for the float4 j (elements 4j .. 4j+3) in between.
template <class S, class V>
__device__ __forceinline__ void block_apply(int64_t begin, int64_t end, bool vec, S&& scalar, V&& vector) {
  if (!vec) {
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) scalar(i);
    return;
  }
  const int64_t vb = min(end, (begin + 3) & ~int64_t{3});
  const int64_t ve = max(vb, end & ~int64_t{3});
  for (int64_t i = begin + threadIdx.x; i < vb; i += blockDim.x) scalar(i);
  for (int64_t j = vb / 4 + threadIdx.x; j < ve / 4; j += blockDim.x) vector(j);
  for (int64_t i = ve + threadIdx.x; i < end; i += blockDim.x) scalar(i);
}

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Deterministic block sum (fixed shuffle tree, then warp 0 over the warp sums); valid in thread 0.
template <class T>
__device__ __forceinline__ T block_sum(T v) {
  __shared__ T warp_sums[kWarps];
  v = warp_sum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kWarps ? warp_sums[threadIdx.x] : T(0);
  if (warp == 0) v = warp_sum(v);
  return v;
}

__device__ __forceinline__ void adamw_update(float& p, float g, float& m, float& v, const AdamWScalars& s) {
  if (s.apply_decay) p *= s.decay;
  m = s.beta1 * m + s.one_minus_beta1 * g;
  v = s.beta2 * v + s.one_minus_beta2 * g * g;
  p = p - s.step_size * (m / (sqrtf(v) / s.bc2_sqrt + s.eps));
}

__device__ __forceinline__ void sgd_update(float& p, float g, float* buf, const SgdScalars& s) {
  float d = g;
  if (s.weight_decay != 0.f) d += s.weight_decay * p;
  if (s.momentum != 0.f) {
    const float b = s.first_step ? d : s.momentum * *buf + s.one_minus_dampening * d;
    *buf = b;
    d = s.nesterov ? d + s.momentum * b : b;
  }
  p -= s.lr * d;
}

// ---------------------------------------------------------------------------------------------- kernels

__global__ void __launch_bounds__(kThreads)
    adamw_kernel(float* const* __restrict__ params, const float* const* __restrict__ grads,
                 float* const* __restrict__ exp_avg, float* const* __restrict__ exp_avg_sq,
                 const int64_t* __restrict__ sizes, const int64_t* __restrict__ starts, int num_tensors,
                 int64_t total, const AdamWScalars s) {
  for (int64_t chunk = blockIdx.x; chunk * kChunk < total; chunk += gridDim.x) {
    const int64_t g0 = chunk * kChunk;
    for_each_segment(sizes, starts, num_tensors, g0, min(total, g0 + kChunk), [&](int t, int64_t begin, int64_t end) {
      const float* g = grads[t];
      if (g == nullptr) return;
      float* p = params[t];
      float* m = exp_avg[t];
      float* v = exp_avg_sq[t];
      const bool vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v);
      block_apply(
          begin, end, vec,
          [&](int64_t i) {
            float pi = p[i], mi = m[i], vi = v[i];
            adamw_update(pi, g[i], mi, vi, s);
            p[i] = pi;
            m[i] = mi;
            v[i] = vi;
          },
          [&](int64_t j) {
            float4 pj = reinterpret_cast<float4*>(p)[j];
            const float4 gj = reinterpret_cast<const float4*>(g)[j];
            float4 mj = reinterpret_cast<float4*>(m)[j];
            float4 vj = reinterpret_cast<float4*>(v)[j];
            adamw_update(pj.x, gj.x, mj.x, vj.x, s);
            adamw_update(pj.y, gj.y, mj.y, vj.y, s);
            adamw_update(pj.z, gj.z, mj.z, vj.z, s);
            adamw_update(pj.w, gj.w, mj.w, vj.w, s);
            reinterpret_cast<float4*>(p)[j] = pj;
            reinterpret_cast<float4*>(m)[j] = mj;
            reinterpret_cast<float4*>(v)[j] = vj;
          });
    });
  }
}

// Grid-stride over float4 groups when `vec` (then the n % 4 tail goes to the first threads), else over elements.
__global__ void __launch_bounds__(kThreads)
    sgd_kernel(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ buf, int64_t n,
               const SgdScalars s, bool vec) {
  const int64_t tid = blockIdx.x * int64_t{blockDim.x} + threadIdx.x, nthreads = int64_t{gridDim.x} * blockDim.x;
  int64_t scalar_from = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    for (int64_t j = tid; j < n4; j += nthreads) {
      float4 p = reinterpret_cast<float4*>(param)[j];
      const float4 g = reinterpret_cast<const float4*>(grad)[j];
      if (s.momentum != 0.f) {
        float4 b = reinterpret_cast<float4*>(buf)[j];
        sgd_update(p.x, g.x, &b.x, s);
        sgd_update(p.y, g.y, &b.y, s);
        sgd_update(p.z, g.z, &b.z, s);
        sgd_update(p.w, g.w, &b.w, s);
        reinterpret_cast<float4*>(buf)[j] = b;
      } else {
        sgd_update(p.x, g.x, nullptr, s);
        sgd_update(p.y, g.y, nullptr, s);
        sgd_update(p.z, g.z, nullptr, s);
        sgd_update(p.w, g.w, nullptr, s);
      }
      reinterpret_cast<float4*>(param)[j] = p;
    }
    scalar_from = n4 * 4;
  }
  for (int64_t i = scalar_from + tid; i < n; i += nthreads) {
    float p = param[i];
    sgd_update(p, grad[i], buf == nullptr ? nullptr : buf + i, s);
    param[i] = p;
  }
}

__global__ void __launch_bounds__(kThreads)
    sum_squares_partial_kernel(float* __restrict__ partial, const float* const* __restrict__ tensors,
                               const int64_t* __restrict__ sizes, const int64_t* __restrict__ starts,
                               int num_tensors, int64_t total) {
  float acc = 0.f;
  for (int64_t chunk = blockIdx.x; chunk * kChunk < total; chunk += gridDim.x) {
    const int64_t g0 = chunk * kChunk;
    for_each_segment(sizes, starts, num_tensors, g0, min(total, g0 + kChunk), [&](int t, int64_t begin, int64_t end) {
      const float* x = tensors[t];
      if (x == nullptr) return;
      block_apply(
          begin, end, aligned16(x), [&](int64_t i) { acc += x[i] * x[i]; },
          [&](int64_t j) {
            const float4 v = reinterpret_cast<const float4*>(x)[j];
            acc += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
          });
    });
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void __launch_bounds__(kThreads)
    sum_partials_kernel(float* __restrict__ result, const float* __restrict__ partial, int num_partials) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < num_partials; i += blockDim.x) acc += static_cast<double>(partial[i]);
  acc = block_sum(acc);
  if (threadIdx.x == 0) *result = static_cast<float>(acc);
}

__global__ void __launch_bounds__(kThreads)
    scale_multi_kernel(float* const* __restrict__ tensors, const int64_t* __restrict__ sizes,
                       const int64_t* __restrict__ starts, int num_tensors, int64_t total,
                       const float* __restrict__ scale) {
  const float c = *scale;
  if (c == 1.f) return;  // the common no-clip case costs one load per block
  for (int64_t chunk = blockIdx.x; chunk * kChunk < total; chunk += gridDim.x) {
    const int64_t g0 = chunk * kChunk;
    for_each_segment(sizes, starts, num_tensors, g0, min(total, g0 + kChunk), [&](int t, int64_t begin, int64_t end) {
      float* x = tensors[t];
      if (x == nullptr) return;
      block_apply(
          begin, end, aligned16(x), [&](int64_t i) { x[i] *= c; },
          [&](int64_t j) {
            float4 v = reinterpret_cast<float4*>(x)[j];
            v.x *= c;
            v.y *= c;
            v.z *= c;
            v.w *= c;
            reinterpret_cast<float4*>(x)[j] = v;
          });
    });
  }
}

__global__ void clip_coef_kernel(float* coef, const float* total_sq, float max_norm) {
  const float c = max_norm / (sqrtf(*total_sq) + 1e-6f);
  *coef = c > 1.f ? 1.f : c;  // NaN propagates, like torch.clamp
}

// ---------------------------------------------------------------------------------------------- host helpers

unsigned multi_tensor_blocks(int64_t total) {
  return static_cast<unsigned>(std::min((total + kChunk - 1) / kChunk, kMaxBlocks));
}

int64_t sum_squares_blocks(int64_t total) { return std::min((total + kChunk - 1) / kChunk, kMaxPartials); }

}  // namespace

// ---------------------------------------------------------------------------------------------- launchers

void adamw_step(float* const* params, const float* const* grads, float* const* exp_avg, float* const* exp_avg_sq,
                const int64_t* sizes, const int64_t* starts, int num_tensors, int64_t total, float lr, float beta1,
                float beta2, float eps, float weight_decay, float bias_correction1, float bias_correction2,
                cudaStream_t stream) {
  if (total <= 0 || num_tensors <= 0) return;
  AdamWScalars s;
  s.decay = 1.f - lr * weight_decay;
  s.apply_decay = weight_decay != 0.f;
  s.beta1 = beta1;
  s.one_minus_beta1 = 1.f - beta1;
  s.beta2 = beta2;
  s.one_minus_beta2 = 1.f - beta2;
  s.step_size = lr / bias_correction1;
  s.bc2_sqrt = std::sqrt(bias_correction2);
  s.eps = eps;
  adamw_kernel<<<multi_tensor_blocks(total), kThreads, 0, stream>>>(params, grads, exp_avg, exp_avg_sq, sizes, starts,
                                                                     num_tensors, total, s);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n, float lr, float momentum,
              float dampening, float weight_decay, bool nesterov, bool first_step, cudaStream_t stream) {
  if (n <= 0) return;
  SgdScalars s;
  s.lr = lr;
  s.momentum = momentum;
  s.one_minus_dampening = 1.f - dampening;
  s.weight_decay = weight_decay;
  s.nesterov = nesterov;
  s.first_step = first_step;
  const auto is_aligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; };
  const bool vec = is_aligned(param) && is_aligned(grad) && (momentum == 0.f || is_aligned(momentum_buf));
  const int64_t work = vec ? (n + 3) / 4 : n;
  const auto blocks = static_cast<unsigned>(std::min((work + kThreads - 1) / kThreads, kMaxBlocks));
  sgd_kernel<<<blocks, kThreads, 0, stream>>>(param, grad, momentum == 0.f ? nullptr : momentum_buf, n, s, vec);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

int64_t sum_squares_multi_workspace_bytes(int64_t total) {
  return total <= 0 ? 0 : sum_squares_blocks(total) * static_cast<int64_t>(sizeof(float));
}

void sum_squares_multi(float* partial, float* result, const float* const* tensors, const int64_t* sizes,
                       const int64_t* starts, int num_tensors, int64_t total, cudaStream_t stream) {
  if (total <= 0 || num_tensors <= 0) {  // the sum of nothing is 0, still written on the stream
    MIXGRAD_CUDA_CHECK(cudaMemsetAsync(result, 0, sizeof(float), stream));
    return;
  }
  const int64_t blocks = sum_squares_blocks(total);
  sum_squares_partial_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(partial, tensors, sizes, starts,
                                                                                      num_tensors, total);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  sum_partials_kernel<<<1, kThreads, 0, stream>>>(result, partial, static_cast<int>(blocks));
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void scale_multi(float* const* tensors, const int64_t* sizes, const int64_t* starts, int num_tensors, int64_t total,
                 const float* scale, cudaStream_t stream) {
  if (total <= 0 || num_tensors <= 0) return;
  scale_multi_kernel<<<multi_tensor_blocks(total), kThreads, 0, stream>>>(tensors, sizes, starts, num_tensors, total,
                                                                           scale);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void clip_coef(float* coef, const float* total_sq, float max_norm, cudaStream_t stream) {
  clip_coef_kernel<<<1, 1, 0, stream>>>(coef, total_sq, max_norm);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace mixgrad::kernels::cuda
