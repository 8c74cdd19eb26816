// Multi-tensor optimiser primitives: builds the pointer/size tables the kernels take (device copies on CUDA).
#include "engine/optim_ops.h"

#include <cmath>
#include <cstring>

#include "engine/backend.h"
#include "engine/ops.h"
#include "kernels/cpu/optim.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/check.h"
#include "kernels/cuda/optim.h"
#endif

namespace mixgrad {
namespace {

// Pointer tables for the multi-tensor kernels; on CUDA they are copied into one device buffer.
struct Tables {
  std::vector<void*> ptrs;  // `lists` pointer lists of num_tensors each, back to back
  std::vector<int64_t> sizes, starts;
  int num_tensors = 0;
  int64_t total = 0;
  Tensor device_buf;  // on CUDA: [ptr lists | sizes | starts] as raw bytes
  void* const* dev_ptrs = nullptr;
  const int64_t* dev_sizes = nullptr;
  const int64_t* dev_starts = nullptr;

  void* const* list(int k) const { return (dev_ptrs ? dev_ptrs : ptrs.data()) + size_t(k) * size_t(num_tensors); }
  const int64_t* sz() const { return dev_sizes ? dev_sizes : sizes.data(); }
  const int64_t* st() const { return dev_starts ? dev_starts : starts.data(); }
};

Tables make_tables(const char* op, const std::vector<std::vector<const Tensor*>>& lists, const std::vector<Tensor>& shape_of) {
  Tables t;
  t.num_tensors = int(shape_of.size());
  for (const Tensor& p : shape_of) {
    t.starts.push_back(t.total);
    t.sizes.push_back(p.numel());
    t.total += p.numel();
  }
  for (const auto& l : lists) {
    MIXGRAD_CHECK(int(l.size()) == t.num_tensors, "{}: tensor lists of different lengths ({} vs {})", op, l.size(),
                  t.num_tensors);
    for (int i = 0; i < t.num_tensors; ++i) {
      const Tensor* x = l[size_t(i)];
      if (x && x->defined()) {
        MIXGRAD_CHECK(x->shape() == shape_of[size_t(i)].shape(), "{}: tensor {} has shape {}, expected {}", op, i,
                      shape_str(x->shape()), shape_str(shape_of[size_t(i)].shape()));
        MIXGRAD_CHECK(x->device() == shape_of[0].device() && x->dtype() == shape_of[0].dtype(),
                      "{}: tensor {} is {} on {}, expected {} on {}", op, i, x->dtype(), x->device(), shape_of[0].dtype(),
                      shape_of[0].device());
      }
      t.ptrs.push_back(x && x->defined() ? x->raw_data() : nullptr);
    }
  }
#ifdef MIXGRAD_WITH_CUDA
  if (!shape_of.empty() && shape_of[0].device().is_cuda()) {
    const size_t pbytes = t.ptrs.size() * sizeof(void*), sbytes = t.sizes.size() * sizeof(int64_t);
    t.device_buf = empty({int64_t(pbytes + 2 * sbytes)}, TensorOptions(DType::u8, shape_of[0].device()));
    auto* base = static_cast<char*>(t.device_buf.raw_data());
    std::vector<char> host(pbytes + 2 * sbytes);
    std::memcpy(host.data(), t.ptrs.data(), pbytes);
    std::memcpy(host.data() + pbytes, t.sizes.data(), sbytes);
    std::memcpy(host.data() + pbytes + sbytes, t.starts.data(), sbytes);
    // Pageable source: the copy is staged before the call returns, so `host` may die right after.
    MIXGRAD_CUDA_CHECK(cudaMemcpyAsync(base, host.data(), host.size(), cudaMemcpyHostToDevice,
                                       detail::stream_of(t.device_buf)));
    t.dev_ptrs = reinterpret_cast<void* const*>(base);
    t.dev_sizes = reinterpret_cast<const int64_t*>(base + pbytes);
    t.dev_starts = reinterpret_cast<const int64_t*>(base + pbytes + sbytes);
  }
#endif
  return t;
}

std::vector<const Tensor*> ptrs_of(const std::vector<Tensor>& v) {
  std::vector<const Tensor*> out;
  for (const Tensor& t : v) out.push_back(&t);
  return out;
}

}  // namespace

void adamw_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avg,
                 const std::vector<Tensor>& exp_avg_sq, const AdamWHyper& h, int64_t step) {
  if (params.empty()) return;
  MIXGRAD_CHECK(step >= 1, "adamw_step_: step must be >= 1, got {}", step);
  MIXGRAD_CHECK(is_floating(params[0].dtype()), "adamw_step_: parameters must be floating point, got {}", params[0].dtype());
  detail::check_cuda_float("adamw_step_", params[0]);
  Tables t = make_tables("adamw_step_", {ptrs_of(params), ptrs_of(grads), ptrs_of(exp_avg), ptrs_of(exp_avg_sq)}, params);
  const double bc1 = 1.0 - std::pow(h.beta1, double(step)), bc2 = 1.0 - std::pow(h.beta2, double(step));
  if (params[0].device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(params[0].dtype(), "adamw_step_", [&] {
      using T = scalar_t;
      kernels::cpu::adamw_step<T>(reinterpret_cast<T* const*>(t.list(0)), reinterpret_cast<const T* const*>(t.list(1)),
                                  reinterpret_cast<T* const*>(t.list(2)), reinterpret_cast<T* const*>(t.list(3)), t.sz(),
                                  t.st(), t.num_tensors, t.total, T(h.lr), T(h.beta1), T(h.beta2), T(h.eps),
                                  T(h.weight_decay), T(bc1), T(bc2));
    });
    return;
  }
#ifdef MIXGRAD_WITH_CUDA
  kernels::cuda::adamw_step(reinterpret_cast<float* const*>(t.list(0)), reinterpret_cast<const float* const*>(t.list(1)),
                            reinterpret_cast<float* const*>(t.list(2)), reinterpret_cast<float* const*>(t.list(3)),
                            t.sz(), t.st(), t.num_tensors, t.total, float(h.lr), float(h.beta1), float(h.beta2),
                            float(h.eps), float(h.weight_decay), float(bc1), float(bc2), detail::stream_of(params[0]));
#endif
}

void sgd_step_(const Tensor& param, const Tensor& grad, const Tensor& buf, const SGDHyper& h, bool first_step) {
  detail::common_device("sgd_step_", {param, grad, buf});
  detail::check_same_dtype("sgd_step_", {param, grad, buf});
  MIXGRAD_CHECK(grad.shape() == param.shape(), "sgd_step_: gradient shape {} does not match parameter shape {}",
                shape_str(grad.shape()), shape_str(param.shape()));
  MIXGRAD_CHECK(h.momentum == 0 || (buf.defined() && buf.shape() == param.shape()),
                "sgd_step_: momentum {} needs a momentum buffer of the parameter's shape", h.momentum);
  MIXGRAD_CHECK(!h.nesterov || (h.momentum > 0 && h.dampening == 0), "sgd_step_: Nesterov needs momentum > 0 and zero dampening");
  detail::check_cuda_float("sgd_step_", param);
  const int64_t n = param.numel();
  if (n == 0) return;
  if (param.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(param.dtype(), "sgd_step_", [&] {
      using T = scalar_t;
      kernels::cpu::sgd_step<T>(param.data<T>(), grad.data<T>(), buf.defined() ? buf.data<T>() : nullptr, n, T(h.lr),
                                T(h.momentum), T(h.dampening), T(h.weight_decay), h.nesterov, first_step);
    });
    return;
  }
#ifdef MIXGRAD_WITH_CUDA
  kernels::cuda::sgd_step(param.data<float>(), grad.data<float>(), buf.defined() ? buf.data<float>() : nullptr, n,
                          float(h.lr), float(h.momentum), float(h.dampening), float(h.weight_decay), h.nesterov,
                          first_step, detail::stream_of(param));
#endif
}

namespace {
// Sum of squares of all tensors as a 0-d tensor, plus the tables (reused by the clipping scale).
Tensor sum_squares(const std::vector<Tensor>& ts, Tables& t) {
  const Tensor& ref = ts[0];
  t = make_tables("clip_grad_norm_", {ptrs_of(ts)}, ts);
  Tensor result = empty({}, TensorOptions(ref.dtype(), ref.device()));
  if (ref.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(ref.dtype(), "clip_grad_norm_", [&] {
      using T = scalar_t;
      kernels::cpu::sum_squares_multi<T>(nullptr, result.data<T>(), reinterpret_cast<const T* const*>(t.list(0)), t.sz(),
                                         t.st(), t.num_tensors, t.total);
    });
    return result;
  }
#ifdef MIXGRAD_WITH_CUDA
  Tensor ws = empty({kernels::cuda::sum_squares_multi_workspace_bytes(t.total) / 4 + 1}, TensorOptions(DType::f32, ref.device()));
  kernels::cuda::sum_squares_multi(ws.data<float>(), result.data<float>(), reinterpret_cast<const float* const*>(t.list(0)),
                                   t.sz(), t.st(), t.num_tensors, t.total, detail::stream_of(ref));
#endif
  return result;
}

std::vector<Tensor> defined_only(const std::vector<Tensor>& ts, const char* op) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts)
    if (t.defined()) out.push_back(t);
  if (!out.empty()) {
    detail::common_device(op, out);
    detail::check_same_dtype(op, out);
    detail::check_cuda_float(op, out[0]);
    MIXGRAD_CHECK(is_floating(out[0].dtype()), "{}: expected floating-point tensors, got {}", op, out[0].dtype());
  }
  return out;
}
}  // namespace

Tensor global_norm(const std::vector<Tensor>& tensors) {
  std::vector<Tensor> ts = defined_only(tensors, "global_norm");
  if (ts.empty()) return zeros({});
  Tables t;
  return sqrt(sum_squares(ts, t));
}

Tensor clip_grad_norm_(const std::vector<Tensor>& grads, double max_norm) {
  MIXGRAD_CHECK(max_norm > 0, "clip_grad_norm_: max_norm must be positive, got {}", max_norm);
  std::vector<Tensor> ts = defined_only(grads, "clip_grad_norm_");
  if (ts.empty()) return zeros({});
  Tables t;
  Tensor sq = sum_squares(ts, t);
  Tensor coef = empty({}, TensorOptions(sq.dtype(), sq.device()));
  if (sq.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(sq.dtype(), "clip_grad_norm_", [&] {
      using T = scalar_t;
      kernels::cpu::clip_coef<T>(coef.data<T>(), sq.data<T>(), T(max_norm));
      kernels::cpu::scale_multi<T>(reinterpret_cast<T* const*>(t.list(0)), t.sz(), t.st(), t.num_tensors, t.total,
                                   *coef.data<T>());
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    kernels::cuda::clip_coef(coef.data<float>(), sq.data<float>(), float(max_norm), detail::stream_of(sq));
    kernels::cuda::scale_multi(reinterpret_cast<float* const*>(t.list(0)), t.sz(), t.st(), t.num_tensors, t.total,
                               coef.data<float>(), detail::stream_of(sq));
#endif
  }
  return sqrt(sq);
}

}  // namespace mixgrad
