// S2-MLPv2 (specs/mixers.md §1, §6 items 1–2): the spatial shifts against the clamp formula and against explicit
// quarter-slice loops, edges, out-of-place, the backward rule of §1.2 (L = 1, 2, 5); S2Attention against a naive
// float64 implementation that materialises x_all [B, 3, N, C] (with a class token and padded lengths), `a` as a sum,
// the branch softmax, finite differences through the four Linears and through each op; errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "apps/vit/vit_app.h"
#include "engine/mixgrad.h"
#include "engine/s2mlp.h"
#include "models/lra_transformer.h"
#include "nn/mixers/s2mlpv2_mixer.h"
#include "tests/common/check.h"
#include "tests/common/vit_helpers.h"

using namespace mixgrad;
using Catch::Contains;
using testing::Compare;
using testing::tolerance;

namespace {

// (δh, δw) of quarter q in spatial_shift<variant>, written out as in §1.2.
constexpr int kDh[3][4] = {{0, 0, 0, 0}, {1, -1, 0, 0}, {0, 0, 1, -1}};
constexpr int kDw[3][4] = {{0, 0, 0, 0}, {0, 0, 1, -1}, {1, -1, 0, 0}};

int quarter(int64_t c, int64_t C) { return c < C / 4 ? 0 : c < C / 2 ? 1 : c < 3 * C / 4 ? 2 : 3; }
int64_t clampi(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// x [B, H, W, C] flattened.
struct Image {
  int64_t B, H, W, C;
  std::vector<double> v;
  double& at(int64_t b, int64_t i, int64_t j, int64_t c) { return v[size_t(((b * H + i) * W + j) * C + c)]; }
  Tensor tensor(DType dt = DType::f64) const { return from_vector<double>(v, {B, H, W, C}).to(dt); }
};

Image random_image(int64_t B, int64_t H, int64_t W, int64_t C, uint64_t seed) {
  manual_seed(seed);
  return {B, H, W, C, randn({B * H * W * C}, TensorOptions(DType::f64)).to_vector<double>()};
}

// The clamp formula of §1.2.
Image shift_by_clamp(Image x, int variant) {
  Image y = x;
  for (int64_t b = 0; b < x.B; ++b)
    for (int64_t i = 0; i < x.H; ++i)
      for (int64_t j = 0; j < x.W; ++j)
        for (int64_t c = 0; c < x.C; ++c) {
          const int q = quarter(c, x.C);
          y.at(b, i, j, c) =
              x.at(b, clampi(i - kDh[variant][q], 0, x.H - 1), clampi(j - kDw[variant][q], 0, x.W - 1), c);
        }
  return y;
}

// Explicit slice assignments per quarter, as the reference code writes them (functional: out = copy of x, then
// out[1:] = x[:-1] for a +1 move, out[:-1] = x[1:] for a −1 move, on the quarter's channels).
Image shift_by_slices(Image x, int variant) {
  Image y = x;
  const int64_t C = x.C, qb[5] = {0, C / 4, C / 2, 3 * C / 4, C};
  for (int q = 0; q < 4; ++q)
    for (int64_t b = 0; b < x.B; ++b)
      for (int64_t c = qb[q]; c < qb[q + 1]; ++c) {
        const int dh = kDh[variant][q], dw = kDw[variant][q];
        for (int64_t i = 0; i < x.H; ++i)
          for (int64_t j = 0; j < x.W; ++j) {
            if (dh == 1 && i >= 1) y.at(b, i, j, c) = x.at(b, i - 1, j, c);
            if (dh == -1 && i + 1 < x.H) y.at(b, i, j, c) = x.at(b, i + 1, j, c);
            if (dw == 1 && j >= 1) y.at(b, i, j, c) = x.at(b, i, j - 1, c);
            if (dw == -1 && j + 1 < x.W) y.at(b, i, j, c) = x.at(b, i, j + 1, c);
          }
      }
  return y;
}

// dx of one line of length L under a move of `step` (§1.2 Backward, written case by case).
std::vector<double> line_backward(const std::vector<double>& dy, int step) {
  const int64_t L = int64_t(dy.size());
  std::vector<double> dx(dy.size(), 0.0);
  if (L == 1) return dy;  // the identity
  if (step > 0) {
    dx[0] = dy[0] + dy[1];
    for (int64_t i = 1; i <= L - 2; ++i) dx[size_t(i)] = dy[size_t(i + 1)];
    dx[size_t(L - 1)] = 0;
  } else {
    dx[size_t(L - 1)] = dy[size_t(L - 1)] + dy[size_t(L - 2)];
    for (int64_t i = 1; i <= L - 2; ++i) dx[size_t(i)] = dy[size_t(i - 1)];
    dx[0] = 0;
  }
  return dx;
}

// The §1.2 backward applied line by line: each channel moves along one axis, the other axis is the identity.
Image shift_backward_by_rule(Image dy, int variant) {
  Image dx = dy;
  for (int64_t b = 0; b < dy.B; ++b)
    for (int64_t c = 0; c < dy.C; ++c) {
      const int q = quarter(c, dy.C), dh = kDh[variant][q], dw = kDw[variant][q];
      if (dh != 0)
        for (int64_t j = 0; j < dy.W; ++j) {
          std::vector<double> line;
          for (int64_t i = 0; i < dy.H; ++i) line.push_back(dy.at(b, i, j, c));
          const std::vector<double> g = line_backward(line, dh);
          for (int64_t i = 0; i < dy.H; ++i) dx.at(b, i, j, c) = g[size_t(i)];
        }
      else
        for (int64_t i = 0; i < dy.H; ++i) {
          std::vector<double> line;
          for (int64_t j = 0; j < dy.W; ++j) line.push_back(dy.at(b, i, j, c));
          const std::vector<double> g = line_backward(line, dw);
          for (int64_t j = 0; j < dy.W; ++j) dx.at(b, i, j, c) = g[size_t(j)];
        }
    }
  return dx;
}

// ---- naive S2Attention ------------------------------------------------------------------------------------------

nn::MixerContext s2_ctx(int64_t dim, int64_t h, int64_t w, bool cls, int64_t inner = 0) {
  nn::MixerContext c;
  c.dim = dim;
  c.inner_dim = inner;
  c.grid_h = h, c.grid_w = w;
  c.has_cls_token = cls;
  c.seq_len = (cls ? 1 : 0) + h * w;
  return c;
}

std::vector<double> host(const Tensor& t) { return testing::host_values(t); }

// Row-major y [rows, out] = x [rows, in] · Wᵀ + bias (bias may be empty).
std::vector<double> affine(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& bias,
                           int64_t rows, int64_t in, int64_t out) {
  std::vector<double> y(size_t(rows * out), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = bias.empty() ? 0.0 : bias[size_t(o)];
      for (int64_t i = 0; i < in; ++i) s += x[size_t(r * in + i)] * w[size_t(o * in + i)];
      y[size_t(r * out + o)] = s;
    }
  return y;
}

struct NaiveS2 {
  std::vector<double> a, abar, out, y;  // [B, C], [B, 3, C], [B, N, C], [B, N, D]
};

// x_all [3, N, C] of sample b, materialised: branch k reads z at the clamped position of its quarter's move, the line
// lengths counted from the valid grid positions (raster index < ng); the class token and padded tokens read
// themselves (padded rows are never used).
std::vector<double> naive_x_all(const std::vector<double>& z, int64_t b, int64_t N, int64_t C, int64_t H, int64_t W,
                                int64_t cls, int64_t n) {
  const int64_t ng = std::max<int64_t>(0, n - cls);
  const auto present = [&](int64_t i, int64_t j) { return i * W + j < ng; };
  std::vector<double> xa(size_t(3 * N * C), 0.0);
  for (int k = 0; k < 3; ++k)
    for (int64_t p = 0; p < n; ++p)
      for (int64_t c = 0; c < C; ++c) {
        int64_t src = p;
        if (k < 2 && p >= cls) {
          const int64_t g = p - cls, i = g / W, j = g % W, q = quarter(c, C);
          int64_t rowlen = 0, collen = 0;
          for (int64_t t = 0; t < W; ++t) rowlen += present(i, t);
          for (int64_t t = 0; t < H; ++t) collen += present(t, j);
          const int64_t si = clampi(i - kDh[k + 1][q], 0, collen - 1), sj = clampi(j - kDw[k + 1][q], 0, rowlen - 1);
          src = cls + si * W + sj;
        }
        xa[size_t((k * N + p) * C + c)] = z[size_t(((b * N + src) * 3 + k) * C + c)];
      }
  return xa;
}

NaiveS2 naive_s2attention(nn::S2MlpV2Mixer& m, const Tensor& x, const std::vector<int32_t>& lengths) {
  const int64_t B = x.size(0), N = x.size(1), D = m.dim, C = m.inner_dim, H = m.grid.h, W = m.grid.w;
  const int64_t cls = m.grid.cls_token ? 1 : 0;
  const std::vector<double> z = affine(host(x), host(m.mlp1->weight), host(m.mlp1->bias), B * N, D, 3 * C);
  const std::vector<double> w1 = host(m.split_attention->mlp1->weight), w2 = host(m.split_attention->mlp2->weight);
  NaiveS2 r;
  r.a.assign(size_t(B * C), 0.0), r.abar.assign(size_t(B * 3 * C), 0.0), r.out.assign(size_t(B * N * C), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = lengths.empty() ? N : lengths[size_t(b)];
    const std::vector<double> xa = naive_x_all(z, b, N, C, H, W, cls, n);
    std::vector<double> a(size_t(C), 0.0);
    for (int k = 0; k < 3; ++k)
      for (int64_t p = 0; p < n; ++p)
        for (int64_t c = 0; c < C; ++c) a[size_t(c)] += xa[size_t((k * N + p) * C + c)];
    std::vector<double> u = affine(a, w1, {}, 1, C, C);
    for (double& v : u) v = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    const std::vector<double> h = affine(u, w2, {}, 1, C, 3 * C);
    for (int64_t c = 0; c < C; ++c) {
      r.a[size_t(b * C + c)] = a[size_t(c)];
      const double mx = std::max({h[size_t(c)], h[size_t(C + c)], h[size_t(2 * C + c)]});
      double e[3], s = 0;
      for (int k = 0; k < 3; ++k) s += e[k] = std::exp(h[size_t(k * C + c)] - mx);
      for (int k = 0; k < 3; ++k) r.abar[size_t((b * 3 + k) * C + c)] = e[k] / s;
      for (int64_t p = 0; p < n; ++p)
        for (int k = 0; k < 3; ++k) r.out[size_t((b * N + p) * C + c)] += e[k] / s * xa[size_t((k * N + p) * C + c)];
    }
  }
  r.y = affine(r.out, host(m.mlp2->weight), host(m.mlp2->bias), B * N, C, D);
  return r;
}

struct AttnCase {
  const char* name;
  int64_t B, N, D, inner, H, W;
  bool cls;
  std::vector<int32_t> lengths;  // empty: full
};

const std::vector<AttnCase>& attn_cases() {
  static const std::vector<AttnCase> cases = {
      {"2x4 grid, full", 2, 8, 8, 0, 2, 4, false, {}},
      {"2x4 grid, lengths 8/5/3, inner 12", 3, 8, 8, 12, 2, 4, false, {8, 5, 3}},
      {"3x3 grid + class token, C 7", 2, 10, 7, 0, 3, 3, true, {}},
      {"3x3 grid + class token, lengths 10/6/1/2", 4, 10, 6, 10, 3, 3, true, {10, 6, 1, 2}},
      {"5x2 grid, N 7 shorter than the grid", 2, 7, 5, 4, 5, 2, false, {7, 4}},
      {"1x5 grid (H = 1)", 2, 5, 4, 0, 1, 5, false, {5, 2}},
      {"5x1 grid (W = 1) + class token", 2, 6, 4, 0, 5, 1, true, {6, 3}},
      {"1x1 grid", 3, 1, 9, 0, 1, 1, false, {}},
  };
  return cases;
}

std::shared_ptr<nn::S2MlpV2Mixer> f64_mixer(const AttnCase& tc, uint64_t seed) {
  manual_seed(seed);
  auto m = std::make_shared<nn::S2MlpV2Mixer>(s2_ctx(tc.D, tc.H, tc.W, tc.cls, tc.inner));
  m->to(DType::f64);
  m->eval();
  NoGradGuard ng;
  for (Tensor p : m->parameters()) p.copy_(mul_scalar(randn(p.shape(), TensorOptions(DType::f64)), 0.4));
  return m;
}

Tensor lengths_of(const std::vector<int32_t>& l) {
  return l.empty() ? Tensor() : from_vector<int32_t>(l, {int64_t(l.size())}, TensorOptions(DType::i32));
}

Tensor tensor_of(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s); }

}  // namespace

TEST_CASE("spatial shift: the op equals the clamp formula and explicit quarter slices; edges keep their value",
          "[s2mlp]") {
  for (int64_t C : {4, 7, 10, 64})
    for (int64_t H : {1, 2, 5})
      for (int64_t W : {1, 2, 5})
        for (int variant : {1, 2}) {
          INFO("C " << C << ", H " << H << ", W " << W << ", shift" << variant);
          const Image x = random_image(2, H, W, C, uint64_t(C * 100 + H * 10 + W));
          const Image want = shift_by_clamp(x, variant);
          REQUIRE(want.v == shift_by_slices(x, variant).v);
          for (DType dt : {DType::f64, DType::f32}) {
            const Tensor xt = x.tensor(dt), before = xt.clone();
            const Tensor y = variant == 1 ? spatial_shift1(xt) : spatial_shift2(xt);
            REQUIRE_CLOSE(testing::bit_equal(y, want.tensor(dt)));
            REQUIRE_CLOSE(testing::bit_equal(xt, before));  // out of place: the input is unchanged
          }
          // Edges keep their own value: the first row/column under a +1 move, the last under a −1 move.
          Image y = want;
          for (int64_t c = 0; c < C; ++c) {
            const int q = quarter(c, C), dh = kDh[variant][q], dw = kDw[variant][q];
            for (int64_t t = 0; t < (dh != 0 ? W : H); ++t) {
              const int64_t e = (dh > 0 || dw > 0) ? 0 : (dh != 0 ? H - 1 : W - 1);
              const int64_t i = dh != 0 ? e : t, j = dh != 0 ? t : e;
              REQUIRE(y.at(1, i, j, c) == x.v[size_t(((1 * H + i) * W + j) * C + c)]);
            }
          }
        }
}

TEST_CASE("spatial shift: shift1 moves Q0 down, Q1 up, Q2 right, Q3 left; shift2 swaps the axes", "[s2mlp]") {
  // One channel per quarter on a 3×3 grid with values 10·i + j.
  Image x{1, 3, 3, 4, std::vector<double>(36)};
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t c = 0; c < 4; ++c) x.at(0, i, j, c) = double(10 * i + j);
  const std::vector<double> y1 = spatial_shift1(x.tensor()).to_vector<double>();
  const std::vector<double> y2 = spatial_shift2(x.tensor()).to_vector<double>();
  const auto at = [](const std::vector<double>& v, int64_t i, int64_t j, int64_t c) {
    return v[size_t((i * 3 + j) * 4 + c)];
  };
  CHECK(at(y1, 1, 1, 0) == 1.0);   // down: row 1 reads row 0
  CHECK(at(y1, 1, 1, 1) == 21.0);  // up: row 1 reads row 2
  CHECK(at(y1, 1, 1, 2) == 10.0);  // right: column 1 reads column 0
  CHECK(at(y1, 1, 1, 3) == 12.0);  // left: column 1 reads column 2
  CHECK(at(y2, 1, 1, 0) == 10.0);
  CHECK(at(y2, 1, 1, 1) == 12.0);
  CHECK(at(y2, 1, 1, 2) == 1.0);
  CHECK(at(y2, 1, 1, 3) == 21.0);
  CHECK(at(y1, 0, 2, 0) == 2.0);   // row 0 keeps its value under the downward move
  CHECK(at(y1, 2, 0, 1) == 20.0);  // the last row keeps its value under the upward move
}

TEST_CASE("spatial shift: the backward is §1.2's rule (L = 1, 2, 5), the exact transpose, and passes gradcheck",
          "[s2mlp]") {
  for (int64_t C : {4, 7, 10, 64})
    for (int64_t H : {1, 2, 5})
      for (int64_t W : {1, 2, 5})
        for (int variant : {1, 2}) {
          INFO("C " << C << ", H " << H << ", W " << W << ", shift" << variant);
          const Image dy = random_image(2, H, W, C, uint64_t(7 + C + H * 10 + W * 100));
          Tensor x = random_image(2, H, W, C, 3).tensor();
          x.requires_grad_();
          sum(mul(spatial_shift(x, variant), dy.tensor())).backward();
          const Tensor want = shift_backward_by_rule(dy, variant).tensor();
          REQUIRE_CLOSE(testing::all_close(x.grad(), want, tolerance(Compare::forward_f64)));
          REQUIRE_CLOSE(
              testing::all_close(spatial_shift_backward(dy.tensor(), variant), want, tolerance(Compare::forward_f64)));
          // Float32: sums of at most two values, so the same rounding in any order.
          REQUIRE_CLOSE(testing::all_close(spatial_shift_backward(dy.tensor(DType::f32), variant), want,
                                           tolerance(Compare::forward_f32)));
        }
  for (int variant : {1, 2})
    REQUIRE_CLOSE(testing::gradcheck([variant](const std::vector<Tensor>& in) { return spatial_shift(in[0], variant); },
                                     {testing::rand_f64({2, 3, 2, 5})}));
}

TEST_CASE("S2Attention equals a naive float64 implementation that materialises x_all", "[s2mlp]") {
  uint64_t seed = 40;
  for (const AttnCase& tc : attn_cases()) {
    INFO(tc.name);
    auto m = f64_mixer(tc, seed++);
    const Tensor x = randn({tc.B, tc.N, tc.D}, TensorOptions(DType::f64));
    const Tensor len = lengths_of(tc.lengths);
    const NaiveS2 want = naive_s2attention(*m, x, tc.lengths);
    const int64_t C = m->inner_dim;
    NoGradGuard ng;
    const S2SplitAttention got = m->split_attention_of(x, len);
    const auto tol = tolerance(Compare::forward_f64);
    REQUIRE_CLOSE(testing::all_close(got.a, tensor_of(want.a, {tc.B, C}), tol));
    REQUIRE_CLOSE(testing::all_close(got.abar, tensor_of(want.abar, {tc.B, 3, C}), tol));
    REQUIRE_CLOSE(testing::all_close(got.out, tensor_of(want.out, {tc.B, tc.N, C}), tol));
    REQUIRE_CLOSE(testing::all_close(m->forward(x, len), tensor_of(want.y, {tc.B, tc.N, tc.D}), tol));
  }
}

TEST_CASE("S2Attention: `a` is a sum (3N times the mean of x_all); the branch softmax sums to 1 per (b, c)",
          "[s2mlp]") {
  const AttnCase tc = attn_cases()[2];  // 3×3 grid + class token, full
  auto m = f64_mixer(tc, 60);
  const Tensor x = randn({tc.B, tc.N, tc.D}, TensorOptions(DType::f64));
  NoGradGuard ng;
  const S2SplitAttention r = m->split_attention_of(x);
  // mean of x_all over (k, n) from the branches materialised with the engine's shift op.
  const int64_t C = m->inner_dim, H = tc.H, W = tc.W;
  const Tensor z = m->mlp1->forward(x);
  const Tensor grid = narrow(z, 1, 1, H * W);
  const auto branch = [&](int k) { return narrow(grid, 2, k * C, C).reshape({tc.B, H, W, C}); };
  const Tensor x_all =
      cat({spatial_shift1(branch(0)).reshape({tc.B, 1, H * W, C}),
           spatial_shift2(branch(1)).reshape({tc.B, 1, H * W, C}), branch(2).reshape({tc.B, 1, H * W, C})},
          1);
  const Tensor cls_rows = narrow(z, 1, 0, 1).reshape({tc.B, 3, 1, C});  // the class token: unshifted
  const Tensor all = cat({cls_rows, x_all}, 2);                         // [B, 3, N, C]
  const Tensor mean_times = mul_scalar(mean(all, {1, 2}), double(3 * tc.N));
  REQUIRE_CLOSE(testing::all_close(r.a, mean_times, {1e-12, 1e-12}));
  CHECK(!testing::all_close(r.a, mean(all, {1, 2}), {1e-6, 1e-9}).ok);  // and not the mean
  REQUIRE_CLOSE(testing::all_close(sum(r.abar, {1}), full({tc.B, C}, 1.0, TensorOptions(DType::f64)),
                                   tolerance(Compare::forward_f64)));
  for (double v : testing::host_values(r.abar)) REQUIRE((v > 0.0 && v < 1.0));
}

TEST_CASE("S2Attention: float64 finite differences through all four Linears, the input and each op", "[s2mlp]") {
  uint64_t seed = 80;
  for (const AttnCase& tc : attn_cases()) {
    INFO(tc.name);
    auto m = f64_mixer(tc, seed++);
    const Tensor len = lengths_of(tc.lengths);
    std::vector<Tensor> inputs = {testing::rand_f64({tc.B, tc.N, tc.D})};
    for (const auto& [name, p] : m->named_parameters()) inputs.push_back(p);
    REQUIRE(inputs.size() == 7);  // mlp1 weight/bias, split_attention mlp1/mlp2 weights, mlp2 weight/bias
    REQUIRE_CLOSE(testing::gradcheck([&](const std::vector<Tensor>& in) { return m->forward(in[0], len); }, inputs));
    const int64_t C = m->inner_dim;
    const S2Grid grid{tc.H, tc.W, tc.cls};
    const Tensor abar = softmax(testing::rand_f64({tc.B, 3, C}, -2, 2, false), 1).requires_grad_();
    REQUIRE_CLOSE(
        testing::gradcheck([&](const std::vector<Tensor>& in) { return s2_split_combine(in[0], in[1], grid, len); },
                           {testing::rand_f64({tc.B, tc.N, 3 * C}), abar}));
    REQUIRE_CLOSE(testing::gradcheck([&](const std::vector<Tensor>& in) { return s2_branch_sum(in[0], grid, len); },
                                     {testing::rand_f64({tc.B, tc.N, 3 * C})}));
  }
}

TEST_CASE("S2Attention with lengths: a padded sample equals the same sample given alone with N = its length",
          "[s2mlp]") {
  for (bool cls : {false, true}) {
    INFO("class token " << cls);
    const AttnCase tc{"", 3, (cls ? 1 : 0) + 12, 6, 0, 3, 4, cls, {}};
    auto m = f64_mixer(tc, 90);
    const Tensor x = randn({3, tc.N, 6}, TensorOptions(DType::f64));
    const std::vector<int32_t> l = {int32_t(tc.N), 7, 2};
    NoGradGuard ng;
    const Tensor y = m->forward(x, lengths_of(l));
    for (int64_t b = 0; b < 3; ++b) {
      INFO("sample " << b);
      const Tensor alone = m->forward(narrow(narrow(x, 0, b, 1), 1, 0, l[size_t(b)]));
      REQUIRE_CLOSE(
          testing::all_close(narrow(narrow(y, 0, b, 1), 1, 0, l[size_t(b)]), alone, tolerance(Compare::forward_f64)));
    }
  }
}

TEST_CASE("S2Attention: float32 agrees with float64; two runs are bitwise identical", "[s2mlp]") {
  const AttnCase tc = attn_cases()[3];
  auto m = f64_mixer(tc, 95);
  const Tensor x = randn({tc.B, tc.N, tc.D}, TensorOptions(DType::f64));
  const Tensor len = lengths_of(tc.lengths);
  NoGradGuard ng;
  const Tensor y64 = m->forward(x, len);
  REQUIRE_CLOSE(testing::bit_equal(m->forward(x, len), y64));
  m->to(DType::f32);
  REQUIRE_CLOSE(testing::all_close(m->forward(x.to(DType::f32), len), y64, {1e-4, 1e-5}));
}

TEST_CASE("S2-MLPv2: invalid shapes, grids and contexts are clear errors", "[s2mlp]") {
  const Tensor img = randn({2, 3, 3, 4});
  CHECK_THROWS_WITH(spatial_shift1(randn({2, 9, 4})), Contains("spatial_shift1") && Contains("[B, H, W, C]"));
  CHECK_THROWS_WITH(spatial_shift2(randn({2, 0, 3, 4})), Contains("spatial_shift2") && Contains("empty axis"));
  CHECK_THROWS_WITH(spatial_shift(img, 3), Contains("variant 3"));
  CHECK_THROWS_WITH(spatial_shift1(from_vector<int32_t>({1, 2, 3, 4}, {1, 1, 1, 4})), Contains("dtype"));
  const S2Grid g{2, 4, false};
  CHECK_THROWS_WITH(s2_branch_sum(randn({2, 8, 7}), g), Contains("s2_branch_sum") && Contains("[B, N, 3C]"));
  CHECK_THROWS_WITH(s2_branch_sum(randn({2, 9, 6}), g), Contains("N = 9") && Contains("2 × 4 grid"));
  CHECK_THROWS_WITH(s2_branch_sum(randn({2, 8, 6}), S2Grid{}), Contains("needs a token grid"));
  CHECK_THROWS_WITH(s2_branch_sum(randn({2, 8, 6}), g, from_vector<int32_t>({8, 9}, {2})), Contains("lengths[1] = 9"));
  CHECK_THROWS_WITH(s2_branch_sum(randn({2, 8, 6}), g, from_vector<int32_t>({8, 0}, {2})), Contains("lengths[1] = 0"));
  CHECK_THROWS_WITH(s2_branch_sum(randn({2, 8, 6}), g, from_vector<int32_t>({8}, {1})), Contains("lengths"));
  CHECK_THROWS_WITH(s2_split_combine(randn({2, 8, 6}), randn({2, 2, 2}), g),
                    Contains("abar has shape [2, 2, 2], expected [2, 3, 2]"));
  CHECK_THROWS_WITH(s2_split_attention(randn({2, 8, 6}), randn({2, 3}), randn({6, 2}), g), Contains("w1"));
  CHECK_THROWS_WITH(s2_split_attention(randn({2, 8, 6}), randn({2, 2}), randn({2, 6}), g), Contains("w2"));

  nn::MixerContext no_grid = s2_ctx(8, 0, 0, false);
  no_grid.seq_len = 16;
  CHECK_THROWS_WITH(nn::make_mixer("s2mlpv2", no_grid),
                    Contains("s2mlpv2") && Contains("grid") && Contains("LRA text tasks"));
  nn::MixerContext causal = s2_ctx(8, 2, 2, false);
  causal.causal = true;
  CHECK_THROWS_WITH(nn::make_mixer("s2mlpv2", causal), Contains("causal"));
  nn::MixerContext long_seq = s2_ctx(8, 2, 2, false);
  long_seq.seq_len = 5;
  CHECK_THROWS_WITH(nn::make_mixer("s2mlpv2", long_seq), Contains("seq_len = 5"));
  nn::S2MlpV2Mixer m(s2_ctx(8, 2, 2, true));
  CHECK_THROWS_WITH(m.forward(randn({1, 6, 8})), Contains("N = 6") && Contains("class token"));
  CHECK_THROWS_WITH(m.forward(randn({1, 5, 7})), Contains("[B, N, 8]"));
  CHECK(nn::mixer_info("s2mlpv2").needs_grid);
  CHECK(nn::mixer_info("s2mlpv2").options.empty());

  // An LRA text task has no grid: the config says which mixer needs one.
  models::LraConfig c;
  c.task = "listops";
  c.vocab_size = 7;
  c.max_len = 16;
  c.embed_dim = 8, c.num_heads = 2;
  c.mixer = "s2mlpv2";
  CHECK_THROWS_WITH(c.validate(), Contains("mixer s2mlpv2 needs a token grid"));
  c.input = "pixels";
  c.grid_h = c.grid_w = 4;
  CHECK_NOTHROW(c.validate());
}

TEST_CASE("S2-MLPv2 mixer: parameter names follow the reference S2Attention", "[s2mlp]") {
  nn::S2MlpV2Mixer m(s2_ctx(8, 2, 4, false, 12));
  std::vector<std::string> names;
  for (const auto& [n, t] : m.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"mlp1.weight", "mlp1.bias", "split_attention.mlp1.weight",
                                          "split_attention.mlp2.weight", "mlp2.weight", "mlp2.bias"});
  CHECK(m.mlp1->weight.shape() == Shape({36, 8}));
  CHECK(m.split_attention->mlp1->weight.shape() == Shape({12, 12}));
  CHECK(m.split_attention->mlp2->weight.shape() == Shape({36, 12}));
  CHECK(m.mlp2->weight.shape() == Shape({8, 12}));
}

TEST_CASE("vit --block s2mlpv2: the §1.4 block and head on the preset's grid", "[s2mlp][vit-app]") {
  const auto parse = [](std::vector<const char*> args, std::string* text = nullptr) {
    args.insert(args.begin(), "vit");
    std::ostringstream out, err;
    app::CliCommand c = app::parse_cli(int(args.size()), args.data(), out, err);
    if (text) *text = err.str() + out.str();
    return c;
  };
  app::CliCommand c = parse({"train", "--block", "s2mlpv2"});
  REQUIRE(c.exit_code == -1);
  CHECK(c.train.mixer == "s2mlpv2");  // implied
  CHECK(c.train.model.block == "s2mlpv2");
  c = parse({"info", "--block", "s2mlpv2", "--mixer", "s2mlpv2"});
  CHECK(c.info_mixer == "s2mlpv2");
  std::string text;
  c = parse({"train", "--block", "s2mlpv2", "--mixer", "csp"}, &text);
  CHECK(c.exit_code == 2);
  CHECK_THAT(text, Contains("--block s2mlpv2") && Contains("not csp"));
  c = parse({"train", "--block", "mlp-mixer"}, &text);
  CHECK(c.exit_code > 0);
  c = parse({"train", "--help"}, &text);
  CHECK_THAT(text, Contains("--block") && Contains("S2-MLPv2"));

  app::ModelOverrides block;
  block.block = "s2mlpv2";
  models::ViTConfig cfg = models::vit_preset("fmnist-small");  // dropout 0.1, class token
  block.apply(cfg);
  CHECK(cfg.mixer == "s2mlpv2");
  CHECK(cfg.mlp_hidden == 3 * cfg.embed_dim);
  CHECK(cfg.pool == "avg");
  CHECK_FALSE(cfg.csp_layout);
  CHECK(cfg.drop_rate == 0.0);
  block.mlp_hidden = 100;
  block.pool = "token";
  cfg = models::vit_preset("fmnist-tiny");
  block.apply(cfg);
  CHECK(cfg.mlp_hidden == 100);  // explicit flags win
  CHECK(cfg.pool == "token");
  app::ModelOverrides only_block;
  only_block.block = "s2mlpv2";
  const std::string info = app::model_info("fmnist-tiny", "s2mlpv2", only_block);
  CHECK_THAT(info, Contains("mixer s2mlpv2") && Contains("MLP 192") && Contains("pool avg") &&
                       Contains("blocks.3.attn.split_attention.mlp2.weight") && Contains("[192, 64]"));
  cfg = models::vit_preset("fmnist-tiny");
  cfg.mixer = "csp";
  CHECK_THROWS_WITH(block.apply(cfg), Contains("not csp"));
}
