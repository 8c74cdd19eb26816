#include "tests/common/aft_reference.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace mixgrad::testing {
namespace {

std::vector<double> host(const Tensor& t) {
  if (!t.defined()) return {};
  return t.detach().to(kCPU).to(DType::f64).to_vector<double>();
}

// The bias of key tp for query t (0 outside the band), straight from the spec's index rules.
double bias_of(const std::string& variant, const std::vector<double>& w, int64_t N, int64_t s, int64_t h, int64_t t,
               int64_t tp, bool causal) {
  if (variant == "full") return w[size_t(t * N + tp)];
  if (variant == "local") return std::abs(t - tp) < s ? w[size_t(t * N + tp)] : 0.0;
  if (variant == "conv") {
    const int64_t delta = tp - t;
    if (causal) return (delta <= 0 && delta > -s) ? w[size_t(h * s + delta + s - 1)] : 0.0;
    const int64_t r = (s - 1) / 2;
    return std::abs(delta) <= r ? w[size_t(h * s + delta + r)] : 0.0;
  }
  return 0.0;
}

}  // namespace

Tensor aft_reference(const std::string& variant, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                     const std::vector<int32_t>& lengths, bool causal, int64_t window) {
  const int64_t B = q.size(0), N = q.size(1), D = q.size(2), H = variant == "conv" ? k.size(2) : D;
  const int64_t s = variant == "conv" ? bias.size(1) : window;
  const std::vector<double> qh = host(q), kh = host(k), vh = host(v), wh = host(bias);
  std::vector<double> y(size_t(B * N * D), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = lengths.empty() ? N : lengths[size_t(b)];
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < D; ++c) {
        const int64_t h = variant == "conv" ? c / (D / H) : 0;
        const int64_t key_col = variant == "conv" ? h : c, key_width = variant == "conv" ? H : D;
        const int64_t end = causal ? t + 1 : n;
        std::vector<double> logit(static_cast<size_t>(end));
        double m = -INFINITY;
        for (int64_t tp = 0; tp < end; ++tp) {
          logit[size_t(tp)] =
              kh[size_t((b * N + tp) * key_width + key_col)] + bias_of(variant, wh, N, s, h, t, tp, causal);
          m = std::max(m, logit[size_t(tp)]);
        }
        double num = 0, den = 0;
        for (int64_t tp = 0; tp < end; ++tp) {
          const double e = std::exp(logit[size_t(tp)] - m);
          den += e;
          num += e * vh[size_t((b * N + tp) * D + c)];
        }
        const double qv = qh[size_t((b * N + t) * D + c)];
        y[size_t((b * N + t) * D + c)] = num / den / (1.0 + std::exp(-qv));
      }
  }
  return from_vector<double>(y, {B, N, D});
}

}  // namespace mixgrad::testing
