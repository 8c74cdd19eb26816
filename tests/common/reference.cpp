// Helpers for the engine op tests (see reference.h).
#include "tests/common/reference.h"

#include <algorithm>
#include <random>

namespace mixgrad::testing {

std::vector<double> uniform(int64_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = dist(gen);
  return v;
}

std::vector<double> rounded(std::vector<double> v, DType dt) {
  if (dt == DType::f32)
    for (double& x : v) x = double(float(x));
  return v;
}

Tensor make(const std::vector<double>& v, const Shape& s, DType dt) {
  Tensor t = from_vector<double>(v, s);
  return dt == DType::f64 ? t : t.to(dt);
}

Tensor make_leaf(const std::vector<double>& v, const Shape& s) {
  Tensor t = make(v, s);
  t.requires_grad_();
  return t;
}

Tolerance fwd_tol(DType dt) { return tolerance(dt == DType::f64 ? Compare::forward_f64 : Compare::forward_f32); }

std::vector<double> values(const Tensor& t) {
  Tensor h = t.detach();
  return h.dtype() == DType::f64 ? h.to_vector<double>() : h.to(DType::f64).to_vector<double>();
}

std::vector<int64_t> unravel(int64_t flat, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = flat % s[d];
    flat /= s[d];
  }
  return idx;
}

int64_t ravel(const std::vector<int64_t>& idx, const Shape& s) {
  int64_t flat = 0;
  for (size_t d = 0; d < s.size(); ++d) flat = flat * s[d] + idx[d];
  return flat;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace mixgrad::testing
