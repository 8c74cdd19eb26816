// CPU reference implementation of the elementwise kernel family (see kernels/cpu/elementwise.h).
#include "kernels/cpu/elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cpu/vec_math.h"
#include "kernels/elementwise_math.h"
#include "kernels/philox.h"

namespace mixgrad::kernels::cpu {
namespace {

// Below this many elements a loop is not worth waking the OpenMP team.
constexpr int64_t kParallelMin = int64_t{1} << 15;

template <class Body>
void parallel_for(int64_t n, Body&& body) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) body(i);
}

// ---- Broadcast access (Access and classify live in kernels/elementwise_math.h) -----------------------------------
// Calls f(std::bool_constant<a_scalar>, std::bool_constant<b_scalar>) so the fast loops index without branches.
template <class F>
void dispatch_scalar_flags(bool a_scalar, bool b_scalar, F&& f) {
  if (a_scalar) {
    if (b_scalar) return f(std::true_type{}, std::true_type{});
    return f(std::true_type{}, std::false_type{});
  }
  if (b_scalar) return f(std::false_type{}, std::true_type{});
  return f(std::false_type{}, std::false_type{});
}

// Strided path: splits out's index space into rows of its innermost dimension, so the (division-heavy)
// strided_offset is computed once per row and operands advance by their innermost stride inside the row.
// body(first, len) handles out elements [first, first + len).
template <class Body>
void for_each_row(int64_t n, const StridedShape& out, Body&& body) {
  const int64_t inner = out.ndim > 0 ? out.size[out.ndim - 1] : 1;
  const int64_t rows = n / inner;
#pragma omp parallel for schedule(static) if (n >= kParallelMin && rows > 1)
  for (int64_t r = 0; r < rows; ++r) body(r * inner, inner);
}

int64_t inner_stride(const StridedShape& out, const StridedShape& st) {
  return out.ndim > 0 ? st.stride[out.ndim - 1] : 0;
}

}  // namespace

// ==== Unary =========================================================================================================
// float GELU (erf form) with the vectorisable erf/exp of kernels/cpu/vec_math.h: < 5e-7 absolute error in the
// normal CDF, against 3–4× the time for libm's erff per element (it was ~10% of a ViT training step).
constexpr int64_t kChunk = 4096;

void gelu_erf_forward_f32(float* y, const float* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t c1 = std::min(n, c0 + kChunk);
#pragma omp simd
    for (int64_t i = c0; i < c1; ++i) {
      const float xi = x[i];
      y[i] = 0.5f * xi * (1.0f + vec::erf(xi * float(kInvSqrt2)));
    }
  }
}

void gelu_erf_backward_f32(float* dx, const float* dy, const float* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t c1 = std::min(n, c0 + kChunk);
#pragma omp simd
    for (int64_t i = c0; i < c1; ++i) {
      const float xi = x[i];
      float gauss;  // e^(−x²/2), shared by the CDF's erf and the density
      const float cdf = 0.5f * (1.0f + vec::erf(xi * float(kInvSqrt2), gauss));
      const float pdf = float(kInvSqrt2Pi) * gauss;
      dx[i] = dy[i] * (cdf + xi * pdf);
    }
  }
}

template <class T>
void unary_forward(T* y, const T* x, int64_t n, UnaryOp op, Scalar<T> alpha, Scalar<T> beta) {
  if (n <= 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (op == UnaryOp::gelu_erf) return gelu_erf_forward_f32(y, x, n);
  }
  dispatch_unary(op, "elementwise", [&](auto tag) {
    constexpr UnaryOp OP = decltype(tag)::value;
    parallel_for(n, [&](int64_t i) { y[i] = unary_value<OP>(x[i], alpha, beta); });
  });
}

template <class T>
void unary_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, UnaryOp op, Scalar<T> alpha,
                    Scalar<T> beta) {
  (void)beta;  // no op's derivative depends on beta
  if (n <= 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (op == UnaryOp::gelu_erf) return gelu_erf_backward_f32(dx, dy, x, n);
  }
  dispatch_unary(op, "elementwise", [&](auto tag) {
    constexpr UnaryOp OP = decltype(tag)::value;
    constexpr bool kUsesX = unary_backward_uses_input(OP), kUsesY = unary_backward_uses_output(OP);
    parallel_for(n, [&](int64_t i) {
      const T xi = kUsesX ? x[i] : T(0);
      const T yi = kUsesY ? y[i] : T(0);
      dx[i] = unary_grad<OP>(dy[i], xi, yi, alpha);
    });
  });
}

// ==== Binary ========================================================================================================
template <class T>
void binary_forward(T* out, const T* a, const T* b, int64_t n, const StridedShape& out_shape,
                    const StridedShape& a_st, const StridedShape& b_st, BinaryOp op) {
  if (n <= 0) return;
  const Access am = classify(out_shape, a_st), bm = classify(out_shape, b_st);
  dispatch_binary(op, "elementwise", [&](auto tag) {
    constexpr BinaryOp OP = decltype(tag)::value;
    if (am != Access::strided && bm != Access::strided) {
      dispatch_scalar_flags(am == Access::scalar, bm == Access::scalar, [&](auto a_scalar, auto b_scalar) {
        parallel_for(n, [&](int64_t i) {
          out[i] = binary_value<OP>(a[a_scalar ? 0 : i], b[b_scalar ? 0 : i]);
        });
      });
      return;
    }
    const int64_t as = inner_stride(out_shape, a_st), bs = inner_stride(out_shape, b_st);
    for_each_row(n, out_shape, [&](int64_t first, int64_t len) {
      const T* ar = a + strided_offset(first, out_shape, a_st);
      const T* br = b + strided_offset(first, out_shape, b_st);
      T* orow = out + first;
      for (int64_t j = 0; j < len; ++j) orow[j] = binary_value<OP>(ar[j * as], br[j * bs]);
    });
  });
}

template <class T>
void binary_backward(T* da, T* db, const T* dout, const T* a, const T* b, int64_t n, const StridedShape& out_shape,
                     const StridedShape& a_st, const StridedShape& b_st, BinaryOp op) {
  if (n <= 0 || (da == nullptr && db == nullptr)) return;
  const Access am = classify(out_shape, a_st), bm = classify(out_shape, b_st);
  dispatch_binary(op, "elementwise", [&](auto tag) {
    constexpr BinaryOp OP = decltype(tag)::value;
    if (am != Access::strided && bm != Access::strided) {
      dispatch_scalar_flags(am == Access::scalar, bm == Access::scalar, [&](auto a_scalar, auto b_scalar) {
        if (da != nullptr)
          parallel_for(n, [&](int64_t i) {
            da[i] = binary_grad_a<OP>(dout[i], a[a_scalar ? 0 : i], b[b_scalar ? 0 : i]);
          });
        if (db != nullptr)
          parallel_for(n, [&](int64_t i) {
            db[i] = binary_grad_b<OP>(dout[i], a[a_scalar ? 0 : i], b[b_scalar ? 0 : i]);
          });
      });
      return;
    }
    const int64_t as = inner_stride(out_shape, a_st), bs = inner_stride(out_shape, b_st);
    for_each_row(n, out_shape, [&](int64_t first, int64_t len) {
      const T* ar = a + strided_offset(first, out_shape, a_st);
      const T* br = b + strided_offset(first, out_shape, b_st);
      const T* g = dout + first;
      if (da != nullptr)
        for (int64_t j = 0; j < len; ++j) da[first + j] = binary_grad_a<OP>(g[j], ar[j * as], br[j * bs]);
      if (db != nullptr)
        for (int64_t j = 0; j < len; ++j) db[first + j] = binary_grad_b<OP>(g[j], ar[j * as], br[j * bs]);
    });
  });
}

// ==== where =========================================================================================================
template <class T>
void where_forward(T* out, const uint8_t* cond, const T* a, const T* b, int64_t n, const StridedShape& out_shape,
                   const StridedShape& cond_st, const StridedShape& a_st, const StridedShape& b_st) {
  if (n <= 0) return;
  if (classify(out_shape, cond_st) == Access::contiguous && classify(out_shape, a_st) == Access::contiguous &&
      classify(out_shape, b_st) == Access::contiguous) {
    parallel_for(n, [&](int64_t i) { out[i] = cond[i] != 0 ? a[i] : b[i]; });
    return;
  }
  const int64_t cs = inner_stride(out_shape, cond_st), as = inner_stride(out_shape, a_st),
                bs = inner_stride(out_shape, b_st);
  for_each_row(n, out_shape, [&](int64_t first, int64_t len) {
    const uint8_t* cr = cond + strided_offset(first, out_shape, cond_st);
    const T* ar = a + strided_offset(first, out_shape, a_st);
    const T* br = b + strided_offset(first, out_shape, b_st);
    for (int64_t j = 0; j < len; ++j) out[first + j] = cr[j * cs] != 0 ? ar[j * as] : br[j * bs];
  });
}

template <class T>
void where_backward(T* da, T* db, const uint8_t* cond, const T* dout, int64_t n, const StridedShape& out_shape,
                    const StridedShape& cond_st) {
  if (n <= 0 || (da == nullptr && db == nullptr)) return;
  if (classify(out_shape, cond_st) == Access::contiguous) {
    if (da != nullptr) parallel_for(n, [&](int64_t i) { da[i] = cond[i] != 0 ? dout[i] : T(0); });
    if (db != nullptr) parallel_for(n, [&](int64_t i) { db[i] = cond[i] != 0 ? T(0) : dout[i]; });
    return;
  }
  const int64_t cs = inner_stride(out_shape, cond_st);
  for_each_row(n, out_shape, [&](int64_t first, int64_t len) {
    const uint8_t* cr = cond + strided_offset(first, out_shape, cond_st);
    for (int64_t j = 0; j < len; ++j) {
      const bool c = cr[j * cs] != 0;
      if (da != nullptr) da[first + j] = c ? dout[first + j] : T(0);
      if (db != nullptr) db[first + j] = c ? T(0) : dout[first + j];
    }
  });
}

// ==== Fills and casts ===============================================================================================
template <class T>
void fill(T* y, int64_t n, Scalar<T> value) {
  if (n <= 0) return;
  parallel_for(n, [&](int64_t i) { y[i] = value; });
}

template <class T>
void arange_fill(T* y, int64_t n, double start, double step) {
  if (n <= 0) return;
  // Explicit fma: the CUDA twin computes the same, whatever the compilers' contraction settings.
  parallel_for(n, [&](int64_t i) {
    const double v = std::fma(static_cast<double>(i), step, start);
    if constexpr (std::is_integral_v<T>) {
      y[i] = static_cast<T>(static_cast<int64_t>(v));  // via int64_t: wraps instead of undefined behaviour
    } else {
      y[i] = static_cast<T>(v);
    }
  });
}

template <class To, class From>
void cast(To* y, const From* x, int64_t n) {
  if (n <= 0) return;
  if constexpr (std::is_same_v<To, From>) {
    if (y != x) std::memmove(y, x, static_cast<size_t>(n) * sizeof(To));
  } else if constexpr (std::is_same_v<To, uint8_t> && std::is_floating_point_v<From>) {
    parallel_for(n, [&](int64_t i) { y[i] = static_cast<uint8_t>(static_cast<int64_t>(x[i])); });
  } else {
    parallel_for(n, [&](int64_t i) { y[i] = static_cast<To>(x[i]); });
  }
}

// ==== Random ========================================================================================================
template <class T>
void uniform_fill(T* y, int64_t n, uint64_t seed, uint64_t offset, Scalar<T> lo, Scalar<T> hi) {
  if (n <= 0) return;
  const T range = hi - lo;
  // One Philox block feeds four consecutive elements (draw i = block i/4, lane i%4).
  parallel_for(uniform_fill_philox_blocks(n), [&](int64_t blk) {
    const Philox4 r = philox4x32_10(seed, static_cast<uint64_t>(blk), offset);
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = blk * 4 + lane;
      if (i < n) y[i] = std::fma(static_cast<T>(philox_uniform_from_u32(r.v[lane])), range, lo);
    }
  });
}

template <class T>
void normal_fill(T* y, int64_t n, uint64_t seed, uint64_t offset, Scalar<T> mean, Scalar<T> std) {
  if (n <= 0) return;
  const double m = mean, s = std;
  // Element i uses draws 2i, 2i+1: one block feeds elements 2*blk (lanes 0,1) and 2*blk+1 (lanes 2,3).
  parallel_for(normal_fill_philox_blocks(n), [&](int64_t blk) {
    const Philox4 r = philox4x32_10(seed, static_cast<uint64_t>(blk), offset);
    for (int half = 0; half < 2; ++half) {
      const int64_t i = blk * 2 + half;
      if (i < n) y[i] = static_cast<T>(std::fma(s, box_muller_normal(r.v[2 * half], r.v[2 * half + 1]), m));
    }
  });
}

template <class T>
void trunc_normal_fill(T* y, int64_t n, uint64_t seed, uint64_t offset, Scalar<T> mean, Scalar<T> std, Scalar<T> a,
                       Scalar<T> b) {
  if (n <= 0) return;
  const double m = mean, s = std;
  parallel_for(n, [&](int64_t i) {
    T v = T(0);
    for (int k = 0; k < kTruncNormalMaxAttempts; ++k) {
      const uint64_t pair = static_cast<uint64_t>(i) + static_cast<uint64_t>(k) * static_cast<uint64_t>(n);
      const Philox4 r = philox4x32_10(seed, pair >> 1, offset);
      const int lane = static_cast<int>(pair & 1) * 2;
      v = static_cast<T>(std::fma(s, box_muller_normal(r.v[lane], r.v[lane + 1]), m));
      if (v >= a && v <= b) {
        y[i] = v;
        return;
      }
    }
    y[i] = std::min(std::max(v, a), b);
  });
}

// ==== Dropout =======================================================================================================
namespace {

template <class T>
T dropout_scale(float p) {
  return p >= 1.0f ? T(0) : T(1) / (T(1) - static_cast<T>(p));
}

// Element i is kept iff the uniform of word i % 4 of Philox block (i / 4, offset) is >= p; the blocks are drawn
// kPhiloxLanes at a time (philox4x32_10_lanes: the same numbers, vectorised) and tested in integers
// (philox_keep_threshold: the same decisions), so the whole loop vectorises.
template <class T>
void dropout_apply(T* out, const T* in, int64_t n, float p, uint64_t seed, uint64_t offset) {
  if (n <= 0) return;
  const T scale = dropout_scale<T>(p);
  const uint32_t threshold = philox_keep_threshold(p);
  constexpr int64_t kPerGroup = 4 * kPhiloxLanes;
  const int64_t groups = (n + kPerGroup - 1) / kPerGroup;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t g = 0; g < groups; ++g) {
    uint32_t lo[kPhiloxLanes], hi[kPhiloxLanes], r[4][kPhiloxLanes], words[kPerGroup];
    for (int l = 0; l < kPhiloxLanes; ++l) {
      const uint64_t blk = static_cast<uint64_t>(g * kPhiloxLanes + l);
      lo[l] = static_cast<uint32_t>(blk), hi[l] = static_cast<uint32_t>(blk >> 32);
    }
    philox4x32_10_lanes(seed, lo, hi, static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32), r);
    for (int l = 0; l < kPhiloxLanes; ++l)
      for (int w = 0; w < 4; ++w) words[4 * l + w] = r[w][l];  // element order: block l, word w
    const int64_t base = g * kPerGroup, m = std::min<int64_t>(kPerGroup, n - base);
    T* o = out + base;
    const T* x = in + base;
#pragma omp simd
    for (int64_t e = 0; e < m; ++e) o[e] = (words[e] >> 8) >= threshold ? x[e] * scale : T(0);
  }
}

}  // namespace

template <class T>
void dropout_forward(T* y, const T* x, int64_t n, float p, uint64_t seed, uint64_t offset) {
  dropout_apply(y, x, n, p, seed, offset);
}

template <class T>
void dropout_backward(T* dx, const T* dy, int64_t n, float p, uint64_t seed, uint64_t offset) {
  dropout_apply(dx, dy, n, p, seed, offset);
}

// ==== Instantiations ================================================================================================
#define MIXGRAD_EW_FLOAT(T)                                                                                          \
  template void unary_forward<T>(T*, const T*, int64_t, UnaryOp, T, T);                                              \
  template void unary_backward<T>(T*, const T*, const T*, const T*, int64_t, UnaryOp, T, T);                         \
  template void binary_forward<T>(T*, const T*, const T*, int64_t, const StridedShape&, const StridedShape&,         \
                                  const StridedShape&, BinaryOp);                                                    \
  template void binary_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, const StridedShape&,               \
                                   const StridedShape&, const StridedShape&, BinaryOp);                              \
  template void where_forward<T>(T*, const uint8_t*, const T*, const T*, int64_t, const StridedShape&,               \
                                 const StridedShape&, const StridedShape&, const StridedShape&);                     \
  template void where_backward<T>(T*, T*, const uint8_t*, const T*, int64_t, const StridedShape&,                    \
                                  const StridedShape&);                                                              \
  template void uniform_fill<T>(T*, int64_t, uint64_t, uint64_t, T, T);                                              \
  template void normal_fill<T>(T*, int64_t, uint64_t, uint64_t, T, T);                                               \
  template void trunc_normal_fill<T>(T*, int64_t, uint64_t, uint64_t, T, T, T, T);                                   \
  template void dropout_forward<T>(T*, const T*, int64_t, float, uint64_t, uint64_t);                                \
  template void dropout_backward<T>(T*, const T*, int64_t, float, uint64_t, uint64_t);

MIXGRAD_EW_FLOAT(float)
MIXGRAD_EW_FLOAT(double)
#undef MIXGRAD_EW_FLOAT

#define MIXGRAD_EW_FILL(T)                                    \
  template void fill<T>(T*, int64_t, T);                      \
  template void arange_fill<T>(T*, int64_t, double, double);

MIXGRAD_EW_FILL(float)
MIXGRAD_EW_FILL(double)
MIXGRAD_EW_FILL(int32_t)
MIXGRAD_EW_FILL(int64_t)
MIXGRAD_EW_FILL(uint8_t)
#undef MIXGRAD_EW_FILL

#define MIXGRAD_EW_CAST_FROM(From)                     \
  template void cast<float, From>(float*, const From*, int64_t);     \
  template void cast<double, From>(double*, const From*, int64_t);   \
  template void cast<int32_t, From>(int32_t*, const From*, int64_t); \
  template void cast<int64_t, From>(int64_t*, const From*, int64_t); \
  template void cast<uint8_t, From>(uint8_t*, const From*, int64_t);

MIXGRAD_EW_CAST_FROM(float)
MIXGRAD_EW_CAST_FROM(double)
MIXGRAD_EW_CAST_FROM(int32_t)
MIXGRAD_EW_CAST_FROM(int64_t)
MIXGRAD_EW_CAST_FROM(uint8_t)
#undef MIXGRAD_EW_CAST_FROM

}  // namespace mixgrad::kernels::cpu
