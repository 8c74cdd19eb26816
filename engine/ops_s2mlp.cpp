// The S2-MLPv2 ops (specs/mixers.md §1): validation, device dispatch and tape nodes of the spatial shifts and the
// split-attention passes; the split attention itself composes them with linear, gelu and softmax.
#include <cstdint>
#include <limits>
#include <utility>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "engine/s2mlp.h"
#include "engine/sequence.h"
#include "kernels/cpu/spatial_shift.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/spatial_shift.h"
#endif

namespace mixgrad {
namespace {

using kernels::s2::S2Geometry;

// ---- spatial_shift1 / spatial_shift2 on [B, H, W, C] ------------------------------------------------------------

void check_image(const char* op, const Tensor& x, int variant) {
  MIXGRAD_CHECK(variant == 1 || variant == 2, "{}: variant {} is not a spatial shift (expected 1 or 2)", op, variant);
  MIXGRAD_CHECK(x.defined(), "{}: the input is undefined (expected [B, H, W, C])", op);
  MIXGRAD_CHECK(is_floating(x.dtype()), "{}: the input has dtype {}, expected float32 or float64", op, x.dtype());
  detail::check_cuda_float(op, x);
  MIXGRAD_CHECK(x.dim() == 4, "{}: expected NHWC [B, H, W, C], got shape {}", op, shape_str(x.shape()));
  MIXGRAD_CHECK(x.size(0) >= 1 && x.size(1) >= 1 && x.size(2) >= 1 && x.size(3) >= 1,
                "{}: shape {} has an empty axis (expected B, H, W and C all >= 1)", op, shape_str(x.shape()));
}

Tensor run_shift(const Tensor& x, int variant, bool backward) {
  Tensor y = empty_like(x);
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  if (x.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(x.dtype(), "spatial_shift", [&] {
      if (backward)
        kernels::cpu::spatial_shift_backward(y.data<scalar_t>(), x.data<scalar_t>(), B, H, W, C, variant);
      else
        kernels::cpu::spatial_shift_forward(y.data<scalar_t>(), x.data<scalar_t>(), B, H, W, C, variant);
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    if (backward)
      kernels::cuda::spatial_shift_backward(y.data<float>(), x.data<float>(), B, H, W, C, variant,
                                            detail::stream_of(x));
    else
      kernels::cuda::spatial_shift_forward(y.data<float>(), x.data<float>(), B, H, W, C, variant, detail::stream_of(x));
#else
    detail::no_cuda("spatial_shift");
#endif
  }
  return y;
}

// ---- the token passes on z [B, N, 3C] ---------------------------------------------------------------------------

// Validated arguments of one split-attention pass: the kernels' geometry and the int32 lengths (undefined = full).
struct S2Plan {
  S2Geometry g;
  Tensor lengths;
  Shape z_shape;
};

S2Plan plan_tokens(const char* op, const Tensor& z, const S2Grid& grid, const Tensor& lengths) {
  MIXGRAD_CHECK(z.defined(), "{}: z is undefined (expected mlp1's output [B, N, 3C])", op);
  MIXGRAD_CHECK(is_floating(z.dtype()), "{}: z has dtype {}, expected float32 or float64", op, z.dtype());
  detail::check_cuda_float(op, z);
  MIXGRAD_CHECK(z.dim() == 3 && z.size(2) % 3 == 0 && z.size(2) >= 3 && z.size(0) >= 1 && z.size(1) >= 1,
                "{}: z has shape {}, expected [B, N, 3C] with B, N, C >= 1 (three branches of C channels)", op,
                shape_str(z.shape()));
  MIXGRAD_CHECK(grid.h >= 1 && grid.w >= 1,
                "{}: needs a token grid (h × w >= 1 × 1, the tokens' 2-D layout), got {} × {}", op, grid.h, grid.w);
  S2Plan p;
  p.g.B = z.size(0), p.g.N = z.size(1), p.g.C = z.size(2) / 3, p.g.H = grid.h, p.g.W = grid.w;
  p.g.cls = grid.cls_token ? 1 : 0;
  p.z_shape = z.shape();
  MIXGRAD_CHECK(p.g.N <= p.g.cls + p.g.H * p.g.W,
                "{}: z has N = {} tokens, more than the {} × {} grid{} holds ({}); expected N <= {}", op, p.g.N, p.g.H,
                p.g.W, grid.cls_token ? " plus the class token" : "", p.g.cls + p.g.H * p.g.W, p.g.cls + p.g.H * p.g.W);
  MIXGRAD_CHECK(p.g.B * ((p.g.C + 31) / 32) <= std::numeric_limits<int32_t>::max(),
                "{}: z has shape {}: B·C is too large (expected B·⌈C/32⌉ < 2^31)", op, shape_str(z.shape()));
  if (lengths.defined()) {
    check_lengths(op, lengths, p.g.B, z.device(), 1, p.g.N);
    p.lengths = lengths;
  }
  return p;
}

const int32_t* lengths_ptr(const S2Plan& p) { return p.lengths.defined() ? p.lengths.data<int32_t>() : nullptr; }

void check_like(const char* op, const char* what, const Tensor& t, const Shape& shape, const Tensor& z) {
  MIXGRAD_CHECK(t.defined(), "{}: {} is undefined (expected shape {})", op, what, shape_str(shape));
  MIXGRAD_CHECK(t.shape() == shape, "{}: {} has shape {}, expected {}", op, what, shape_str(t.shape()),
                shape_str(shape));
  MIXGRAD_CHECK(t.dtype() == z.dtype(), "{}: {} has dtype {}, expected z's dtype {}", op, what, t.dtype(), z.dtype());
  detail::common_device(op, {t, z});
}

Tensor branch_sum_forward(const Tensor& z, const S2Plan& p) {
  Tensor a = empty({p.g.B, p.g.C}, TensorOptions(z.dtype(), z.device()));
  if (z.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(z.dtype(), "s2_branch_sum", [&] {
      kernels::cpu::s2_branch_sum(a.data<scalar_t>(), z.data<scalar_t>(), lengths_ptr(p), p.g);
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    kernels::cuda::s2_branch_sum(a.data<float>(), z.data<float>(), lengths_ptr(p), p.g, detail::stream_of(z));
#else
    detail::no_cuda("s2_branch_sum");
#endif
  }
  return a;
}

Tensor branch_sum_backward(const Tensor& da, const S2Plan& p, DType dtype, Device device) {
  Tensor dz = empty(p.z_shape, TensorOptions(dtype, device));
  if (device.is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(dtype, "s2_branch_sum_backward", [&] {
      kernels::cpu::s2_branch_sum_backward(dz.data<scalar_t>(), da.data<scalar_t>(), lengths_ptr(p), p.g);
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    kernels::cuda::s2_branch_sum_backward(dz.data<float>(), da.data<float>(), lengths_ptr(p), p.g,
                                          detail::stream_of(da));
#else
    detail::no_cuda("s2_branch_sum_backward");
#endif
  }
  return dz;
}

Tensor combine_forward(const Tensor& z, const Tensor& abar, const S2Plan& p) {
  Tensor out = empty({p.g.B, p.g.N, p.g.C}, TensorOptions(z.dtype(), z.device()));
  if (z.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(z.dtype(), "s2_split_combine", [&] {
      kernels::cpu::s2_split_combine(out.data<scalar_t>(), z.data<scalar_t>(), abar.data<scalar_t>(), lengths_ptr(p),
                                     p.g);
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    kernels::cuda::s2_split_combine(out.data<float>(), z.data<float>(), abar.data<float>(), lengths_ptr(p), p.g,
                                    detail::stream_of(z));
#else
    detail::no_cuda("s2_split_combine");
#endif
  }
  return out;
}

std::vector<Tensor> combine_backward(const Tensor& dout, const Tensor& z, const Tensor& abar, const S2Plan& p) {
  Tensor dz = empty_like(z), dabar = empty_like(abar);
  if (z.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(z.dtype(), "s2_split_combine_backward", [&] {
      kernels::cpu::s2_split_combine_backward(dz.data<scalar_t>(), dabar.data<scalar_t>(), dout.data<scalar_t>(),
                                              z.data<scalar_t>(), abar.data<scalar_t>(), lengths_ptr(p), p.g);
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    kernels::cuda::s2_split_combine_backward(dz.data<float>(), dabar.data<float>(), dout.data<float>(), z.data<float>(),
                                             abar.data<float>(), lengths_ptr(p), p.g, detail::stream_of(z));
#else
    detail::no_cuda("s2_split_combine_backward");
#endif
  }
  return {dz, dabar};
}

}  // namespace

Tensor spatial_shift(const Tensor& x, int variant) {
  const char* op = variant == 2 ? "spatial_shift2" : "spatial_shift1";
  check_image(op, x, variant);
  Tensor y = run_shift(x, variant, false);
  if (autograd::needs_grad({x}))
    autograd::record(op, {x}, {y}, [variant, shape = x.shape()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      MIXGRAD_CHECK(g[0].defined() && g[0].shape() == shape, "spatial_shift{}: dY must have the input's shape {}",
                    variant, shape_str(shape));
      return {run_shift(g[0], variant, true)};
    });
  return y;
}

Tensor spatial_shift1(const Tensor& x) { return spatial_shift(x, 1); }
Tensor spatial_shift2(const Tensor& x) { return spatial_shift(x, 2); }

Tensor spatial_shift_backward(const Tensor& dy, int variant) {
  check_image("spatial_shift_backward", dy, variant);
  return run_shift(dy, variant, true);
}

Tensor s2_branch_sum(const Tensor& z, const S2Grid& grid, const Tensor& lengths) {
  S2Plan plan = plan_tokens("s2_branch_sum", z, grid, lengths);
  Tensor a = branch_sum_forward(z, plan);
  if (autograd::needs_grad({z}))
    autograd::record("s2_branch_sum", {z}, {a},
                     [plan = std::move(plan), dtype = z.dtype(),
                      device = z.device()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       MIXGRAD_CHECK(g[0].defined() && g[0].shape() == Shape({plan.g.B, plan.g.C}),
                                     "s2_branch_sum backward: dA must be [B, C] = [{}, {}]", plan.g.B, plan.g.C);
                       return {branch_sum_backward(g[0], plan, dtype, device)};
                     });
  return a;
}

Tensor s2_split_combine(const Tensor& z, const Tensor& abar, const S2Grid& grid, const Tensor& lengths) {
  constexpr const char* op = "s2_split_combine";
  S2Plan plan = plan_tokens(op, z, grid, lengths);
  check_like(op, "abar", abar, {plan.g.B, 3, plan.g.C}, z);
  Tensor out = combine_forward(z, abar, plan);
  if (autograd::needs_grad({z, abar}))
    autograd::record(op, {z, abar}, {out},
                     [z = z.detach(), abar = abar.detach(),
                      plan = std::move(plan)](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       check_like("s2_split_combine backward", "dOut", g[0], {plan.g.B, plan.g.N, plan.g.C}, z);
                       return combine_backward(g[0], z, abar, plan);
                     });
  return out;
}

S2SplitAttention s2_split_attention(const Tensor& z, const Tensor& w1, const Tensor& w2, const S2Grid& grid,
                                    const Tensor& lengths) {
  constexpr const char* op = "s2_split_attention";
  S2SplitAttention r;
  r.a = s2_branch_sum(z, grid, lengths);  // validates z, the grid and lengths
  const int64_t B = z.size(0), C = z.size(2) / 3;
  MIXGRAD_CHECK(w1.defined() && w1.shape() == Shape({C, C}), "{}: w1 has shape {}, expected [C, C] = [{}, {}]", op,
                w1.defined() ? shape_str(w1.shape()) : "undefined", C, C);
  MIXGRAD_CHECK(w2.defined() && w2.shape() == Shape({3 * C, C}), "{}: w2 has shape {}, expected [3C, C] = [{}, {}]", op,
                w2.defined() ? shape_str(w2.shape()) : "undefined", 3 * C, C);
  const Tensor h = linear(gelu(linear(r.a, w1)), w2);  // ĥ [B, 3C]: branch k is columns [kC, (k+1)C)
  r.abar = softmax(h.reshape({B, 3, C}), 1);
  r.out = s2_split_combine(z, r.abar, grid, lengths);
  return r;
}

}  // namespace mixgrad
