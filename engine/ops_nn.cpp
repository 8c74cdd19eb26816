// Softmax/log-softmax, fused layer_norm and rms_norm, fused cross-entropy, embedding.
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/deferred_checks.h"
#include "engine/ops.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/loss.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/softmax.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/check.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/loss.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/softmax.h"
#endif

namespace mixgrad {
namespace {

void check_float(const char* op, const Tensor& x) {
  MIXGRAD_CHECK(x.defined(), "{}: undefined input", op);
  MIXGRAD_CHECK(is_floating(x.dtype()), "{}: expected a floating-point tensor, got {}", op, x.dtype());
  detail::check_cuda_float(op, x);
}

#ifdef MIXGRAD_WITH_CUDA
Tensor workspace(size_t bytes, Device d) { return empty({int64_t(bytes)}, TensorOptions(DType::u8, d)); }
#endif

// Softmax family over the last dimension of a contiguous tensor.
Tensor softmax_last(const Tensor& x, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  const int64_t cols = x.dim() == 0 ? 1 : x.size(-1), rows = cols == 0 ? 0 : x.numel() / cols;
  Tensor y = empty_like(x);
  if (y.numel() > 0) {
    if (x.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(x.dtype(), op, [&] {
        if (log)
          kernels::cpu::log_softmax_forward(y.data<scalar_t>(), x.data<scalar_t>(), rows, cols);
        else
          kernels::cpu::softmax_forward(y.data<scalar_t>(), x.data<scalar_t>(), rows, cols);
      });
    } else {
#ifdef MIXGRAD_WITH_CUDA
      if (log)
        kernels::cuda::log_softmax_forward(y.data<float>(), x.data<float>(), rows, cols, detail::stream_of(x));
      else
        kernels::cuda::softmax_forward(y.data<float>(), x.data<float>(), rows, cols, detail::stream_of(x));
#endif
    }
  }
  if (autograd::needs_grad({x})) {
    autograd::record(op, {x}, {y}, [y = y.detach(), rows, cols, log, op](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor dx = empty_like(y);
      if (dx.numel() > 0) {
        if (dx.device().is_cpu()) {
          MIXGRAD_DISPATCH_FLOATING(dx.dtype(), op, [&] {
            if (log)
              kernels::cpu::log_softmax_backward(dx.data<scalar_t>(), g[0].data<scalar_t>(), y.data<scalar_t>(), rows, cols);
            else
              kernels::cpu::softmax_backward(dx.data<scalar_t>(), g[0].data<scalar_t>(), y.data<scalar_t>(), rows, cols);
          });
        } else {
#ifdef MIXGRAD_WITH_CUDA
          if (log)
            kernels::cuda::log_softmax_backward(dx.data<float>(), g[0].data<float>(), y.data<float>(), rows, cols,
                                                detail::stream_of(dx));
          else
            kernels::cuda::softmax_backward(dx.data<float>(), g[0].data<float>(), y.data<float>(), rows, cols,
                                            detail::stream_of(dx));
#endif
        }
      }
      return {dx};
    });
  }
  return y;
}

Tensor softmax_dim(const Tensor& x, int64_t dim, bool log) {
  check_float(log ? "log_softmax" : "softmax", x);
  if (x.dim() == 0) return softmax_last(x, log);
  dim = detail::wrap_dim(log ? "log_softmax" : "softmax", dim, x.dim());
  if (dim == x.dim() - 1) return softmax_last(x, log);
  return transpose(softmax_last(transpose(x, dim, -1), log), dim, -1);
}

// rows × cols view for normalisation over the trailing `normalized_shape`.
std::pair<int64_t, int64_t> norm_rows_cols(const char* op, const Tensor& x, const Shape& ns, const Tensor& w,
                                           const Tensor& b) {
  MIXGRAD_CHECK(!ns.empty() && ns.size() <= x.shape().size() &&
                    std::equal(ns.begin(), ns.end(), x.shape().end() - int64_t(ns.size())),
                "{}: input {} does not end in normalized_shape {}", op, shape_str(x.shape()), shape_str(ns));
  if (w.defined())
    MIXGRAD_CHECK(w.shape() == ns, "{}: weight has shape {}, expected normalized_shape {}", op, shape_str(w.shape()),
                  shape_str(ns));
  if (b.defined())
    MIXGRAD_CHECK(b.shape() == ns, "{}: bias has shape {}, expected normalized_shape {}", op, shape_str(b.shape()),
                  shape_str(ns));
  detail::common_device(op, {x, w, b});
  detail::check_same_dtype(op, {x, w, b});
  const int64_t cols = shape_numel(ns);
  return {cols == 0 ? 0 : x.numel() / cols, cols};
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_dim(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_dim(x, dim, true); }

Tensor layer_norm(const Tensor& x, const Shape& ns, const Tensor& weight, const Tensor& bias, double eps) {
  check_float("layer_norm", x);
  MIXGRAD_CHECK(eps >= 0, "layer_norm: eps must be non-negative, got {}", eps);
  const auto [rows, cols] = norm_rows_cols("layer_norm", x, ns, weight, bias);
  Tensor y = empty_like(x);
  Tensor mean_t = empty({rows}, TensorOptions(x.dtype(), x.device()));
  Tensor rstd_t = empty({rows}, TensorOptions(x.dtype(), x.device()));
  if (y.numel() > 0) {
    if (x.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(x.dtype(), "layer_norm", [&] {
        using T = scalar_t;
        kernels::cpu::layer_norm_forward(y.data<T>(), mean_t.data<T>(), rstd_t.data<T>(), x.data<T>(),
                                         weight.defined() ? weight.data<T>() : nullptr,
                                         bias.defined() ? bias.data<T>() : nullptr, rows, cols, T(eps));
      });
    } else {
      MIXGRAD_IF_CUDA(kernels::cuda::layer_norm_forward(y.data<float>(), mean_t.data<float>(), rstd_t.data<float>(),
                                                        x.data<float>(), weight.defined() ? weight.data<float>() : nullptr,
                                                        bias.defined() ? bias.data<float>() : nullptr, rows, cols,
                                                        float(eps), detail::stream_of(x));)
    }
  }
  if (autograd::needs_grad({x, weight, bias})) {
    const bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
    autograd::record("layer_norm", {x, weight, bias}, {y},
                     [x = x.detach(), w = weight.defined() ? weight.detach() : Tensor(), mean_t, rstd_t, rows, cols, gx, gw,
                      gb, ns](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       Tensor dx = empty_like(x);  // the kernel always writes dx
                       Tensor dw = w.defined() ? empty(ns, TensorOptions(x.dtype(), x.device())) : Tensor();
                       Tensor db = w.defined() || gb ? empty(ns, TensorOptions(x.dtype(), x.device())) : Tensor();
                       if (x.numel() > 0) {
                         if (x.device().is_cpu()) {
                           MIXGRAD_DISPATCH_FLOATING(x.dtype(), "layer_norm", [&] {
                             using T = scalar_t;
                             kernels::cpu::layer_norm_backward(dx.data<T>(), dw.defined() ? dw.data<T>() : nullptr,
                                                               db.defined() ? db.data<T>() : nullptr, g[0].data<T>(),
                                                               x.data<T>(), mean_t.data<T>(), rstd_t.data<T>(),
                                                               w.defined() ? w.data<T>() : nullptr, rows, cols);
                           });
                         } else {
#ifdef MIXGRAD_WITH_CUDA
                           Tensor ws = workspace(kernels::cuda::layer_norm_backward_workspace_bytes(rows, cols), x.device());
                           kernels::cuda::layer_norm_backward(dx.data<float>(), dw.defined() ? dw.data<float>() : nullptr,
                                                              db.defined() ? db.data<float>() : nullptr, g[0].data<float>(),
                                                              x.data<float>(), mean_t.data<float>(), rstd_t.data<float>(),
                                                              w.defined() ? w.data<float>() : nullptr, rows, cols,
                                                              ws.raw_data(), detail::stream_of(x));
#endif
                         }
                       } else {
                         if (dw.defined()) dw.fill_(0.0);
                         if (db.defined()) db.fill_(0.0);
                       }
                       return {gx ? dx : Tensor(), gw ? dw : Tensor(), gb ? db : Tensor()};
                     });
  }
  return y;
}

Tensor rms_norm(const Tensor& x, const Shape& ns, const Tensor& weight, double eps) {
  check_float("rms_norm", x);
  MIXGRAD_CHECK(eps >= 0, "rms_norm: eps must be non-negative, got {}", eps);
  const auto [rows, cols] = norm_rows_cols("rms_norm", x, ns, weight, Tensor());
  Tensor y = empty_like(x);
  Tensor rstd_t = empty({rows}, TensorOptions(x.dtype(), x.device()));
  if (y.numel() > 0) {
    if (x.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(x.dtype(), "rms_norm", [&] {
        using T = scalar_t;
        kernels::cpu::rms_norm_forward(y.data<T>(), rstd_t.data<T>(), x.data<T>(),
                                       weight.defined() ? weight.data<T>() : nullptr, rows, cols, T(eps));
      });
    } else {
      MIXGRAD_IF_CUDA(kernels::cuda::rms_norm_forward(y.data<float>(), rstd_t.data<float>(), x.data<float>(),
                                                      weight.defined() ? weight.data<float>() : nullptr, rows, cols,
                                                      float(eps), detail::stream_of(x));)
    }
  }
  if (autograd::needs_grad({x, weight})) {
    const bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad();
    autograd::record("rms_norm", {x, weight}, {y},
                     [x = x.detach(), w = weight.defined() ? weight.detach() : Tensor(), rstd_t, rows, cols, gx, gw,
                      ns](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       Tensor dx = empty_like(x);
                       Tensor dw = w.defined() ? empty(ns, TensorOptions(x.dtype(), x.device())) : Tensor();
                       if (x.numel() > 0) {
                         if (x.device().is_cpu()) {
                           MIXGRAD_DISPATCH_FLOATING(x.dtype(), "rms_norm", [&] {
                             using T = scalar_t;
                             kernels::cpu::rms_norm_backward(dx.data<T>(), dw.defined() ? dw.data<T>() : nullptr,
                                                             g[0].data<T>(), x.data<T>(), rstd_t.data<T>(),
                                                             w.defined() ? w.data<T>() : nullptr, rows, cols);
                           });
                         } else {
#ifdef MIXGRAD_WITH_CUDA
                           Tensor ws = workspace(kernels::cuda::rms_norm_backward_workspace_bytes(rows, cols), x.device());
                           kernels::cuda::rms_norm_backward(dx.data<float>(), dw.defined() ? dw.data<float>() : nullptr,
                                                            g[0].data<float>(), x.data<float>(), rstd_t.data<float>(),
                                                            w.defined() ? w.data<float>() : nullptr, rows, cols,
                                                            ws.raw_data(), detail::stream_of(x));
#endif
                         }
                       } else if (dw.defined()) {
                         dw.fill_(0.0);
                       }
                       return {gx ? dx : Tensor(), gw ? dw : Tensor()};
                     });
  }
  return y;
}

Tensor cross_entropy(const Tensor& logits_in, const Tensor& target_in, int64_t ignore_index, double label_smoothing,
                     const std::string& reduction) {
  check_float("cross_entropy", logits_in);
  MIXGRAD_CHECK(reduction == "mean" || reduction == "sum" || reduction == "none",
                "cross_entropy: reduction must be mean, sum or none, got \"{}\"", reduction);
  MIXGRAD_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, "cross_entropy: label_smoothing must be in [0, 1], got {}",
                label_smoothing);
  MIXGRAD_CHECK(target_in.dtype() == DType::i64, "cross_entropy: targets must be int64 class indices, got {}",
                target_in.dtype());
  detail::common_device("cross_entropy", {logits_in, target_in});
  const bool single = logits_in.dim() == 1;
  Tensor logits = single ? logits_in.unsqueeze(0) : logits_in;
  Tensor target = single ? target_in.reshape({1}) : target_in;
  MIXGRAD_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, C] or [C], got {}", shape_str(logits_in.shape()));
  const int64_t rows = logits.size(0), classes = logits.size(1);
  MIXGRAD_CHECK(target.dim() == 1 && target.size(0) == rows,
                "cross_entropy: targets of shape {} for logits {}; expected [{}]", shape_str(target_in.shape()),
                shape_str(logits_in.shape()), rows);
  MIXGRAD_CHECK(classes > 0, "cross_entropy: logits have no classes ({})", shape_str(logits.shape()));
  Tensor loss = empty({rows}, TensorOptions(logits.dtype(), logits.device()));
  Tensor lse = empty({rows}, TensorOptions(logits.dtype(), logits.device()));
  if (rows > 0) {
    if (logits.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(logits.dtype(), "cross_entropy", [&] {
        using T = scalar_t;
        try {
          kernels::cpu::cross_entropy_forward(loss.data<T>(), lse.data<T>(), logits.data<T>(), target.data<int64_t>(), rows,
                                              classes, ignore_index, T(label_smoothing));
        } catch (const std::invalid_argument& e) {
          throw Error(fmt::format("cross_entropy: {} (expected targets in [0, {}) or ignore_index {})", e.what(), classes,
                                  ignore_index));
        }
      });
    } else {
#ifdef MIXGRAD_WITH_CUDA
      Tensor flag = zeros({1}, TensorOptions(DType::i32, logits.device()));
      kernels::cuda::cross_entropy_forward(loss.data<float>(), lse.data<float>(), logits.data<float>(),
                                           target.data<int64_t>(), rows, classes, ignore_index, float(label_smoothing),
                                           flag.data<int32_t>(), detail::stream_of(logits));
      // Read at the next read-back, not here: a per-call read would make the host wait for the GPU every step.
      detail::defer_check(flag, fmt::format("cross_entropy: a target is outside [0, {}) and is not ignore_index {}",
                                            classes, ignore_index));
#endif
    }
  }
  // The mean divides by the non-ignored count (as PyTorch does): on the CPU counted here, on CUDA by a kernel into a
  // device scalar 1/count, so that the host never reads the targets back.
  int64_t counted = rows;
  Tensor inv_count;
  if (reduction == "mean") {
    if (target.device().is_cpu()) {
      const int64_t* t = target.data<int64_t>();
      counted = 0;
      for (int64_t i = 0; i < rows; ++i) counted += t[i] != ignore_index;
    } else {
#ifdef MIXGRAD_WITH_CUDA
      inv_count = empty({}, TensorOptions(logits.dtype(), logits.device()));
      kernels::cuda::cross_entropy_inverse_count(inv_count.data<float>(), target.data<int64_t>(), rows, ignore_index,
                                                 detail::stream_of(inv_count));
#endif
    }
  }
  if (autograd::needs_grad({logits})) {
    autograd::record("cross_entropy", {logits}, {loss},
                     [logits = logits.detach(), lse, target = target.detach(), rows, classes, ignore_index,
                      label_smoothing](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       Tensor d = empty_like(logits);
                       if (rows > 0) {
                         if (d.device().is_cpu()) {
                           MIXGRAD_DISPATCH_FLOATING(d.dtype(), "cross_entropy", [&] {
                             using T = scalar_t;
                             kernels::cpu::cross_entropy_backward(d.data<T>(), g[0].data<T>(), logits.data<T>(), lse.data<T>(),
                                                                  target.data<int64_t>(), rows, classes, ignore_index,
                                                                  T(label_smoothing));
                           });
                         } else {
#ifdef MIXGRAD_WITH_CUDA
                           Tensor flag = zeros({1}, TensorOptions(DType::i32, d.device()));
                           kernels::cuda::cross_entropy_backward(d.data<float>(), g[0].data<float>(), logits.data<float>(),
                                                                 lse.data<float>(), target.data<int64_t>(), rows, classes,
                                                                 ignore_index, float(label_smoothing), flag.data<int32_t>(),
                                                                 detail::stream_of(d));
#endif
                         }
                       }
                       return {d};
                     });
  }
  Tensor out;
  if (reduction == "none")
    out = single ? loss.reshape({}) : loss;
  else if (reduction == "sum")
    out = sum(loss);
  else if (inv_count.defined())
    out = mul(sum(loss), inv_count);
  else
    out = mul_scalar(sum(loss), counted > 0 ? 1.0 / double(counted) : NAN);
  if (single && reduction != "none") return out;
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  check_float("embedding", weight);
  MIXGRAD_CHECK(weight.dim() == 2, "embedding: weight must be [num_embeddings, dim], got {}", shape_str(weight.shape()));
  MIXGRAD_CHECK(indices.dtype() == DType::i64, "embedding: indices must be int64, got {}", indices.dtype());
  detail::common_device("embedding", {weight, indices});
  const int64_t num = weight.size(0), dim = weight.size(1), n = indices.numel();
  Shape out_shape = indices.shape();
  out_shape.push_back(dim);
  Tensor y = empty(out_shape, TensorOptions(weight.dtype(), weight.device()));
  if (n > 0 && dim > 0) {
    if (weight.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(weight.dtype(), "embedding", [&] {
        try {
          kernels::cpu::embedding_forward(y.data<scalar_t>(), weight.data<scalar_t>(), indices.data<int64_t>(), n, num, dim);
        } catch (const std::invalid_argument& e) {
          throw Error(fmt::format("embedding: {} (expected indices in [0, {}))", e.what(), num));
        }
      });
    } else {
#ifdef MIXGRAD_WITH_CUDA
      Tensor flag = zeros({1}, TensorOptions(DType::i32, weight.device()));
      kernels::cuda::embedding_forward(y.data<float>(), weight.data<float>(), indices.data<int64_t>(), n, num, dim,
                                       flag.data<int32_t>(), detail::stream_of(weight));
      detail::defer_check(flag, fmt::format("embedding: an index is outside [0, {})", num));
#endif
    }
  }
  if (autograd::needs_grad({weight})) {
    autograd::record("embedding", {weight}, {y},
                     [idx = indices.detach(), num, dim, n](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       Tensor dw = empty({num, dim}, TensorOptions(g[0].dtype(), g[0].device()));
                       if (dw.device().is_cpu()) {
                         MIXGRAD_DISPATCH_FLOATING(dw.dtype(), "embedding", [&] {
                           kernels::cpu::embedding_backward(dw.data<scalar_t>(), g[0].data<scalar_t>(), idx.data<int64_t>(),
                                                            n, num, dim);
                         });
                       } else {
#ifdef MIXGRAD_WITH_CUDA
                         Tensor flag = zeros({1}, TensorOptions(DType::i32, dw.device()));
                         Tensor ws = workspace(kernels::cuda::embedding_backward_workspace_bytes(n, num), dw.device());
                         kernels::cuda::embedding_backward(dw.data<float>(), g[0].data<float>(), idx.data<int64_t>(), n, num,
                                                           dim, ws.raw_data(), flag.data<int32_t>(), detail::stream_of(dw));
#endif
                       }
                       return {dw};
                     });
  }
  return y;
}

}  // namespace mixgrad
