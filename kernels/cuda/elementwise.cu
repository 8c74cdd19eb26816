// CUDA elementwise kernel family (see kernels/cuda/elementwise.h): grid-stride loops over int64 indices,
// 128-bit loads/stores on contiguous, aligned data with a scalar tail. Kernels first, launchers after.
#include "kernels/cuda/elementwise.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/check.h"
#include "kernels/elementwise_math.h"
#include "kernels/philox.h"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kThreads = 256;
// Grid-stride loops: enough blocks to fill any current GPU several times over, without huge grids.
constexpr int64_t kMaxBlocks = 4096;

__device__ __forceinline__ int64_t first_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// Four consecutive elements moved as one access: 128 bits for float/int32, 32 bits for uint8, 2x128 for 64-bit.
template <class T>
struct alignas(4 * sizeof(T)) Vec4 {
  T v[4];
};

template <class T>
__device__ __forceinline__ Vec4<T> load4(const T* p) {
  return *reinterpret_cast<const Vec4<T>*>(p);
}
template <class T>
__device__ __forceinline__ void store4(T* p, const Vec4<T>& v) {
  *reinterpret_cast<Vec4<T>*>(p) = v;
}
template <class T>
__device__ __forceinline__ Vec4<T> splat4(T x) {
  return Vec4<T>{{x, x, x, x}};
}

// Runs vec_body(i) for i = 0, 4, 8, ... (the four elements i..i+3) when VEC, then scalar_body(i) for the tail;
// without VEC, scalar_body for every element. Launch with blocks_for(VEC ? ceil(n/4) : n).
template <bool VEC, class VecBody, class ScalarBody>
__device__ __forceinline__ void contiguous_loop(int64_t n, VecBody&& vec_body, ScalarBody&& scalar_body) {
  const int64_t start = first_thread(), step = grid_threads();
  int64_t tail = 0;
  if constexpr (VEC) {
    const int64_t groups = n / 4;
    for (int64_t g = start; g < groups; g += step) vec_body(g * 4);
    tail = groups * 4;
  }
  for (int64_t i = tail + start; i < n; i += step) scalar_body(i);
}

// Element offsets of out index i in up to three broadcast operands (same meaning as kernels/common.h's
// strided_offset), decomposing i once for all of them. Fully unrolled over kMaxDims so the shapes stay in the
// kernel's parameter space. Index = uint32_t when n fits (32-bit division is far cheaper than 64-bit).
template <class Index>
__device__ __forceinline__ void broadcast_offsets(Index i, const StridedShape& out, const StridedShape& s0,
                                                  const StridedShape& s1, const StridedShape& s2, int64_t& o0,
                                                  int64_t& o1, int64_t& o2) {
  o0 = o1 = o2 = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < out.ndim) {
      const Index size = static_cast<Index>(out.size[d]);
      const Index q = i / size;
      const int64_t idx = static_cast<int64_t>(i - q * size);
      i = q;
      o0 += idx * s0.stride[d];
      o1 += idx * s1.stride[d];
      o2 += idx * s2.stride[d];
    }
  }
}

// ==== Kernels: unary ===============================================================================================
template <UnaryOp OP, bool VEC>
__global__ void unary_forward_kernel(float* y, const float* x, int64_t n, float alpha, float beta) {
  contiguous_loop<VEC>(
      n,
      [&](int64_t i) {
        Vec4<float> v = load4(x + i);
#pragma unroll
        for (int k = 0; k < 4; ++k) v.v[k] = unary_value<OP>(v.v[k], alpha, beta);
        store4(y + i, v);
      },
      [&](int64_t i) { y[i] = unary_value<OP>(x[i], alpha, beta); });
}

template <UnaryOp OP, bool VEC>
__global__ void unary_backward_kernel(float* dx, const float* dy, const float* x, const float* y, int64_t n,
                                      float alpha) {
  constexpr bool kUsesX = unary_backward_uses_input(OP), kUsesY = unary_backward_uses_output(OP);
  contiguous_loop<VEC>(
      n,
      [&](int64_t i) {
        Vec4<float> g = load4(dy + i);
        const Vec4<float> xv = kUsesX ? load4(x + i) : splat4(0.0f);
        const Vec4<float> yv = kUsesY ? load4(y + i) : splat4(0.0f);
#pragma unroll
        for (int k = 0; k < 4; ++k) g.v[k] = unary_grad<OP>(g.v[k], xv.v[k], yv.v[k], alpha);
        store4(dx + i, g);
      },
      [&](int64_t i) {
        dx[i] = unary_grad<OP>(dy[i], kUsesX ? x[i] : 0.0f, kUsesY ? y[i] : 0.0f, alpha);
      });
}

// ==== Kernels: binary ==============================================================================================
// Operands contiguous with out's shape or broadcast scalars (a_scalar/b_scalar): no index math.
template <BinaryOp OP, bool VEC>
__global__ void binary_forward_contiguous_kernel(float* out, const float* a, const float* b, int64_t n,
                                                 bool a_scalar, bool b_scalar) {
  const float a0 = a_scalar ? a[0] : 0.0f, b0 = b_scalar ? b[0] : 0.0f;
  contiguous_loop<VEC>(
      n,
      [&](int64_t i) {
        const Vec4<float> av = a_scalar ? splat4(a0) : load4(a + i);
        const Vec4<float> bv = b_scalar ? splat4(b0) : load4(b + i);
        Vec4<float> o;
#pragma unroll
        for (int k = 0; k < 4; ++k) o.v[k] = binary_value<OP>(av.v[k], bv.v[k]);
        store4(out + i, o);
      },
      [&](int64_t i) { out[i] = binary_value<OP>(a_scalar ? a0 : a[i], b_scalar ? b0 : b[i]); });
}

template <BinaryOp OP, class Index>
__global__ void binary_forward_strided_kernel(float* out, const float* a, const float* b, int64_t n,
                                              StridedShape out_shape, StridedShape a_st, StridedShape b_st) {
  for (int64_t i = first_thread(); i < n; i += grid_threads()) {
    int64_t oa, ob, unused;
    broadcast_offsets(static_cast<Index>(i), out_shape, a_st, b_st, b_st, oa, ob, unused);
    out[i] = binary_value<OP>(a[oa], b[ob]);
  }
}

template <BinaryOp OP, bool VEC>
__global__ void binary_backward_contiguous_kernel(float* da, float* db, const float* dout, const float* a,
                                                  const float* b, int64_t n, bool a_scalar, bool b_scalar) {
  const float a0 = a_scalar ? a[0] : 0.0f, b0 = b_scalar ? b[0] : 0.0f;
  contiguous_loop<VEC>(
      n,
      [&](int64_t i) {
        const Vec4<float> g = load4(dout + i);
        const Vec4<float> av = a_scalar ? splat4(a0) : load4(a + i);
        const Vec4<float> bv = b_scalar ? splat4(b0) : load4(b + i);
        if (da != nullptr) {
          Vec4<float> o;
#pragma unroll
          for (int k = 0; k < 4; ++k) o.v[k] = binary_grad_a<OP>(g.v[k], av.v[k], bv.v[k]);
          store4(da + i, o);
        }
        if (db != nullptr) {
          Vec4<float> o;
#pragma unroll
          for (int k = 0; k < 4; ++k) o.v[k] = binary_grad_b<OP>(g.v[k], av.v[k], bv.v[k]);
          store4(db + i, o);
        }
      },
      [&](int64_t i) {
        const float av = a_scalar ? a0 : a[i], bv = b_scalar ? b0 : b[i];
        if (da != nullptr) da[i] = binary_grad_a<OP>(dout[i], av, bv);
        if (db != nullptr) db[i] = binary_grad_b<OP>(dout[i], av, bv);
      });
}

template <BinaryOp OP, class Index>
__global__ void binary_backward_strided_kernel(float* da, float* db, const float* dout, const float* a,
                                               const float* b, int64_t n, StridedShape out_shape, StridedShape a_st,
                                               StridedShape b_st) {
  for (int64_t i = first_thread(); i < n; i += grid_threads()) {
    int64_t oa, ob, unused;
    broadcast_offsets(static_cast<Index>(i), out_shape, a_st, b_st, b_st, oa, ob, unused);
    const float g = dout[i], av = a[oa], bv = b[ob];
    if (da != nullptr) da[i] = binary_grad_a<OP>(g, av, bv);
    if (db != nullptr) db[i] = binary_grad_b<OP>(g, av, bv);
  }
}

// ==== Kernels: where ===============================================================================================
template <bool VEC>
__global__ void where_forward_contiguous_kernel(float* out, const uint8_t* cond, const float* a, const float* b,
                                                int64_t n) {
  contiguous_loop<VEC>(
      n,
      [&](int64_t i) {
        const Vec4<uint8_t> c = load4(cond + i);
        const Vec4<float> av = load4(a + i), bv = load4(b + i);
        Vec4<float> o;
#pragma unroll
        for (int k = 0; k < 4; ++k) o.v[k] = c.v[k] != 0 ? av.v[k] : bv.v[k];
        store4(out + i, o);
      },
      [&](int64_t i) { out[i] = cond[i] != 0 ? a[i] : b[i]; });
}

template <class Index>
__global__ void where_forward_strided_kernel(float* out, const uint8_t* cond, const float* a, const float* b,
                                             int64_t n, StridedShape out_shape, StridedShape cond_st,
                                             StridedShape a_st, StridedShape b_st) {
  for (int64_t i = first_thread(); i < n; i += grid_threads()) {
    int64_t oc, oa, ob;
    broadcast_offsets(static_cast<Index>(i), out_shape, cond_st, a_st, b_st, oc, oa, ob);
    out[i] = cond[oc] != 0 ? a[oa] : b[ob];
  }
}

template <bool VEC>
__global__ void where_backward_contiguous_kernel(float* da, float* db, const uint8_t* cond, const float* dout,
                                                 int64_t n) {
  contiguous_loop<VEC>(
      n,
      [&](int64_t i) {
        const Vec4<uint8_t> c = load4(cond + i);
        const Vec4<float> g = load4(dout + i);
        Vec4<float> ga, gb;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          ga.v[k] = c.v[k] != 0 ? g.v[k] : 0.0f;
          gb.v[k] = c.v[k] != 0 ? 0.0f : g.v[k];
        }
        if (da != nullptr) store4(da + i, ga);
        if (db != nullptr) store4(db + i, gb);
      },
      [&](int64_t i) {
        const bool c = cond[i] != 0;
        if (da != nullptr) da[i] = c ? dout[i] : 0.0f;
        if (db != nullptr) db[i] = c ? 0.0f : dout[i];
      });
}

template <class Index>
__global__ void where_backward_strided_kernel(float* da, float* db, const uint8_t* cond, const float* dout,
                                              int64_t n, StridedShape out_shape, StridedShape cond_st) {
  for (int64_t i = first_thread(); i < n; i += grid_threads()) {
    int64_t oc, unused0, unused1;
    broadcast_offsets(static_cast<Index>(i), out_shape, cond_st, cond_st, cond_st, oc, unused0, unused1);
    const bool c = cond[oc] != 0;
    if (da != nullptr) da[i] = c ? dout[i] : 0.0f;
    if (db != nullptr) db[i] = c ? 0.0f : dout[i];
  }
}

// ==== Kernels: fills and casts =====================================================================================
template <bool VEC>
__global__ void fill_kernel(float* y, int64_t n, float value) {
  contiguous_loop<VEC>(
      n, [&](int64_t i) { store4(y + i, splat4(value)); }, [&](int64_t i) { y[i] = value; });
}

__device__ __forceinline__ float arange_value(int64_t i, double start, double step) {
  return static_cast<float>(fma(static_cast<double>(i), step, start));  // as the CPU twin, bit for bit
}

template <bool VEC>
__global__ void arange_fill_kernel(float* y, int64_t n, double start, double step) {
  contiguous_loop<VEC>(
      n,
      [&](int64_t i) {
        Vec4<float> v;
#pragma unroll
        for (int k = 0; k < 4; ++k) v.v[k] = arange_value(i + k, start, step);
        store4(y + i, v);
      },
      [&](int64_t i) { y[i] = arange_value(i, start, step); });
}

template <class To, class From>
__device__ __forceinline__ To convert(From x) {
  if constexpr (std::is_same_v<To, uint8_t> && std::is_floating_point_v<From>) {
    return static_cast<uint8_t>(static_cast<int64_t>(x));  // as the CPU twin: wrap, no undefined behaviour
  } else {
    return static_cast<To>(x);
  }
}

template <class To, class From, bool VEC>
__global__ void cast_kernel(To* y, const From* x, int64_t n) {
  contiguous_loop<VEC>(
      n,
      [&](int64_t i) {
        const Vec4<From> v = load4(x + i);
        Vec4<To> o;
#pragma unroll
        for (int k = 0; k < 4; ++k) o.v[k] = convert<To>(v.v[k]);
        store4(y + i, o);
      },
      [&](int64_t i) { y[i] = convert<To>(x[i]); });
}

// ==== Kernels: random ==============================================================================================
// One thread per Philox block (four consecutive draws = four consecutive elements).
__global__ void uniform_fill_kernel(float* y, int64_t n, uint64_t seed, uint64_t offset, float lo, float range,
                                    bool vec) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t blk = first_thread(); blk < blocks; blk += grid_threads()) {
    const Philox4 r = philox4x32_10(seed, static_cast<uint64_t>(blk), offset);
    Vec4<float> v;
#pragma unroll
    for (int k = 0; k < 4; ++k) v.v[k] = fmaf(philox_uniform_from_u32(r.v[k]), range, lo);  // as the CPU twin
    const int64_t i = blk * 4;
    if (vec && i + 4 <= n) {
      store4(y + i, v);
    } else {
      for (int k = 0; k < 4 && i + k < n; ++k) y[i + k] = v.v[k];
    }
  }
}

// One thread per Philox block: elements 2*blk (lanes 0, 1) and 2*blk + 1 (lanes 2, 3).
__global__ void normal_fill_kernel(float* y, int64_t n, uint64_t seed, uint64_t offset, double mean, double std) {
  const int64_t blocks = (n + 1) / 2;
  for (int64_t blk = first_thread(); blk < blocks; blk += grid_threads()) {
    const Philox4 r = philox4x32_10(seed, static_cast<uint64_t>(blk), offset);
    const int64_t i = blk * 2;
    y[i] = static_cast<float>(fma(std, box_muller_normal(r.v[0], r.v[1]), mean));
    if (i + 1 < n) y[i + 1] = static_cast<float>(fma(std, box_muller_normal(r.v[2], r.v[3]), mean));
  }
}

__global__ void trunc_normal_fill_kernel(float* y, int64_t n, uint64_t seed, uint64_t offset, double mean,
                                         double std, float lo, float hi) {
  for (int64_t i = first_thread(); i < n; i += grid_threads()) {
    float v = 0.0f;
    bool done = false;
    for (int k = 0; k < kTruncNormalMaxAttempts && !done; ++k) {
      const uint64_t pair = static_cast<uint64_t>(i) + static_cast<uint64_t>(k) * static_cast<uint64_t>(n);
      const Philox4 r = philox4x32_10(seed, pair >> 1, offset);
      const int lane = static_cast<int>(pair & 1) * 2;
      v = static_cast<float>(fma(std, box_muller_normal(r.v[lane], r.v[lane + 1]), mean));
      done = v >= lo && v <= hi;
    }
    y[i] = done ? v : fminf(fmaxf(v, lo), hi);
  }
}

// Dropout forward and backward are the same map: out = keep(i) ? in * scale : 0.
__global__ void dropout_kernel(float* out, const float* in, int64_t n, float p, float scale, uint64_t seed,
                               uint64_t offset, bool vec) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t blk = first_thread(); blk < blocks; blk += grid_threads()) {
    const Philox4 r = philox4x32_10(seed, static_cast<uint64_t>(blk), offset);
    const int64_t i = blk * 4;
    if (vec && i + 4 <= n) {
      Vec4<float> v = load4(in + i);
#pragma unroll
      for (int k = 0; k < 4; ++k) v.v[k] = philox_uniform_from_u32(r.v[k]) >= p ? v.v[k] * scale : 0.0f;
      store4(out + i, v);
    } else {
      for (int k = 0; k < 4 && i + k < n; ++k)
        out[i + k] = philox_uniform_from_u32(r.v[k]) >= p ? in[i + k] * scale : 0.0f;
    }
  }
}

// ==== Host helpers =================================================================================================
int blocks_for(int64_t work) {
  return static_cast<int>(std::min<int64_t>((work + kThreads - 1) / kThreads, kMaxBlocks));
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }
bool aligned16(const void* p) { return aligned(p, 16); }

// 32-bit index math is exact when every linear index fits.
bool fits_u32(int64_t n) { return n <= static_cast<int64_t>(UINT32_MAX); }

// Launch geometry of a contiguous_loop kernel.
int contiguous_blocks(int64_t n, bool vec) { return blocks_for(vec ? (n + 3) / 4 : n); }

}  // namespace

// ==== Launchers ====================================================================================================
void unary_forward(float* y, const float* x, int64_t n, UnaryOp op, float alpha, float beta, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vec = aligned16(y) && aligned16(x);
  const int grid = contiguous_blocks(n, vec);
  dispatch_unary(op, "elementwise (cuda)", [&](auto tag) {
    constexpr UnaryOp OP = decltype(tag)::value;
    if (vec) {
      unary_forward_kernel<OP, true><<<grid, kThreads, 0, stream>>>(y, x, n, alpha, beta);
    } else {
      unary_forward_kernel<OP, false><<<grid, kThreads, 0, stream>>>(y, x, n, alpha, beta);
    }
    MIXGRAD_CUDA_LAUNCH_CHECK();
  });
}

void unary_backward(float* dx, const float* dy, const float* x, const float* y, int64_t n, UnaryOp op, float alpha,
                    float beta, cudaStream_t stream) {
  (void)beta;  // no op's derivative depends on beta
  if (n <= 0) return;
  const bool vec = aligned16(dx) && aligned16(dy) && aligned16(x) && aligned16(y);  // nullptr counts as aligned
  const int grid = contiguous_blocks(n, vec);
  dispatch_unary(op, "elementwise (cuda)", [&](auto tag) {
    constexpr UnaryOp OP = decltype(tag)::value;
    if (vec) {
      unary_backward_kernel<OP, true><<<grid, kThreads, 0, stream>>>(dx, dy, x, y, n, alpha);
    } else {
      unary_backward_kernel<OP, false><<<grid, kThreads, 0, stream>>>(dx, dy, x, y, n, alpha);
    }
    MIXGRAD_CUDA_LAUNCH_CHECK();
  });
}

void binary_forward(float* out, const float* a, const float* b, int64_t n, const StridedShape& out_shape,
                    const StridedShape& a_st, const StridedShape& b_st, BinaryOp op, cudaStream_t stream) {
  if (n <= 0) return;
  const Access am = classify(out_shape, a_st), bm = classify(out_shape, b_st);
  dispatch_binary(op, "elementwise (cuda)", [&](auto tag) {
    constexpr BinaryOp OP = decltype(tag)::value;
    if (am != Access::strided && bm != Access::strided) {
      const bool as = am == Access::scalar, bs = bm == Access::scalar;
      const bool vec = aligned16(out) && (as || aligned16(a)) && (bs || aligned16(b));
      const int grid = contiguous_blocks(n, vec);
      if (vec) {
        binary_forward_contiguous_kernel<OP, true><<<grid, kThreads, 0, stream>>>(out, a, b, n, as, bs);
      } else {
        binary_forward_contiguous_kernel<OP, false><<<grid, kThreads, 0, stream>>>(out, a, b, n, as, bs);
      }
    } else if (fits_u32(n)) {
      binary_forward_strided_kernel<OP, uint32_t>
          <<<blocks_for(n), kThreads, 0, stream>>>(out, a, b, n, out_shape, a_st, b_st);
    } else {
      binary_forward_strided_kernel<OP, uint64_t>
          <<<blocks_for(n), kThreads, 0, stream>>>(out, a, b, n, out_shape, a_st, b_st);
    }
    MIXGRAD_CUDA_LAUNCH_CHECK();
  });
}

void binary_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n,
                     const StridedShape& out_shape, const StridedShape& a_st, const StridedShape& b_st, BinaryOp op,
                     cudaStream_t stream) {
  if (n <= 0 || (da == nullptr && db == nullptr)) return;
  const Access am = classify(out_shape, a_st), bm = classify(out_shape, b_st);
  dispatch_binary(op, "elementwise (cuda)", [&](auto tag) {
    constexpr BinaryOp OP = decltype(tag)::value;
    if (am != Access::strided && bm != Access::strided) {
      const bool as = am == Access::scalar, bs = bm == Access::scalar;
      const bool vec = aligned16(da) && aligned16(db) && aligned16(dout) && (as || aligned16(a)) &&
                       (bs || aligned16(b));
      const int grid = contiguous_blocks(n, vec);
      if (vec) {
        binary_backward_contiguous_kernel<OP, true><<<grid, kThreads, 0, stream>>>(da, db, dout, a, b, n, as, bs);
      } else {
        binary_backward_contiguous_kernel<OP, false><<<grid, kThreads, 0, stream>>>(da, db, dout, a, b, n, as, bs);
      }
    } else if (fits_u32(n)) {
      binary_backward_strided_kernel<OP, uint32_t>
          <<<blocks_for(n), kThreads, 0, stream>>>(da, db, dout, a, b, n, out_shape, a_st, b_st);
    } else {
      binary_backward_strided_kernel<OP, uint64_t>
          <<<blocks_for(n), kThreads, 0, stream>>>(da, db, dout, a, b, n, out_shape, a_st, b_st);
    }
    MIXGRAD_CUDA_LAUNCH_CHECK();
  });
}

void where_forward(float* out, const uint8_t* cond, const float* a, const float* b, int64_t n,
                   const StridedShape& out_shape, const StridedShape& cond_st, const StridedShape& a_st,
                   const StridedShape& b_st, cudaStream_t stream) {
  if (n <= 0) return;
  if (classify(out_shape, cond_st) == Access::contiguous && classify(out_shape, a_st) == Access::contiguous &&
      classify(out_shape, b_st) == Access::contiguous) {
    const bool vec = aligned16(out) && aligned16(a) && aligned16(b) && aligned(cond, 4);
    const int grid = contiguous_blocks(n, vec);
    if (vec) {
      where_forward_contiguous_kernel<true><<<grid, kThreads, 0, stream>>>(out, cond, a, b, n);
    } else {
      where_forward_contiguous_kernel<false><<<grid, kThreads, 0, stream>>>(out, cond, a, b, n);
    }
  } else if (fits_u32(n)) {
    where_forward_strided_kernel<uint32_t>
        <<<blocks_for(n), kThreads, 0, stream>>>(out, cond, a, b, n, out_shape, cond_st, a_st, b_st);
  } else {
    where_forward_strided_kernel<uint64_t>
        <<<blocks_for(n), kThreads, 0, stream>>>(out, cond, a, b, n, out_shape, cond_st, a_st, b_st);
  }
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void where_backward(float* da, float* db, const uint8_t* cond, const float* dout, int64_t n,
                    const StridedShape& out_shape, const StridedShape& cond_st, cudaStream_t stream) {
  if (n <= 0 || (da == nullptr && db == nullptr)) return;
  if (classify(out_shape, cond_st) == Access::contiguous) {
    const bool vec = aligned16(da) && aligned16(db) && aligned16(dout) && aligned(cond, 4);
    const int grid = contiguous_blocks(n, vec);
    if (vec) {
      where_backward_contiguous_kernel<true><<<grid, kThreads, 0, stream>>>(da, db, cond, dout, n);
    } else {
      where_backward_contiguous_kernel<false><<<grid, kThreads, 0, stream>>>(da, db, cond, dout, n);
    }
  } else if (fits_u32(n)) {
    where_backward_strided_kernel<uint32_t>
        <<<blocks_for(n), kThreads, 0, stream>>>(da, db, cond, dout, n, out_shape, cond_st);
  } else {
    where_backward_strided_kernel<uint64_t>
        <<<blocks_for(n), kThreads, 0, stream>>>(da, db, cond, dout, n, out_shape, cond_st);
  }
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void fill(float* y, int64_t n, float value, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vec = aligned16(y);
  if (vec) {
    fill_kernel<true><<<contiguous_blocks(n, true), kThreads, 0, stream>>>(y, n, value);
  } else {
    fill_kernel<false><<<contiguous_blocks(n, false), kThreads, 0, stream>>>(y, n, value);
  }
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void arange_fill(float* y, int64_t n, double start, double step, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vec = aligned16(y);
  if (vec) {
    arange_fill_kernel<true><<<contiguous_blocks(n, true), kThreads, 0, stream>>>(y, n, start, step);
  } else {
    arange_fill_kernel<false><<<contiguous_blocks(n, false), kThreads, 0, stream>>>(y, n, start, step);
  }
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

template <class To, class From>
void cast(To* y, const From* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  if constexpr (std::is_same_v<To, From>) {
    if (y != x)
      MIXGRAD_CUDA_CHECK(cudaMemcpyAsync(y, x, static_cast<size_t>(n) * sizeof(To), cudaMemcpyDeviceToDevice, stream));
  } else {
    const bool vec = aligned(y, 4 * sizeof(To)) && aligned(x, 4 * sizeof(From));
    if (vec) {
      cast_kernel<To, From, true><<<contiguous_blocks(n, true), kThreads, 0, stream>>>(y, x, n);
    } else {
      cast_kernel<To, From, false><<<contiguous_blocks(n, false), kThreads, 0, stream>>>(y, x, n);
    }
    MIXGRAD_CUDA_LAUNCH_CHECK();
  }
}

template void cast<float, float>(float*, const float*, int64_t, cudaStream_t);
template void cast<float, int32_t>(float*, const int32_t*, int64_t, cudaStream_t);
template void cast<float, int64_t>(float*, const int64_t*, int64_t, cudaStream_t);
template void cast<float, uint8_t>(float*, const uint8_t*, int64_t, cudaStream_t);
template void cast<int32_t, float>(int32_t*, const float*, int64_t, cudaStream_t);
template void cast<int64_t, float>(int64_t*, const float*, int64_t, cudaStream_t);
template void cast<uint8_t, float>(uint8_t*, const float*, int64_t, cudaStream_t);

void uniform_fill(float* y, int64_t n, uint64_t seed, uint64_t offset, float lo, float hi, cudaStream_t stream) {
  if (n <= 0) return;
  uniform_fill_kernel<<<blocks_for(uniform_fill_philox_blocks(n)), kThreads, 0, stream>>>(y, n, seed, offset, lo,
                                                                                          hi - lo, aligned16(y));
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void normal_fill(float* y, int64_t n, uint64_t seed, uint64_t offset, float mean, float std, cudaStream_t stream) {
  if (n <= 0) return;
  normal_fill_kernel<<<blocks_for(normal_fill_philox_blocks(n)), kThreads, 0, stream>>>(y, n, seed, offset, mean,
                                                                                        std);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void trunc_normal_fill(float* y, int64_t n, uint64_t seed, uint64_t offset, float mean, float std, float a, float b,
                       cudaStream_t stream) {
  if (n <= 0) return;
  trunc_normal_fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(y, n, seed, offset, mean, std, a, b);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

namespace {

void launch_dropout(float* out, const float* in, int64_t n, float p, uint64_t seed, uint64_t offset,
                    cudaStream_t stream) {
  if (n <= 0) return;
  const float scale = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);  // the CPU twin's value, bit for bit
  dropout_kernel<<<blocks_for(dropout_philox_blocks(n)), kThreads, 0, stream>>>(
      out, in, n, p, scale, seed, offset, aligned16(out) && aligned16(in));
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace

void dropout_forward(float* y, const float* x, int64_t n, float p, uint64_t seed, uint64_t offset,
                     cudaStream_t stream) {
  launch_dropout(y, x, n, p, seed, offset, stream);
}

void dropout_backward(float* dx, const float* dy, int64_t n, float p, uint64_t seed, uint64_t offset,
                      cudaStream_t stream) {
  launch_dropout(dx, dy, n, p, seed, offset, stream);
}

}  // namespace mixgrad::kernels::cuda
