// The scale_norm and batch_norm ops (specs/lra.md §6.2): validation once into a plan, one backend interface over the
// CPU and CUDA kernels (the CUDA side allocates its workspaces), and tape nodes whose backward reuses the forward's
// saved statistics.
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/deferred_checks.h"
#include "engine/error.h"
#include "engine/valid_lengths.h"
#include "engine/norms.h"
#include "kernels/cpu/norm.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/csp.h"
#include "kernels/cuda/norm.h"
#endif

namespace mixgrad {
namespace {

template <class T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <class T>
struct CpuNorms {
  using scalar = T;
  void scale_forward(T* y, T* rstd, const T* x, const T* g, int64_t rows, int64_t cols, double eps) const {
    kernels::cpu::scale_norm_forward<T>(y, rstd, x, g, rows, cols, T(eps));
  }
  void scale_backward(T* dx, T* dg, const T* dy, const T* x, const T* rstd, const T* g, int64_t rows,
                      int64_t cols) const {
    kernels::cpu::scale_norm_backward<T>(dx, dg, dy, x, rstd, g, rows, cols);
  }
  void bn_forward(T* y, T* mean, T* rstd, T* running_mean, T* running_var, const T* x, const int32_t* lengths,
                  const T* weight, const T* bias, const kernels::BatchNormSizes& s, bool training, double momentum,
                  double eps, int32_t* /*too_few: checked on the host*/) const {
    kernels::cpu::batch_norm_forward<T>(y, mean, rstd, running_mean, running_var, x, lengths, weight, bias, s, training,
                                        T(momentum), T(eps));
  }
  void bn_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const int32_t* lengths, const T* mean,
                   const T* rstd, const T* weight, const kernels::BatchNormSizes& s, bool training) const {
    kernels::cpu::batch_norm_backward<T>(dx, dweight, dbias, dy, x, lengths, mean, rstd, weight, s, training);
  }
};

#ifdef MIXGRAD_WITH_CUDA
struct CudaNorms {
  using scalar = float;
  cudaStream_t stream;
  Device device;
  Tensor workspace(size_t bytes) const { return empty({int64_t(bytes)}, TensorOptions(DType::u8, device)); }
  void scale_forward(float* y, float* rstd, const float* x, const float* g, int64_t rows, int64_t cols,
                     double eps) const {
    kernels::cuda::scale_norm_forward(y, rstd, x, g, rows, cols, float(eps), stream);
  }
  void scale_backward(float* dx, float* dg, const float* dy, const float* x, const float* rstd, const float* g,
                      int64_t rows, int64_t cols) const {
    Tensor ws;  // the per-row partials of dg
    if (dg) ws = workspace(kernels::cuda::scale_norm_backward_workspace_bytes(rows));
    kernels::cuda::scale_norm_backward(dx, dg, dy, x, rstd, g, rows, cols, dg ? ws.raw_data() : nullptr, stream);
  }
  void bn_forward(float* y, float* mean, float* rstd, float* running_mean, float* running_var, const float* x,
                  const int32_t* lengths, const float* weight, const float* bias, const kernels::BatchNormSizes& s,
                  bool training, double momentum, double eps, int32_t* too_few) const {
    Tensor ws;  // the column sums of the batch statistics (eval mode needs none)
    if (training) ws = workspace(kernels::cuda::batch_norm_workspace_bytes(s));
    kernels::cuda::batch_norm_forward(y, mean, rstd, running_mean, running_var, x, lengths, weight, bias, s, training,
                                      float(momentum), float(eps), training ? ws.raw_data() : nullptr, too_few, stream);
  }
  void bn_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x, const int32_t* lengths,
                   const float* mean, const float* rstd, const float* weight, const kernels::BatchNormSizes& s,
                   bool training) const {
    Tensor ws = workspace(kernels::cuda::batch_norm_workspace_bytes(s));
    kernels::cuda::batch_norm_backward(dx, dweight, dbias, dy, x, lengths, mean, rstd, weight, s, training,
                                       ws.raw_data(), stream);
  }
};
#endif

// Calls f(backend) with the kernels of t's device and dtype.
template <class F>
void with_backend(const char* op, const Tensor& t, F&& f) {
  if (t.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(t.dtype(), op, [&] { f(CpuNorms<scalar_t>{}); });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    f(CudaNorms{detail::stream_of(t), t.device()});
#else
    detail::no_cuda(op);
#endif
  }
}

std::string shape_or_undefined(const Tensor& t) { return t.defined() ? shape_str(t.shape()) : "(undefined)"; }

void check_float_input(const char* op, const Tensor& x) {
  MIXGRAD_CHECK(x.defined(), "{}: x is undefined", op);
  MIXGRAD_CHECK(is_floating(x.dtype()), "{}: x has dtype {}, expected float32 or float64", op, x.dtype());
  detail::check_cuda_float(op, x);
}

// ---- ScaleNorm -----------------------------------------------------------------------------------------------------

struct ScaleNormPlan {
  int64_t rows = 0, cols = 0;
  double eps = 0;
};

ScaleNormPlan plan_scale_norm(const Tensor& x, const Tensor& g, double eps) {
  constexpr const char* op = "scale_norm";
  check_float_input(op, x);
  MIXGRAD_CHECK(x.dim() >= 1 && x.size(-1) >= 1,
                "{}: x has shape {}, expected at least one dimension and a last "
                "dimension >= 1",
                op, shape_str(x.shape()));
  MIXGRAD_CHECK(g.defined() && g.numel() == 1 && g.dim() <= 1,
                "{}: g has shape {}, expected one scalar (shape [1] or [])", op, shape_or_undefined(g));
  detail::check_same_dtype(op, {x, g});
  detail::common_device(op, {x, g});
  MIXGRAD_CHECK(eps >= 0, "{}: eps must be non-negative, got {}", op, eps);
  ScaleNormPlan p;
  p.cols = x.size(-1);
  p.rows = x.numel() / p.cols;
  p.eps = eps;
  return p;
}

// ---- BatchNorm -----------------------------------------------------------------------------------------------------

struct BatchNormPlan {
  kernels::BatchNormSizes sizes;
  Tensor lengths;  // int32 [B] on x's device, or undefined (every position valid)
  Tensor too_few;  // device flag for the deferred "fewer than 2 valid positions" check, or undefined
  bool training = true;
  double momentum = 0.1, eps = 1e-5;
};

void check_channel_vector(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  if (!t.defined()) return;
  MIXGRAD_CHECK(t.dim() == 1 && t.size(0) == x.size(2), "{}: {} has shape {}, expected [C] = [{}] (x is {})", op, name,
                shape_str(t.shape()), x.size(2), shape_str(x.shape()));
}

void check_running_stats(const char* op, const Tensor& running_mean, const Tensor& running_var, const Tensor& x,
                         bool training) {
  MIXGRAD_CHECK(running_mean.defined() == running_var.defined(),
                "{}: running_mean is {} but running_var is {} (expected both or neither)", op,
                running_mean.defined() ? "given" : "undefined", running_var.defined() ? "given" : "undefined");
  MIXGRAD_CHECK(training || running_mean.defined(),
                "{}: eval mode (training = false) needs running_mean and running_var, got none", op);
  check_channel_vector(op, "running_mean", running_mean, x);
  check_channel_vector(op, "running_var", running_var, x);
  for (const Tensor* t : {&running_mean, &running_var})
    MIXGRAD_CHECK(!t->defined() || !t->requires_grad(),
                  "{}: the running statistics are buffers updated in place; they must not require grad", op);
}

BatchNormPlan plan_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                              const Tensor& running_var, const Tensor& lengths, bool training, double momentum,
                              double eps) {
  constexpr const char* op = "batch_norm";
  check_float_input(op, x);
  MIXGRAD_CHECK(x.dim() == 3, "{}: x must be 3-D [B, L, C], got shape {}", op, shape_str(x.shape()));
  MIXGRAD_CHECK(x.size(0) >= 1 && x.size(1) >= 1 && x.size(2) >= 1, "{}: x has shape {}; expected B, L and C all >= 1",
                op, shape_str(x.shape()));
  MIXGRAD_CHECK(x.size(1) <= std::numeric_limits<int32_t>::max(), "{}: L = {} is too large (expected L <= 2^31 - 1)",
                op, x.size(1));
  check_channel_vector(op, "weight", weight, x);
  check_channel_vector(op, "bias", bias, x);
  check_running_stats(op, running_mean, running_var, x, training);
  detail::check_same_dtype(op, {x, weight, bias, running_mean, running_var});
  detail::common_device(op, {x, weight, bias, running_mean, running_var});
  MIXGRAD_CHECK(momentum >= 0 && momentum <= 1, "{}: momentum = {}, expected a value in [0, 1]", op, momentum);
  MIXGRAD_CHECK(eps >= 0, "{}: eps must be non-negative, got {}", op, eps);
  BatchNormPlan p;
  p.sizes = {x.size(0), x.size(1), x.size(2)};
  p.training = training, p.momentum = momentum, p.eps = eps;
  int64_t valid = p.sizes.rows();
  if (lengths.defined()) {
    const detail::ValidLengths v = detail::prepare_valid_lengths(op, lengths, x, "x");
    p.lengths = v.lengths, valid = v.total;
  }
  if (!training) return p;
  MIXGRAD_CHECK(valid < 0 || valid >= 2,
                "{}: training mode needs more than one valid position per channel for the batch variance, got 1 "
                "(x {}); use eval mode or a larger batch",
                op, shape_str(x.shape()));
  if (valid < 0 && p.sizes.batch == 1) {  // lengths on the device: one sample of length 1 is found there
    p.too_few = zeros({1}, TensorOptions(DType::i32, x.device()));
    detail::defer_check(p.too_few, fmt::format("{}: training mode needs more than one valid position per channel for "
                                               "the batch variance, got 1 (x {})",
                                               op, shape_str(x.shape())));
  }
  return p;
}

}  // namespace

Tensor scale_norm(const Tensor& x, const Tensor& g, double eps) {
  const ScaleNormPlan p = plan_scale_norm(x, g, eps);
  Tensor y = empty_like(x), rstd = empty({p.rows}, TensorOptions(x.dtype(), x.device()));
  with_backend("scale_norm", x, [&](const auto& k) {
    using T = typename std::decay_t<decltype(k)>::scalar;
    k.scale_forward(ptr<T>(y), ptr<T>(rstd), ptr<T>(x), ptr<T>(g), p.rows, p.cols, p.eps);
  });
  if (autograd::needs_grad({x, g})) {
    const bool gx = x.requires_grad(), gg = g.requires_grad();
    autograd::record(
        "scale_norm", {x, g}, {y}, [x = x.detach(), g = g.detach(), rstd, p, gx, gg](const std::vector<Tensor>& grads) {
          const Tensor& dy = grads[0];
          MIXGRAD_CHECK(dy.defined() && dy.shape() == x.shape() && dy.dtype() == x.dtype(),
                        "scale_norm backward: dy must have x's shape {} and dtype {}", shape_str(x.shape()), x.dtype());
          Tensor dx = gx ? empty_like(x) : Tensor(), dg = gg ? empty_like(g) : Tensor();
          with_backend("scale_norm backward", x, [&](const auto& k) {
            using T = typename std::decay_t<decltype(k)>::scalar;
            k.scale_backward(ptr<T>(dx), ptr<T>(dg), ptr<T>(dy), ptr<T>(x), ptr<T>(rstd), ptr<T>(g), p.rows, p.cols);
          });
          return std::vector<Tensor>{dx, dg};
        });
  }
  return y;
}

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, const Tensor& lengths, bool training, double momentum, double eps) {
  const BatchNormPlan p = plan_batch_norm(x, weight, bias, running_mean, running_var, lengths, training, momentum, eps);
  const TensorOptions channel_opt(x.dtype(), x.device());
  Tensor y = empty_like(x), mean = empty({p.sizes.channels}, channel_opt),
         rstd = empty({p.sizes.channels}, channel_opt);
  with_backend("batch_norm", x, [&](const auto& k) {
    using T = typename std::decay_t<decltype(k)>::scalar;
    k.bn_forward(ptr<T>(y), ptr<T>(mean), ptr<T>(rstd), ptr<T>(running_mean), ptr<T>(running_var), ptr<T>(x),
                 ptr<int32_t>(p.lengths), ptr<T>(weight), ptr<T>(bias), p.sizes, p.training, p.momentum, p.eps,
                 ptr<int32_t>(p.too_few));
  });
  if (autograd::needs_grad({x, weight, bias})) {
    const bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad(),
               gb = bias.defined() && bias.requires_grad();
    Tensor w = weight.defined() ? weight.detach() : Tensor();
    autograd::record(
        "batch_norm", {x, weight, bias}, {y},
        [x = x.detach(), w = std::move(w), mean, rstd, p, gx, gw, gb](const std::vector<Tensor>& grads) {
          const Tensor& dy = grads[0];
          MIXGRAD_CHECK(dy.defined() && dy.shape() == x.shape() && dy.dtype() == x.dtype(),
                        "batch_norm backward: dy must have x's shape {} and dtype {}", shape_str(x.shape()), x.dtype());
          const TensorOptions opt(x.dtype(), x.device());
          Tensor dx = gx ? empty_like(x) : Tensor(), dw = empty({p.sizes.channels}, opt),
                 db = empty({p.sizes.channels}, opt);
          with_backend("batch_norm backward", x, [&](const auto& k) {
            using T = typename std::decay_t<decltype(k)>::scalar;
            k.bn_backward(ptr<T>(dx), ptr<T>(dw), ptr<T>(db), ptr<T>(dy), ptr<T>(x), ptr<int32_t>(p.lengths),
                          ptr<T>(mean), ptr<T>(rstd), ptr<T>(w), p.sizes, p.training);
          });
          return std::vector<Tensor>{dx, gw ? dw : Tensor(), gb ? db : Tensor()};
        });
  }
  return y;
}

}  // namespace mixgrad
