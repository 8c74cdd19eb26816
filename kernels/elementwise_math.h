// Scalar formulas of the elementwise ops (forward and gradient of every UnaryOp and BinaryOp), shared by the CPU
// kernels (kernels/cpu/elementwise.cpp, float and double) and the CUDA kernels (kernels/cuda/elementwise.cu,
// float with the fp32 math functions), plus the host-side op dispatch and operand classification both use.
// Kernels only: included by those two sources, not by public headers.
#pragma once
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/common.h"
#include "kernels/elementwise_ops.h"

namespace mixgrad::kernels {

// ---- Math functions: float calls the fp32 versions (expf, ...), double the fp64 ones, on host and device ---------
namespace ew_math {
MIXGRAD_HD float exp(float x) { return ::expf(x); }
MIXGRAD_HD double exp(double x) { return ::exp(x); }
MIXGRAD_HD float log(float x) { return ::logf(x); }
MIXGRAD_HD double log(double x) { return ::log(x); }
MIXGRAD_HD float sqrt(float x) { return ::sqrtf(x); }
MIXGRAD_HD double sqrt(double x) { return ::sqrt(x); }
MIXGRAD_HD float tanh(float x) { return ::tanhf(x); }
MIXGRAD_HD double tanh(double x) { return ::tanh(x); }
MIXGRAD_HD float erf(float x) { return ::erff(x); }
MIXGRAD_HD double erf(double x) { return ::erf(x); }
MIXGRAD_HD float pow(float x, float e) { return ::powf(x, e); }
MIXGRAD_HD double pow(double x, double e) { return ::pow(x, e); }
MIXGRAD_HD float fabs(float x) { return ::fabsf(x); }
MIXGRAD_HD double fabs(double x) { return ::fabs(x); }
}  // namespace ew_math

inline constexpr double kInvSqrt2 = 0.70710678118654752440;
inline constexpr double kInvSqrt2Pi = 0.39894228040143267794;
inline constexpr double kSqrt2OverPi = 0.79788456080286535588;
inline constexpr double kGeluTanhCoeff = 0.044715;

// The two twins differ in two places, kept so that neither side's results change: the CPU rounds 3 * 0.044715 once
// (from double), the device rounds 0.044715 to float first and multiplies in float; and the device's sigmoid uses
// one expf of -|x| and no branch on the exponential, the CPU's the textbook two-branch form.
template <class T>
MIXGRAD_HD T gelu_tanh_coeff3() {
#if defined(__CUDA_ARCH__)
  return T(3) * T(kGeluTanhCoeff);
#else
  return T(3 * kGeluTanhCoeff);
#endif
}

template <class T>
MIXGRAD_HD T stable_sigmoid(T x) {
#if defined(__CUDA_ARCH__)
  const T e = ew_math::exp(-ew_math::fabs(x));  // in (0, 1]: never overflows
  const T s = T(1) / (T(1) + e);
  return x >= T(0) ? s : e * s;
#else
  if (x >= T(0)) return T(1) / (T(1) + ew_math::exp(-x));
  const T e = ew_math::exp(x);  // x < 0 (or NaN): e in (0, 1), no overflow
  return e / (T(1) + e);
#endif
}

// ---- Unary ------------------------------------------------------------------------------------------------------
template <UnaryOp OP, class T>
MIXGRAD_HD T unary_value(T x, T alpha, T beta) {
  (void)alpha;
  (void)beta;
  if constexpr (OP == UnaryOp::neg) {
    return -x;
  } else if constexpr (OP == UnaryOp::exp) {
    return ew_math::exp(x);
  } else if constexpr (OP == UnaryOp::log) {
    return ew_math::log(x);
  } else if constexpr (OP == UnaryOp::sqrt) {
    return ew_math::sqrt(x);
  } else if constexpr (OP == UnaryOp::tanh) {
    return ew_math::tanh(x);
  } else if constexpr (OP == UnaryOp::sigmoid) {
    return stable_sigmoid(x);
  } else if constexpr (OP == UnaryOp::relu) {
    return x < T(0) ? T(0) : x;  // NaN propagates
  } else if constexpr (OP == UnaryOp::gelu_erf) {
    return T(0.5) * x * (T(1) + ew_math::erf(x * T(kInvSqrt2)));
  } else if constexpr (OP == UnaryOp::gelu_tanh) {
    return T(0.5) * x * (T(1) + ew_math::tanh(T(kSqrt2OverPi) * (x + T(kGeluTanhCoeff) * x * x * x)));
  } else if constexpr (OP == UnaryOp::silu) {
    return x * stable_sigmoid(x);
  } else if constexpr (OP == UnaryOp::pow_scalar) {
    return ew_math::pow(x, alpha);
  } else {
    static_assert(OP == UnaryOp::affine);
    return alpha * x + beta;
  }
}

// dx for upstream gradient dy; reads x or the saved output y as unary_backward_uses_input/output say. No op's
// derivative depends on beta.
template <UnaryOp OP, class T>
MIXGRAD_HD T unary_grad(T dy, T x, T y, T alpha) {
  (void)x;
  (void)y;
  (void)alpha;
  if constexpr (OP == UnaryOp::neg) {
    return -dy;
  } else if constexpr (OP == UnaryOp::exp) {
    return dy * y;
  } else if constexpr (OP == UnaryOp::log) {
    return dy / x;
  } else if constexpr (OP == UnaryOp::sqrt) {
    return dy / (T(2) * y);
  } else if constexpr (OP == UnaryOp::tanh) {
    return dy * (T(1) - y * y);
  } else if constexpr (OP == UnaryOp::sigmoid) {
    return dy * ((T(1) - y) * y);
  } else if constexpr (OP == UnaryOp::relu) {
    return x > T(0) ? dy : T(0);
  } else if constexpr (OP == UnaryOp::gelu_erf) {
    const T cdf = T(0.5) * (T(1) + ew_math::erf(x * T(kInvSqrt2)));
    const T pdf = T(kInvSqrt2Pi) * ew_math::exp(T(-0.5) * x * x);
    return dy * (cdf + x * pdf);
  } else if constexpr (OP == UnaryOp::gelu_tanh) {
    const T x2 = x * x;
    const T t = ew_math::tanh(T(kSqrt2OverPi) * (x + T(kGeluTanhCoeff) * x2 * x));
    const T sech2 = T(1) - t * t;
    // sech2 == 0 for large |x|, where x2 may overflow: skip the 0 * inf.
    const T tail =
        sech2 == T(0) ? T(0) : T(0.5) * x * sech2 * T(kSqrt2OverPi) * (T(1) + gelu_tanh_coeff3<T>() * x2);
    return dy * (T(0.5) * (T(1) + t) + tail);
  } else if constexpr (OP == UnaryOp::silu) {
    const T s = stable_sigmoid(x);
    return dy * (s * (T(1) + x * (T(1) - s)));
  } else if constexpr (OP == UnaryOp::pow_scalar) {
    return alpha == T(0) ? T(0) : dy * alpha * ew_math::pow(x, alpha - T(1));
  } else {
    static_assert(OP == UnaryOp::affine);
    return dy * alpha;
  }
}

// ---- Binary -----------------------------------------------------------------------------------------------------
template <BinaryOp OP, class T>
MIXGRAD_HD T binary_value(T a, T b) {
  if constexpr (OP == BinaryOp::add) {
    return a + b;
  } else if constexpr (OP == BinaryOp::sub) {
    return a - b;
  } else if constexpr (OP == BinaryOp::mul) {
    return a * b;
  } else if constexpr (OP == BinaryOp::div) {
    return a / b;
  } else if constexpr (OP == BinaryOp::maximum) {
    return (a > b || a != a) ? a : b;  // NaN in either operand propagates
  } else {
    static_assert(OP == BinaryOp::minimum);
    return (a < b || a != a) ? a : b;
  }
}

// Gradient of a (op) b with respect to a and to b, for upstream gradient g.
template <BinaryOp OP, class T>
MIXGRAD_HD T binary_grad_a(T g, T a, T b) {
  (void)a;
  (void)b;
  if constexpr (OP == BinaryOp::add || OP == BinaryOp::sub) {
    return g;
  } else if constexpr (OP == BinaryOp::mul) {
    return g * b;
  } else if constexpr (OP == BinaryOp::div) {
    return g / b;
  } else if constexpr (OP == BinaryOp::maximum) {
    return a == b ? T(0.5) * g : (a < b ? T(0) : g);
  } else {
    static_assert(OP == BinaryOp::minimum);
    return a == b ? T(0.5) * g : (a > b ? T(0) : g);
  }
}

template <BinaryOp OP, class T>
MIXGRAD_HD T binary_grad_b(T g, T a, T b) {
  (void)a;
  (void)b;
  if constexpr (OP == BinaryOp::add) {
    return g;
  } else if constexpr (OP == BinaryOp::sub) {
    return -g;
  } else if constexpr (OP == BinaryOp::mul) {
    return g * a;
  } else if constexpr (OP == BinaryOp::div) {
    return -g * ((a / b) / b);  // PyTorch's form: avoids overflowing b*b
  } else if constexpr (OP == BinaryOp::maximum) {
    return a == b ? T(0.5) * g : (a > b ? T(0) : g);
  } else {
    static_assert(OP == BinaryOp::minimum);
    return a == b ? T(0.5) * g : (a < b ? T(0) : g);
  }
}

// ---- Host-side dispatch ------------------------------------------------------------------------------------------
template <UnaryOp OP>
using UnaryTag = std::integral_constant<UnaryOp, OP>;
template <BinaryOp OP>
using BinaryTag = std::integral_constant<BinaryOp, OP>;

// Calls f(UnaryTag<op>{}); `who` names the caller in the error for an unknown op.
template <class F>
void dispatch_unary(UnaryOp op, const char* who, F&& f) {
  switch (op) {
    case UnaryOp::neg: return f(UnaryTag<UnaryOp::neg>{});
    case UnaryOp::exp: return f(UnaryTag<UnaryOp::exp>{});
    case UnaryOp::log: return f(UnaryTag<UnaryOp::log>{});
    case UnaryOp::sqrt: return f(UnaryTag<UnaryOp::sqrt>{});
    case UnaryOp::tanh: return f(UnaryTag<UnaryOp::tanh>{});
    case UnaryOp::sigmoid: return f(UnaryTag<UnaryOp::sigmoid>{});
    case UnaryOp::relu: return f(UnaryTag<UnaryOp::relu>{});
    case UnaryOp::gelu_erf: return f(UnaryTag<UnaryOp::gelu_erf>{});
    case UnaryOp::gelu_tanh: return f(UnaryTag<UnaryOp::gelu_tanh>{});
    case UnaryOp::silu: return f(UnaryTag<UnaryOp::silu>{});
    case UnaryOp::pow_scalar: return f(UnaryTag<UnaryOp::pow_scalar>{});
    case UnaryOp::affine: return f(UnaryTag<UnaryOp::affine>{});
  }
  throw std::invalid_argument(std::string(who) + ": unknown UnaryOp " + std::to_string(static_cast<int>(op)));
}

// Calls f(BinaryTag<op>{}); `who` names the caller in the error for an unknown op.
template <class F>
void dispatch_binary(BinaryOp op, const char* who, F&& f) {
  switch (op) {
    case BinaryOp::add: return f(BinaryTag<BinaryOp::add>{});
    case BinaryOp::sub: return f(BinaryTag<BinaryOp::sub>{});
    case BinaryOp::mul: return f(BinaryTag<BinaryOp::mul>{});
    case BinaryOp::div: return f(BinaryTag<BinaryOp::div>{});
    case BinaryOp::maximum: return f(BinaryTag<BinaryOp::maximum>{});
    case BinaryOp::minimum: return f(BinaryTag<BinaryOp::minimum>{});
  }
  throw std::invalid_argument(std::string(who) + ": unknown BinaryOp " + std::to_string(static_cast<int>(op)));
}

// How an operand with strides `st` is read over out's shape: element i at i, at 0, or via strided_offset.
enum class Access { contiguous, scalar, strided };

inline Access classify(const StridedShape& out, const StridedShape& st) {
  bool contiguous = true, scalar = true;
  int64_t expected = 1;
  for (int d = out.ndim - 1; d >= 0; --d) {
    if (out.size[d] == 1) continue;  // the stride of a size-1 dimension is never used
    contiguous = contiguous && st.stride[d] == expected;
    scalar = scalar && st.stride[d] == 0;
    expected *= out.size[d];
  }
  return contiguous ? Access::contiguous : (scalar ? Access::scalar : Access::strided);
}

}  // namespace mixgrad::kernels
