// Tensor comparison and finite-difference gradient checks (engine/gradcheck.h).
#include "engine/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mixgrad {

namespace {
std::vector<double> host_doubles(const Tensor& t) {
  Tensor h = t.detach().to(kCPU);
  if (h.dtype() != DType::f64) h = h.to(DType::f64);
  return h.to_vector<double>();
}

std::string multi_index(const Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(shape.size());
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    idx[size_t(d)] = flat % shape[size_t(d)];
    flat /= shape[size_t(d)];
  }
  return fmt::format("[{}]", fmt::join(idx, ", "));
}
}  // namespace

CloseResult all_close(const Tensor& actual, const Tensor& expected, Tolerance tol) {
  CloseResult r;
  if (actual.shape() != expected.shape()) {
    r.ok = false;
    r.message =
        fmt::format("shape mismatch: actual {} vs expected {}", shape_str(actual.shape()), shape_str(expected.shape()));
    return r;
  }
  const std::vector<double> a = host_doubles(actual), e = host_doubles(expected);
  double max_abs = 0, max_rel = 0;
  int64_t worst = -1, bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if ((std::isnan(a[i]) && std::isnan(e[i])) || a[i] == e[i]) continue;  // NaN==NaN, equal infinities
    const double d = std::abs(a[i] - e[i]);
    const double rel = d / std::max(std::abs(e[i]), 1e-300);
    const bool fail = !(d <= tol.atol + tol.rtol * std::abs(e[i])) || std::isnan(a[i]) != std::isnan(e[i]);
    if (fail) ++bad;
    if (fail && (worst < 0 || d > max_abs || std::isnan(d))) worst = int64_t(i);
    max_abs = std::max(max_abs, std::isnan(d) ? INFINITY : d);
    if (std::abs(e[i]) > tol.atol) max_rel = std::max(max_rel, rel);
  }
  r.ok = bad == 0;
  r.message = fmt::format("{} of {} elements outside rtol={} atol={}; max abs error {:.3g}, max rel error {:.3g}", bad,
                          a.size(), tol.rtol, tol.atol, max_abs, max_rel);
  if (worst >= 0)
    r.message += fmt::format("; worst at flat index {} {}: actual {:.10g} expected {:.10g}", worst,
                             multi_index(actual.shape(), worst), a[size_t(worst)], e[size_t(worst)]);
  return r;
}

CloseResult bit_equal(const Tensor& actual, const Tensor& expected) {
  CloseResult r;
  if (actual.shape() != expected.shape() || actual.dtype() != expected.dtype()) {
    r.ok = false;
    r.message = fmt::format("mismatch: actual {} {} vs expected {} {}", shape_str(actual.shape()), actual.dtype(),
                            shape_str(expected.shape()), expected.dtype());
    return r;
  }
  Tensor a = actual.detach().to(kCPU), e = expected.detach().to(kCPU);
  const size_t es = dtype_size(a.dtype());
  const auto* pa = static_cast<const unsigned char*>(a.raw_data());
  const auto* pe = static_cast<const unsigned char*>(e.raw_data());
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < a.numel(); ++i)
    if (std::memcmp(pa + size_t(i) * es, pe + size_t(i) * es, es) != 0) {
      if (first < 0) first = i;
      ++bad;
    }
  r.ok = bad == 0;
  r.message = fmt::format("{} of {} elements differ bitwise", bad, a.numel());
  if (first >= 0) {
    const std::vector<double> da = host_doubles(a), de = host_doubles(e);
    r.message += fmt::format("; first at {} {}: {:.10g} vs {:.10g}", first, multi_index(a.shape(), first),
                             da[size_t(first)], de[size_t(first)]);
  }
  return r;
}

Tensor rand_f64(const Shape& shape, double lo, double hi, bool requires_grad) {
  Tensor t = rand(shape, TensorOptions(DType::f64));
  {
    NoGradGuard ng;
    t = add_scalar(mul_scalar(t, hi - lo), lo);
  }
  t = t.detach();
  if (requires_grad) t.requires_grad_();
  return t;
}

namespace {
// The finite-difference gradient of sum(f(inputs) · w) with respect to inputs[k], perturbing it in place.
Tensor numeric_gradient(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                        size_t k, const Tensor& w, double eps) {
  NoGradGuard ng;
  const Tensor& x = inputs[k];
  std::vector<double> numeric(size_t(x.numel()));
  double* px = x.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double orig = px[i];
    px[i] = orig + eps;
    const double lp = sum(mul(f(inputs), w)).item();
    px[i] = orig - eps;
    const double lm = sum(mul(f(inputs), w)).item();
    px[i] = orig;
    numeric[size_t(i)] = (lp - lm) / (2 * eps);
  }
  return from_vector(numeric, x.shape());
}
}  // namespace

CloseResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                      double eps, Tolerance tol) {
  CloseResult r;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (x.defined() && x.requires_grad() && (x.dtype() != DType::f64 || !x.device().is_cpu())) {
      r.ok = false;
      r.message = fmt::format("gradcheck: input {} is {} on {}; inputs that require grad must be float64 CPU tensors",
                              k, x.dtype(), x.device());
      return r;
    }
  }
  for (const Tensor& x : inputs)
    if (x.defined()) x.impl().grad = nullptr;
  Tensor y = f(inputs);
  Tensor w;
  {
    NoGradGuard ng;
    w = rand_f64(y.shape(), 0.5, 1.5, false);
  }
  sum(mul(y, w)).backward();
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    const Tensor analytic = x.grad().defined() ? x.grad() : zeros_like(x);
    const CloseResult c = all_close(analytic, numeric_gradient(f, inputs, k, w, eps), tol);
    if (!c.ok) {
      r.ok = false;
      r.message += fmt::format("input {} (shape {}): {}\n", k, shape_str(x.shape()), c.message);
    }
  }
  for (const Tensor& x : inputs)
    if (x.defined()) x.impl().grad = nullptr;
  if (r.ok) r.message = "gradients match finite differences";
  return r;
}

}  // namespace mixgrad
