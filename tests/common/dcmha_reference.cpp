#include "tests/common/dcmha_reference.h"

#include <cmath>
#include <limits>

namespace mixgrad::testing {

std::vector<uint8_t> dcmha_visibility(int64_t B, int64_t N, const std::vector<int32_t>& lengths, bool causal,
                                      int64_t window) {
  std::vector<uint8_t> vis(size_t(B * N * N));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t)
      for (int64_t s = 0; s < N; ++s) {
        bool ok = lengths.empty() || s < lengths[size_t(b)];
        if (causal && s > t) ok = false;
        if (window > 0 && (s <= t - window || (!causal && s >= t + window))) ok = false;
        vis[size_t((b * N + t) * N + s)] = ok ? 1 : 0;
      }
  return vis;
}

Tensor dcmha_invisible_mask(int64_t B, int64_t N, const std::vector<uint8_t>& visible) {
  std::vector<uint8_t> inv(visible.size());
  for (size_t i = 0; i < inv.size(); ++i) inv[i] = visible[i] ? 0 : 1;
  return from_vector<uint8_t>(inv, {B, 1, N, N});
}

Tensor compose_by_matrix(const Tensor& a, const Tensor& dyn, const Tensor& ws, ComposeStage stage,
                         const std::vector<uint8_t>& visible) {
  const int64_t B = a.size(0), H = a.size(1), N = a.size(2), R = (dyn.size(3) - 1) / 2;
  const std::vector<double> av = a.detach().to(kCPU).to(DType::f64).to_vector<double>();
  const std::vector<double> dv = dyn.detach().to(kCPU).to(DType::f64).to_vector<double>();
  const std::vector<double> wv =
      ws.defined() ? ws.detach().to(kCPU).to(DType::f64).to_vector<double>() : std::vector<double>();
  const int64_t qs = stage == ComposeStage::pre ? 0 : 2, ks = qs + 1, row = (2 * R + 1) * H;
  auto dyn_at = [&](int64_t slot, int64_t b, int64_t p, int64_t j, int64_t n) {
    return dv[size_t(((slot * B + b) * N + p) * row + j * H + n)];
  };
  std::vector<double> out(av.size(), 0.0), W(size_t(H * H));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t)
      for (int64_t s = 0; s < N; ++s) {
        if (!visible[size_t((b * N + t) * N + s)]) continue;
        for (int64_t m = 0; m < H; ++m)
          for (int64_t n = 0; n < H; ++n) {
            double w = (m == n ? 1.0 + dyn_at(qs, b, t, 2 * R, n) + dyn_at(ks, b, s, 2 * R, n) : 0.0);
            if (!wv.empty()) w += wv[size_t(m * H + n)];
            for (int64_t r = 0; r < R; ++r)
              w += dyn_at(qs, b, t, r, m) * dyn_at(qs, b, t, R + r, n) +
                   dyn_at(ks, b, s, r, m) * dyn_at(ks, b, s, R + r, n);
            W[size_t(m * H + n)] = w;
          }
        for (int64_t n = 0; n < H; ++n) {
          double acc = 0;
          for (int64_t m = 0; m < H; ++m) acc += av[size_t(((b * H + m) * N + t) * N + s)] * W[size_t(m * H + n)];
          out[size_t(((b * H + n) * N + t) * N + s)] = acc;
        }
      }
  return from_vector<double>(out, a.shape());
}

Tensor compose_composite(const Tensor& a, const Tensor& dyn, const Tensor& ws, ComposeStage stage,
                         const Tensor& invisible) {
  const int64_t B = a.size(0), H = a.size(1), N = a.size(2), R = (dyn.size(3) - 1) / 2;
  const int64_t qs = stage == ComposeStage::pre ? 0 : 2;
  auto part = [&](int64_t slot, int64_t j, int64_t rows) {  // [B, N, rows, H]
    return narrow(narrow(dyn, 0, slot, 1), 3, j, rows).reshape({B, N, rows, H});
  };
  const Tensor qw1 = part(qs, 0, R), qw2 = part(qs, R, R), qdd = part(qs, 2 * R, 1);
  const Tensor kw1 = part(qs + 1, 0, R), kw2 = part(qs + 1, R, R), kdd = part(qs + 1, 2 * R, 1);
  const Tensor at = permute(a, {0, 2, 3, 1});                                   // [B, T, S, H]
  const Tensor as = permute(a, {0, 3, 2, 1});                                   // [B, S, T, H]
  Tensor out = mul(at, add_scalar(add(qdd, permute(kdd, {0, 2, 1, 3})), 1.0));  // [B,T,1,H] + [B,1,S,H]
  out = add(out, matmul(matmul(at, transpose(qw1, 2, 3)), qw2));                // [B,T,S,R]·[B,T,R,H]
  out = add(out, permute(matmul(matmul(as, transpose(kw1, 2, 3)), kw2), {0, 2, 1, 3}));
  if (ws.defined()) out = add(out, matmul(at, ws));
  return masked_fill(permute(out, {0, 3, 1, 2}), invisible, 0.0);
}

Tensor dcmha_composite(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dyn, const Tensor& ws_pre,
                       const Tensor& ws_post, const std::vector<int32_t>& lengths, bool causal, int64_t window,
                       double scale) {
  const int64_t B = q.size(0), N = q.size(2);
  const Tensor invisible = dcmha_invisible_mask(B, N, dcmha_visibility(B, N, lengths, causal, window));
  const Tensor lg = matmul(mul_scalar(q, scale), transpose(k, 2, 3));
  const Tensor lg1 = compose_composite(lg, dyn, ws_pre, ComposeStage::pre, invisible);
  const Tensor p = softmax(masked_fill(lg1, invisible, -std::numeric_limits<double>::infinity()), -1);
  const Tensor p2 = compose_composite(p, dyn, ws_post, ComposeStage::post, invisible);
  return matmul(p2, v);
}

}  // namespace mixgrad::testing
