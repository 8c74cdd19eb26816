// Elementwise kernel family, CPU reference: unary and binary (broadcasting) ops with their backward kernels,
// where, fills, casts, Philox random fills and dropout. Twin of kernels/cuda/elementwise.h.
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/common.h"
#include "kernels/elementwise_ops.h"

namespace mixgrad::kernels::cpu {

// Defined for T = float and double. Scalars are std::type_identity_t<T> so T is deduced from the pointers only.
template <class T>
using Scalar = std::type_identity_t<T>;

// ---- Unary (contiguous, n elements; y may alias x, dx may alias dy) ----------------------------------------
// y = f(x); alpha/beta only for pow_scalar (x^alpha) and affine (alpha*x + beta). Sigmoid and silu are stable
// for large |x|; log/sqrt/pow of invalid input give what std:: gives (NaN, -inf).
template <class T>
void unary_forward(T* y, const T* x, int64_t n, UnaryOp op, Scalar<T> alpha, Scalar<T> beta);

// dx = dy * f'(x). Reads y (the forward output) for exp, sqrt, tanh, sigmoid and x otherwise (see
// unary_backward_uses_output/_input in kernels/elementwise_ops.h; the unused one may be nullptr).
// relu'(0) = 0; pow_scalar: alpha * x^(alpha-1), and 0 when alpha == 0 (as PyTorch).
template <class T>
void unary_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, UnaryOp op, Scalar<T> alpha,
                    Scalar<T> beta);

// ---- Binary with broadcasting ------------------------------------------------------------------------------
// `out` is contiguous with shape out_shape (n = product of its sizes). a_st/b_st give each operand's element
// strides indexed by out's dimensions (rank aligned to out_shape.ndim; stride 0 on broadcast dimensions; their
// `size` fields are not read). Operands that are contiguous with out's shape, or a single broadcast scalar, take
// a path without index math.
template <class T>
void binary_forward(T* out, const T* a, const T* b, int64_t n, const StridedShape& out_shape,
                    const StridedShape& a_st, const StridedShape& b_st, BinaryOp op);

// Writes out-shaped (full, not reduced over broadcast dimensions) gradients da and db, contiguous; either may be
// nullptr to skip it. maximum/minimum: the gradient goes to the selected operand, ties split 0.5/0.5; a NaN
// comparison sends the full gradient to both (as PyTorch).
template <class T>
void binary_backward(T* da, T* db, const T* dout, const T* a, const T* b, int64_t n, const StridedShape& out_shape,
                     const StridedShape& a_st, const StridedShape& b_st, BinaryOp op);

// ---- where ---------------------------------------------------------------------------------------------------
// out = cond ? a : b, all three read through strides as in binary_forward (cond != 0 is true).
template <class T>
void where_forward(T* out, const uint8_t* cond, const T* a, const T* b, int64_t n, const StridedShape& out_shape,
                   const StridedShape& cond_st, const StridedShape& a_st, const StridedShape& b_st);

// da = cond ? dout : 0, db = cond ? 0 : dout, both out-shaped and contiguous; either may be nullptr.
template <class T>
void where_backward(T* da, T* db, const uint8_t* cond, const T* dout, int64_t n, const StridedShape& out_shape,
                    const StridedShape& cond_st);

// ---- Fills and casts (also for int32_t, int64_t, uint8_t) --------------------------------------------------
template <class T>
void fill(T* y, int64_t n, Scalar<T> value);

// y[i] = T(fma(i, step, start)) computed in double (exactly as on CUDA).
template <class T>
void arange_fill(T* y, int64_t n, double start, double step);

// y[i] = static_cast<To>(x[i]) for To, From in {float, double, int32_t, int64_t, uint8_t}. Floating -> uint8_t
// goes through int64_t (wraps modulo 256 instead of undefined behaviour), like PyTorch.
template <class To, class From>
void cast(To* y, const From* x, int64_t n);

// ---- Random (Philox; the same numbers as the CUDA twins) ---------------------------------------------------
// Draw bookkeeping (which counters a call consumes, how the caller advances `offset`): kernels/elementwise_ops.h.

// y[i] = fma(u, hi - lo, lo) with u = philox_uniform(seed, offset, i) in [0, 1): bit-identical to CUDA for float.
template <class T>
void uniform_fill(T* y, int64_t n, uint64_t seed, uint64_t offset, Scalar<T> lo, Scalar<T> hi);

// y[i] = T(fma(std, z, mean)) with z = box_muller_normal(draw 2i, draw 2i+1), all in double.
template <class T>
void normal_fill(T* y, int64_t n, uint64_t seed, uint64_t offset, Scalar<T> mean, Scalar<T> std);

// Normal(mean, std) restricted to [a, b] (a <= b) by deterministic re-drawing: attempt k of element i uses pair
// index i + k*n; after kTruncNormalMaxAttempts misses the last attempt is clamped into [a, b].
template <class T>
void trunc_normal_fill(T* y, int64_t n, uint64_t seed, uint64_t offset, Scalar<T> mean, Scalar<T> std, Scalar<T> a,
                       Scalar<T> b);

// ---- Dropout (mask regenerated from (seed, offset), never stored) -----------------------------------------
// Element i is kept iff philox_uniform(seed, offset, i) >= p; kept elements are scaled by 1/(1-p); p >= 1 gives
// zeros, p <= 0 keeps everything.
template <class T>
void dropout_forward(T* y, const T* x, int64_t n, float p, uint64_t seed, uint64_t offset);

template <class T>
void dropout_backward(T* dx, const T* dy, int64_t n, float p, uint64_t seed, uint64_t offset);

}  // namespace mixgrad::kernels::cpu
