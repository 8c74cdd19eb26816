// scaled_dot_product_attention (engine/attention.h) on the CPU: against a naive float64 loop reference (shapes with
// T != Tk, bottom-right causal masks, key padding, fully masked rows), dropout semantics, finite differences, errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "engine/attention.h"
#include "engine/mixgrad.h"
#include "tests/common/check.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

struct Dims {
  int64_t b, h, t, tk, d;
};

// allowed(b, h, i, j): may query i attend to key j.
using Allowed = std::function<bool(int64_t, int64_t, int64_t, int64_t)>;

// softmax(q kᵀ · scale) v with masked scores dropped; a row with no visible key gives 0.
Tensor reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Allowed& allowed, double scale) {
  const Dims s{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
  const std::vector<double> Q = q.detach().to(DType::f64).to_vector<double>();
  const std::vector<double> K = k.detach().to(DType::f64).to_vector<double>();
  const std::vector<double> V = v.detach().to(DType::f64).to_vector<double>();
  std::vector<double> out(size_t(s.b * s.h * s.t * s.d), 0.0);
  for (int64_t b = 0; b < s.b; ++b)
    for (int64_t h = 0; h < s.h; ++h) {
      const int64_t bh = b * s.h + h;
      for (int64_t i = 0; i < s.t; ++i) {
        std::vector<double> score(size_t(s.tk), 0.0);
        std::vector<bool> vis(size_t(s.tk), false);
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < s.tk; ++j) {
          if (!allowed(b, h, i, j)) continue;
          double dot = 0;
          for (int64_t e = 0; e < s.d; ++e)
            dot += Q[size_t((bh * s.t + i) * s.d + e)] * K[size_t((bh * s.tk + j) * s.d + e)];
          score[size_t(j)] = dot * scale;
          vis[size_t(j)] = true;
          mx = std::max(mx, score[size_t(j)]);
        }
        double z = 0;
        for (int64_t j = 0; j < s.tk; ++j)
          if (vis[size_t(j)]) z += std::exp(score[size_t(j)] - mx);
        for (int64_t j = 0; j < s.tk; ++j) {
          if (!vis[size_t(j)]) continue;
          const double p = std::exp(score[size_t(j)] - mx) / z;
          for (int64_t e = 0; e < s.d; ++e)
            out[size_t((bh * s.t + i) * s.d + e)] += p * V[size_t((bh * s.tk + j) * s.d + e)];
        }
      }
    }
  return from_vector(out, {s.b, s.h, s.t, s.d}, TensorOptions(DType::f64));
}

Tensor u8_tensor(const std::vector<int>& values, const Shape& shape) {
  Tensor m = empty(shape, TensorOptions(DType::u8));
  for (size_t i = 0; i < values.size(); ++i) m.data<uint8_t>()[i] = uint8_t(values[i]);
  return m;
}

Tensor randn_of(const Shape& s, DType dt, bool rg = false) {
  Tensor t = randn(s, TensorOptions(dt)).detach();
  if (rg) t.requires_grad_();
  return t;
}

const Allowed kAll = [](int64_t, int64_t, int64_t, int64_t) { return true; };
Allowed causal_of(int64_t t, int64_t tk) {
  return [t, tk](int64_t, int64_t, int64_t i, int64_t j) { return j <= i + (tk - t); };
}

bool has_nan(const Tensor& x) {
  for (double v : x.detach().to(DType::f64).to_vector<double>())
    if (std::isnan(v)) return true;
  return false;
}

}  // namespace

TEST_CASE("sdpa matches a float64 loop reference, T != Tk, f32 and f64", "[vit][attention]") {
  manual_seed(11);
  const std::vector<Dims> shapes = {
      {1, 1, 1, 1, 1}, {2, 3, 5, 7, 4}, {1, 2, 8, 3, 5}, {2, 1, 6, 6, 8}, {1, 4, 17, 9, 3}};
  for (const Dims& s : shapes) {
    for (DType dt : {DType::f64, DType::f32}) {
      INFO("shape B" << s.b << " H" << s.h << " T" << s.t << " Tk" << s.tk << " d" << s.d << " dtype " << int(dt));
      Tensor q = randn_of({s.b, s.h, s.t, s.d}, dt), k = randn_of({s.b, s.h, s.tk, s.d}, dt),
             v = randn_of({s.b, s.h, s.tk, s.d}, dt);
      const Compare cmp = dt == DType::f64 ? Compare::forward_f64 : Compare::forward_f32;
      Tensor out = scaled_dot_product_attention(q, k, v);
      CHECK(out.shape() == Shape({s.b, s.h, s.t, s.d}));
      CHECK(out.dtype() == dt);
      REQUIRE_CLOSE(testing::all_close(
          out.to(DType::f64), reference_attention(q, k, v, kAll, 1.0 / std::sqrt(double(s.d))), tolerance(cmp)));
      // explicit scale
      Tensor out2 = scaled_dot_product_attention(q, k, v, Tensor(), false, 0.0, 0.37);
      REQUIRE_CLOSE(testing::all_close(out2.to(DType::f64), reference_attention(q, k, v, kAll, 0.37), tolerance(cmp)));
    }
  }
}

TEST_CASE("sdpa causal mask is bottom-right aligned", "[vit][attention]") {
  manual_seed(12);
  for (auto [t, tk] : std::vector<std::pair<int64_t, int64_t>>{{4, 4}, {3, 6}, {6, 3}, {1, 5}}) {
    INFO("T " << t << " Tk " << tk);
    Tensor q = randn_of({2, 2, t, 4}, DType::f64), k = randn_of({2, 2, tk, 4}, DType::f64),
           v = randn_of({2, 2, tk, 4}, DType::f64);
    Tensor out = scaled_dot_product_attention(q, k, v, Tensor(), true);
    REQUIRE_CLOSE(
        testing::all_close(out, reference_attention(q, k, v, causal_of(t, tk), 0.5), tolerance(Compare::forward_f64)));
  }
  // T=1 query against 5 keys sees all of them (decoding step): equals the unmasked result.
  Tensor q = randn_of({1, 1, 1, 3}, DType::f64), k = randn_of({1, 1, 5, 3}, DType::f64),
         v = randn_of({1, 1, 5, 3}, DType::f64);
  REQUIRE_CLOSE(testing::all_close(scaled_dot_product_attention(q, k, v, Tensor(), true),
                                   scaled_dot_product_attention(q, k, v), tolerance(Compare::forward_f64)));
}

TEST_CASE("sdpa key padding and full masks, combined with causal", "[vit][attention]") {
  manual_seed(13);
  const int64_t b = 2, h = 3, t = 4, tk = 5, d = 3;
  Tensor q = randn_of({b, h, t, d}, DType::f64), k = randn_of({b, h, tk, d}, DType::f64),
         v = randn_of({b, h, tk, d}, DType::f64);
  const std::vector<int> pad = {1, 1, 0, 1, 0, /**/ 1, 1, 1, 1, 1};
  Tensor kpm = u8_tensor(pad, {b, 1, 1, tk});
  Allowed padded = [&](int64_t bb, int64_t, int64_t, int64_t j) { return pad[size_t(bb * tk + j)] != 0; };
  REQUIRE_CLOSE(testing::all_close(scaled_dot_product_attention(q, k, v, kpm),
                                   reference_attention(q, k, v, padded, 1.0 / std::sqrt(3.0)),
                                   tolerance(Compare::forward_f64)));
  Allowed both = [&](int64_t bb, int64_t hh, int64_t i, int64_t j) {
    return padded(bb, hh, i, j) && causal_of(t, tk)(bb, hh, i, j);
  };
  REQUIRE_CLOSE(testing::all_close(scaled_dot_product_attention(q, k, v, kpm, true),
                                   reference_attention(q, k, v, both, 1.0 / std::sqrt(3.0)),
                                   tolerance(Compare::forward_f64)));
  // A full [B, H, T, Tk] mask, different per head and query.
  std::vector<int> full_mask(size_t(b * h * t * tk));
  for (size_t i = 0; i < full_mask.size(); ++i) full_mask[i] = int((i * 7 + 3) % 5 != 0);
  Allowed per_elem = [&](int64_t bb, int64_t hh, int64_t i, int64_t j) {
    return full_mask[size_t(((bb * h + hh) * t + i) * tk + j)] != 0;
  };
  REQUIRE_CLOSE(testing::all_close(scaled_dot_product_attention(q, k, v, u8_tensor(full_mask, {b, h, t, tk})),
                                   reference_attention(q, k, v, per_elem, 1.0 / std::sqrt(3.0)),
                                   tolerance(Compare::forward_f64)));
}

TEST_CASE("sdpa fully masked rows give zero output and zero gradients, never NaN", "[vit][attention]") {
  manual_seed(14);
  const int64_t b = 2, h = 2, t = 3, tk = 4, d = 5;
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor q = randn_of({b, h, t, d}, dt, true), k = randn_of({b, h, tk, d}, dt, true),
           v = randn_of({b, h, tk, d}, dt, true);
    // Batch 1 has every key padded; in batch 0, causal with T=3 > ... is fine; plus query row 0 of batch 0 masked.
    std::vector<int> m(size_t(b * t * tk), 1);
    for (int64_t j = 0; j < tk; ++j) m[size_t(0 * t * tk + 0 * tk + j)] = 0;  // batch 0, query 0: no key
    for (int64_t i = 0; i < t; ++i)
      for (int64_t j = 0; j < tk; ++j) m[size_t(1 * t * tk + i * tk + j)] = 0;  // batch 1: nothing visible
    Tensor mask = u8_tensor(m, {b, 1, t, tk});
    Tensor out = scaled_dot_product_attention(q, k, v, mask);
    REQUIRE_FALSE(has_nan(out));
    sum(mul(out, randn_of(out.shape(), dt))).backward();
    for (const Tensor* g : {&q, &k, &v}) {
      REQUIRE(g->grad().defined());
      REQUIRE_FALSE(has_nan(g->grad()));
    }
    const std::vector<double> o = out.detach().to(DType::f64).to_vector<double>();
    const std::vector<double> gq = q.grad().to(DType::f64).to_vector<double>();
    const std::vector<double> gk = k.grad().to(DType::f64).to_vector<double>();
    const std::vector<double> gv = v.grad().to(DType::f64).to_vector<double>();
    for (int64_t hh = 0; hh < h; ++hh)
      for (int64_t e = 0; e < d; ++e) {
        CHECK(o[size_t(((0 * h + hh) * t + 0) * d + e)] == 0.0);  // batch 0, query 0
        CHECK(gq[size_t(((0 * h + hh) * t + 0) * d + e)] == 0.0);
      }
    for (int64_t i = 0; i < h * t * d; ++i) {  // batch 1 entirely
      CHECK(o[size_t(h * t * d + i)] == 0.0);
      CHECK(gq[size_t(h * t * d + i)] == 0.0);
    }
    for (int64_t i = 0; i < h * tk * d; ++i) {
      CHECK(gk[size_t(h * tk * d + i)] == 0.0);
      CHECK(gv[size_t(h * tk * d + i)] == 0.0);
    }
    // The other rows still receive gradient.
    double other = 0;
    for (int64_t i = 0; i < h * tk * d; ++i) other += std::abs(gv[size_t(i)]);
    CHECK(other > 0);
  }
  // Causal with T > Tk: the first T - Tk queries see no key.
  Tensor q = randn_of({1, 1, 5, 2}, DType::f64, true), k = randn_of({1, 1, 3, 2}, DType::f64, true),
         v = randn_of({1, 1, 3, 2}, DType::f64, true);
  Tensor out = scaled_dot_product_attention(q, k, v, Tensor(), true);
  sum(out).backward();
  const std::vector<double> o = out.detach().to_vector<double>(), gq = q.grad().to_vector<double>();
  for (int i = 0; i < 4; ++i) {
    CHECK(o[size_t(i)] == 0.0);
    CHECK(gq[size_t(i)] == 0.0);
  }
  REQUIRE_FALSE(has_nan(k.grad()));
}

TEST_CASE("sdpa dropout: p = 0 is exact, p > 0 drops and rescales probabilities", "[vit][attention]") {
  manual_seed(15);
  const int64_t t = 6, tk = 8;
  Tensor q = randn_of({2, 2, t, tk}, DType::f64), k = randn_of({2, 2, tk, tk}, DType::f64);
  // v = identity (d = Tk) makes the output the (dropped) probability matrix itself.
  Tensor eye = zeros({tk, tk}, TensorOptions(DType::f64));
  for (int64_t j = 0; j < tk; ++j) eye.data<double>()[j * tk + j] = 1.0;
  Tensor v = expand(eye.reshape({1, 1, tk, tk}), {2, 2, tk, tk});
  Tensor probs = scaled_dot_product_attention(q, k, v);
  REQUIRE_CLOSE(testing::bit_equal(scaled_dot_product_attention(q, k, v, Tensor(), false, 0.0), probs));
  const double p = 0.5;
  manual_seed(99);
  Tensor dropped = scaled_dot_product_attention(q, k, v, Tensor(), false, p);
  manual_seed(99);
  Tensor again = scaled_dot_product_attention(q, k, v, Tensor(), false, p);
  REQUIRE_CLOSE(testing::bit_equal(dropped, again));  // same seed, same mask
  const std::vector<double> P = probs.to_vector<double>(), Dr = dropped.to_vector<double>();
  int64_t zeros_n = 0;
  for (size_t i = 0; i < P.size(); ++i) {
    const bool kept = std::abs(Dr[i] - P[i] / (1 - p)) <= 1e-12 * (1 + P[i]);
    const bool gone = Dr[i] == 0.0;
    REQUIRE((kept || gone));
    zeros_n += gone ? 1 : 0;
  }
  // About half of the 192 entries are dropped (binomial(192, 0.5): mean 96, sd 6.9; bounds are 5 sd).
  CHECK(zeros_n > 61);
  CHECK(zeros_n < 131);
  // Gradient through dropout flows only through kept entries: d out / d v with upstream ones.
  Tensor vv = v.detach().clone().detach();
  vv.requires_grad_();
  manual_seed(99);
  sum(scaled_dot_product_attention(q, k, vv, Tensor(), false, p)).backward();
  // dL/dv[j, e] = sum_i dropped[i, j]: compare with the dropped matrix's column sums.
  Tensor want = sum(dropped, {2}, true);  // [2, 2, 1, Tk] -> broadcast over e
  Tensor got = vv.grad();
  REQUIRE_CLOSE(testing::all_close(got, expand(transpose(want, 2, 3), got.shape()), tolerance(Compare::forward_f64)));
}

TEST_CASE("sdpa gradients match finite differences (float64)", "[vit][attention]") {
  manual_seed(16);
  Tensor q = testing::rand_f64({2, 2, 3, 4}), k = testing::rand_f64({2, 2, 5, 4}), v = testing::rand_f64({2, 2, 5, 4});
  REQUIRE_CLOSE(testing::gradcheck(
      [](const std::vector<Tensor>& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); }, {q, k, v}));
  Tensor mask = u8_tensor({1, 0, 1, 1, 1, /**/ 0, 0, 0, 0, 0}, {2, 1, 1, 5});
  REQUIRE_CLOSE(testing::gradcheck(
      [&](const std::vector<Tensor>& x) {
        return scaled_dot_product_attention(x[0], x[1], x[2], mask, true, 0.0, 0.7);
      },
      {q, k, v}));
  Tensor q2 = testing::rand_f64({1, 2, 6, 3});
  Tensor k2 = testing::rand_f64({1, 2, 4, 3}), v2 = testing::rand_f64({1, 2, 4, 3});
  REQUIRE_CLOSE(testing::gradcheck(
      [](const std::vector<Tensor>& x) { return scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), true); },
      {q2, k2, v2}));
}

TEST_CASE("sdpa rejects bad inputs with clear errors", "[vit][attention]") {
  Tensor q = randn({1, 2, 3, 4}), k = randn({1, 2, 5, 4}), v = randn({1, 2, 5, 4});
  CHECK_THROWS_WITH(scaled_dot_product_attention(randn({2, 3, 4}), k, v), Catch::Contains("[B, H, T, d]"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, randn({1, 2, 5, 3}), v), Catch::Contains("k and v"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, randn({1, 2, 4, 4})), Catch::Contains("k and v"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, v, ones({1, 1, 1, 5})), Catch::Contains("uint8"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, v, u8_tensor({1, 1, 1, 1}, {1, 1, 1, 4})),
                    Catch::Contains("broadcast"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, v, u8_tensor({1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {2, 1, 1, 5})),
                    Catch::Contains("does not broadcast"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k.to(DType::f64), v),
                    Catch::Contains("scaled_dot_product_attention"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, v, Tensor(), false, 1.5), Catch::Contains("dropout_p"));
}
