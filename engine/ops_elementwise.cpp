// Element-wise ops with broadcasting: binary arithmetic, unary math, where/masked_fill, dropout.
#include <cmath>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "kernels/cpu/elementwise.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/elementwise.h"
#endif

namespace mixgrad {
using kernels::BinaryOp;
using kernels::StridedShape;
using kernels::UnaryOp;

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MIXGRAD_CHECK(da == db || da == 1 || db == 1, "{}: shapes {} and {} cannot be broadcast together (dimension {}: {} vs {})",
                  op, shape_str(a), shape_str(b), i, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

StridedShape contiguous_layout(const Shape& shape, const char* op) {
  MIXGRAD_CHECK(shape.size() <= size_t(kernels::kMaxDims), "{}: at most {} dimensions are supported, got {}", op,
                kernels::kMaxDims, shape.size());
  StridedShape s;
  s.ndim = int(shape.size());
  int64_t stride = 1;
  for (int d = s.ndim - 1; d >= 0; --d) {
    s.size[d] = shape[size_t(d)];
    s.stride[d] = stride;
    stride *= shape[size_t(d)];
  }
  return s;
}

// Strides of `in` (contiguous) read as if broadcast to `out` (0 on broadcast dimensions).
StridedShape broadcast_layout(const Shape& in, const Shape& out, const char* op) {
  StridedShape s = contiguous_layout(out, op);
  const StridedShape src = contiguous_layout(in, op);
  const int shift = s.ndim - src.ndim;
  for (int d = 0; d < s.ndim; ++d) {
    const int sd = d - shift;
    s.stride[d] = (sd < 0 || src.size[sd] == 1) ? 0 : src.stride[sd];
  }
  return s;
}

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
  }
  return "binary";
}

struct BinaryLayouts {
  Shape out;
  StridedShape out_l, a_l, b_l;
};

BinaryLayouts binary_layouts(const Tensor& a, const Tensor& b, const char* op) {
  BinaryLayouts l;
  l.out = broadcast_shapes(a.shape(), b.shape(), op);
  l.out_l = contiguous_layout(l.out, op);
  l.a_l = broadcast_layout(a.shape(), l.out, op);
  l.b_l = broadcast_layout(b.shape(), l.out, op);
  return l;
}

Tensor binary(const Tensor& a, const Tensor& b, BinaryOp op) {
  const char* name = binary_name(op);
  const Device dev = detail::common_device(name, {a, b});
  detail::check_same_dtype(name, {a, b});
  detail::check_cuda_float(name, a);
  MIXGRAD_CHECK(is_floating(a.dtype()), "{}: expected floating-point tensors, got {}", name, a.dtype());
  const BinaryLayouts l = binary_layouts(a, b, name);
  Tensor out = empty(l.out, TensorOptions(a.dtype(), dev));
  const int64_t n = out.numel();
  if (n > 0) {
    if (dev.is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(a.dtype(), name, [&] {
        kernels::cpu::binary_forward(out.data<scalar_t>(), a.data<scalar_t>(), b.data<scalar_t>(), n, l.out_l, l.a_l,
                                     l.b_l, op);
      });
    } else {
      MIXGRAD_IF_CUDA(kernels::cuda::binary_forward(out.data<float>(), a.data<float>(), b.data<float>(), n, l.out_l,
                                                    l.a_l, l.b_l, op, detail::stream_of(out));)
      if (!cuda_compiled()) detail::no_cuda(name);
    }
  }
  if (autograd::needs_grad({a, b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    autograd::record(name, {a, b}, {out},
                     [a = a.detach(), b = b.detach(), l, op, ga, gb, name](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       const Tensor& dout = g[0];
                       const int64_t n = dout.numel();
                       Tensor da_full = ga ? empty_like(dout) : Tensor();
                       Tensor db_full = gb ? empty_like(dout) : Tensor();
                       if (n > 0) {
                         if (dout.device().is_cpu()) {
                           MIXGRAD_DISPATCH_FLOATING(dout.dtype(), name, [&] {
                             kernels::cpu::binary_backward(ga ? da_full.data<scalar_t>() : nullptr,
                                                           gb ? db_full.data<scalar_t>() : nullptr, dout.data<scalar_t>(),
                                                           a.data<scalar_t>(), b.data<scalar_t>(), n, l.out_l, l.a_l,
                                                           l.b_l, op);
                           });
                         } else {
                           MIXGRAD_IF_CUDA(kernels::cuda::binary_backward(
                               ga ? da_full.data<float>() : nullptr, gb ? db_full.data<float>() : nullptr,
                               dout.data<float>(), a.data<float>(), b.data<float>(), n, l.out_l, l.a_l, l.b_l, op,
                               detail::stream_of(dout));)
                         }
                       }
                       return {ga ? sum_to_shape(da_full, a.shape()) : Tensor(),
                               gb ? sum_to_shape(db_full, b.shape()) : Tensor()};
                     });
  }
  return out;
}

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg: return "neg";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::tanh: return "tanh";
    case UnaryOp::sigmoid: return "sigmoid";
    case UnaryOp::relu: return "relu";
    case UnaryOp::gelu_erf: return "gelu";
    case UnaryOp::gelu_tanh: return "gelu(tanh)";
    case UnaryOp::silu: return "silu";
    case UnaryOp::pow_scalar: return "pow";
    case UnaryOp::affine: return "affine";
  }
  return "unary";
}

Tensor unary(const Tensor& x, UnaryOp op, double alpha = 0, double beta = 0) {
  const char* name = unary_name(op);
  MIXGRAD_CHECK(x.defined(), "{}: undefined input", name);
  MIXGRAD_CHECK(is_floating(x.dtype()), "{}: expected a floating-point tensor, got {}", name, x.dtype());
  detail::check_cuda_float(name, x);
  Tensor y = empty_like(x);
  const int64_t n = x.numel();
  if (n > 0) {
    if (x.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(x.dtype(), name, [&] {
        kernels::cpu::unary_forward(y.data<scalar_t>(), x.data<scalar_t>(), n, op, scalar_t(alpha), scalar_t(beta));
      });
    } else {
      MIXGRAD_IF_CUDA(kernels::cuda::unary_forward(y.data<float>(), x.data<float>(), n, op, float(alpha), float(beta),
                                                   detail::stream_of(x));)
      if (!cuda_compiled()) detail::no_cuda(name);
    }
  }
  if (autograd::needs_grad({x})) {
    autograd::record(name, {x}, {y},
                     [x = x.detach(), y = y.detach(), op, alpha, beta, name](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       Tensor dx = empty_like(x);
                       const int64_t n = x.numel();
                       if (n > 0) {
                         if (x.device().is_cpu()) {
                           MIXGRAD_DISPATCH_FLOATING(x.dtype(), name, [&] {
                             kernels::cpu::unary_backward(dx.data<scalar_t>(), g[0].data<scalar_t>(), x.data<scalar_t>(),
                                                          y.data<scalar_t>(), n, op, scalar_t(alpha), scalar_t(beta));
                           });
                         } else {
                           MIXGRAD_IF_CUDA(kernels::cuda::unary_backward(dx.data<float>(), g[0].data<float>(),
                                                                         x.data<float>(), y.data<float>(), n, op,
                                                                         float(alpha), float(beta), detail::stream_of(x));)
                         }
                       }
                       return {dx};
                     });
  }
  return y;
}

// Broadcast a uint8 condition together with a and b; returns the three layouts and the output shape.
struct WhereLayouts {
  Shape out;
  StridedShape out_l, c_l, a_l, b_l;
};

}  // namespace

Tensor sum_to_shape(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int64_t lead = int64_t(grad.shape().size()) - int64_t(shape.size());
  MIXGRAD_CHECK(lead >= 0, "sum_to_shape: cannot reduce {} to {}", shape_str(grad.shape()), shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < int64_t(grad.shape().size()); ++d) {
    if (d < lead) {
      dims.push_back(d);
    } else {
      const int64_t want = shape[size_t(d - lead)];
      MIXGRAD_CHECK(want == grad.shape()[size_t(d)] || want == 1, "sum_to_shape: cannot reduce {} to {}",
                    shape_str(grad.shape()), shape_str(shape));
      if (want == 1 && grad.shape()[size_t(d)] != 1) dims.push_back(d);
    }
  }
  Tensor r = dims.empty() ? grad : sum(grad, dims, /*keepdim=*/true);
  return r.reshape(shape);
}

Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::add); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::sub); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::mul); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::div); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::maximum); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::minimum); }

Tensor add_scalar(const Tensor& a, double s) { return unary(a, UnaryOp::affine, 1.0, s); }
Tensor mul_scalar(const Tensor& a, double s) { return unary(a, UnaryOp::affine, s, 0.0); }
Tensor neg(const Tensor& a) { return unary(a, UnaryOp::neg); }
Tensor exp(const Tensor& a) { return unary(a, UnaryOp::exp); }
Tensor log(const Tensor& a) { return unary(a, UnaryOp::log); }
Tensor sqrt(const Tensor& a) { return unary(a, UnaryOp::sqrt); }
Tensor pow(const Tensor& a, double e) { return unary(a, UnaryOp::pow_scalar, e); }
Tensor tanh(const Tensor& a) { return unary(a, UnaryOp::tanh); }
Tensor sigmoid(const Tensor& a) { return unary(a, UnaryOp::sigmoid); }
Tensor relu(const Tensor& a) { return unary(a, UnaryOp::relu); }
Tensor silu(const Tensor& a) { return unary(a, UnaryOp::silu); }
Tensor gelu(const Tensor& a, const std::string& approximate) {
  MIXGRAD_CHECK(approximate == "none" || approximate == "tanh", "gelu: approximate must be \"none\" or \"tanh\", got \"{}\"",
                approximate);
  return unary(a, approximate == "none" ? UnaryOp::gelu_erf : UnaryOp::gelu_tanh);
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double s) { return add_scalar(a, s); }
Tensor operator-(const Tensor& a, double s) { return add_scalar(a, -s); }
Tensor operator*(const Tensor& a, double s) { return mul_scalar(a, s); }
Tensor operator/(const Tensor& a, double s) { return mul_scalar(a, 1.0 / s); }
Tensor operator*(double s, const Tensor& a) { return mul_scalar(a, s); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  const Device dev = detail::common_device("where", {cond, a, b});
  MIXGRAD_CHECK(cond.dtype() == DType::u8, "where: condition must be uint8 (nonzero = true), got {}", cond.dtype());
  detail::check_same_dtype("where", {a, b});
  MIXGRAD_CHECK(is_floating(a.dtype()), "where: expected floating-point values, got {}", a.dtype());
  detail::check_cuda_float("where", a);
  WhereLayouts l;
  l.out = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  l.out_l = contiguous_layout(l.out, "where");
  l.c_l = broadcast_layout(cond.shape(), l.out, "where");
  l.a_l = broadcast_layout(a.shape(), l.out, "where");
  l.b_l = broadcast_layout(b.shape(), l.out, "where");
  Tensor out = empty(l.out, TensorOptions(a.dtype(), dev));
  const int64_t n = out.numel();
  if (n > 0) {
    if (dev.is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(a.dtype(), "where", [&] {
        kernels::cpu::where_forward(out.data<scalar_t>(), cond.data<uint8_t>(), a.data<scalar_t>(), b.data<scalar_t>(), n,
                                    l.out_l, l.c_l, l.a_l, l.b_l);
      });
    } else {
      MIXGRAD_IF_CUDA(kernels::cuda::where_forward(out.data<float>(), cond.data<uint8_t>(), a.data<float>(),
                                                   b.data<float>(), n, l.out_l, l.c_l, l.a_l, l.b_l,
                                                   detail::stream_of(out));)
      if (!cuda_compiled()) detail::no_cuda("where");
    }
  }
  if (autograd::needs_grad({a, b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    autograd::record("where", {a, b}, {out},
                     [cond = cond.detach(), l, ga, gb, sa = a.shape(), sb = b.shape()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       const Tensor& dout = g[0];
                       const int64_t n = dout.numel();
                       Tensor da = ga ? empty_like(dout) : Tensor(), db = gb ? empty_like(dout) : Tensor();
                       if (n > 0) {
                         if (dout.device().is_cpu()) {
                           MIXGRAD_DISPATCH_FLOATING(dout.dtype(), "where", [&] {
                             kernels::cpu::where_backward(ga ? da.data<scalar_t>() : nullptr, gb ? db.data<scalar_t>() : nullptr,
                                                          cond.data<uint8_t>(), dout.data<scalar_t>(), n, l.out_l, l.c_l);
                           });
                         } else {
                           MIXGRAD_IF_CUDA(kernels::cuda::where_backward(ga ? da.data<float>() : nullptr,
                                                                         gb ? db.data<float>() : nullptr,
                                                                         cond.data<uint8_t>(), dout.data<float>(), n,
                                                                         l.out_l, l.c_l, detail::stream_of(dout));)
                         }
                       }
                       return {ga ? sum_to_shape(da, sa) : Tensor(), gb ? sum_to_shape(db, sb) : Tensor()};
                     });
  }
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  MIXGRAD_CHECK(mask.dtype() == DType::u8, "masked_fill: mask must be uint8 (nonzero = fill), got {}", mask.dtype());
  const Shape out = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
  MIXGRAD_CHECK(out == x.shape(), "masked_fill: mask of shape {} does not broadcast to the input's shape {}",
                shape_str(mask.shape()), shape_str(x.shape()));
  return where(mask, full({}, value, TensorOptions(x.dtype(), x.device())), x);
}

Tensor dropout(const Tensor& x, double p, bool training) {
  MIXGRAD_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got {}", p);
  if (!training || p == 0.0) return x;
  MIXGRAD_CHECK(is_floating(x.dtype()), "dropout: expected a floating-point tensor, got {}", x.dtype());
  detail::check_cuda_float("dropout", x);
  const uint64_t seed = generator_state().seed, stream = next_random_stream();
  const float pf = float(p);
  Tensor y = empty_like(x);
  const int64_t n = x.numel();
  if (n > 0) {
    if (x.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(x.dtype(), "dropout", [&] {
        kernels::cpu::dropout_forward(y.data<scalar_t>(), x.data<scalar_t>(), n, pf, seed, stream);
      });
    } else {
      MIXGRAD_IF_CUDA(kernels::cuda::dropout_forward(y.data<float>(), x.data<float>(), n, pf, seed, stream,
                                                     detail::stream_of(x));)
      if (!cuda_compiled()) detail::no_cuda("dropout");
    }
  }
  if (autograd::needs_grad({x})) {
    autograd::record("dropout", {x}, {y}, [pf, seed, stream](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor dx = empty_like(g[0]);
      const int64_t n = dx.numel();
      if (n > 0) {
        if (dx.device().is_cpu()) {
          MIXGRAD_DISPATCH_FLOATING(dx.dtype(), "dropout", [&] {
            kernels::cpu::dropout_backward(dx.data<scalar_t>(), g[0].data<scalar_t>(), n, pf, seed, stream);
          });
        } else {
          MIXGRAD_IF_CUDA(kernels::cuda::dropout_backward(dx.data<float>(), g[0].data<float>(), n, pf, seed, stream,
                                                          detail::stream_of(dx));)
        }
      }
      return {dx};
    });
  }
  return y;
}

}  // namespace mixgrad
