// MEGA's damped multi-dimensional EMA (specs/lra.md §6.2): the op on both paths against a brute-force float64
// evaluation of the kernel form (the kernel materialised tap by tap from the formula), causal and bidirectional,
// truncated or not, with padding; scan and convolution paths against each other; float64 finite differences for x
// and every parameter; padding isolation; L = 16K forward and backward against the direct formula with linear
// memory; every validation error; the nn::MultiHeadEMA layer's parameters, initialisation and forward.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/ema.h"
#include "engine/mixgrad.h"
#include "nn/ema.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using namespace mixgrad::testing;
using Catch::Contains;

struct EmaCase {
  std::string name;
  int64_t B, L, D, H;
  bool bidirectional;
  int64_t truncation;
  std::vector<int32_t> lengths;  // empty: every sample full length
};

const std::vector<EmaCase>& cases() {
  static const std::vector<EmaCase> table = {
      {"bidirectional, full kernel, padded", 2, 7, 3, 4, true, 0, {7, 4}},
      {"causal, full kernel, padded", 3, 9, 2, 3, false, 0, {9, 1, 5}},
      {"bidirectional, truncation 4 < L, padded", 2, 10, 3, 2, true, 4, {10, 6}},
      {"causal, truncation 2, single channel", 1, 5, 1, 1, false, 2, {}},
      {"bidirectional, truncation == L", 2, 6, 2, 5, true, 6, {}},
      {"bidirectional, truncation > L, padded shorter than k", 2, 8, 2, 3, true, 20, {3, 8}},
      {"causal, truncation 3, padded below k", 2, 9, 4, 2, false, 3, {2, 9}},
  };
  return table;
}

int64_t rows_of(const EmaCase& c) { return c.bidirectional ? 2 * c.D : c.D; }

struct Inputs {
  std::vector<double> x, delta, alpha, beta, gamma, omega;
};

std::vector<double> uniform(size_t n, double lo, double hi, std::mt19937& gen) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(n);
  for (double& e : v) e = u(gen);
  return v;
}

Inputs make_inputs(const EmaCase& c, uint32_t seed) {
  std::mt19937 gen(seed);
  const size_t p = size_t(rows_of(c) * c.H);
  Inputs in;
  in.x = uniform(size_t(c.B * c.L * c.D), -1.0, 1.0, gen);
  in.delta = uniform(p, -2.0, 1.5, gen);  // decays from about 0.5 to 0.99: long and short memories
  in.alpha = uniform(p, -1.5, 1.5, gen);
  in.beta = uniform(p, -1.0, 1.0, gen);
  in.gamma = uniform(p, -1.0, 1.0, gen);
  in.omega = uniform(size_t(c.D), -1.0, 1.0, gen);
  return in;
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// K[r, l] straight from the formula of §6.2 (std::pow, no recursion).
std::vector<double> ref_kernel(const Inputs& in, int64_t rows, int64_t H, int64_t k) {
  std::vector<double> K(size_t(rows * k), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t l = 0; l < k; ++l)
      for (int64_t n = 0; n < H; ++n) {
        const size_t i = size_t(r * H + n);
        const double p = sigmoid(in.delta[i]), q = 1.0 - p * sigmoid(in.alpha[i]);
        K[size_t(r * k + l)] += p * in.beta[i] * std::pow(q, double(l)) * in.gamma[i] / std::sqrt(double(H));
      }
  return K;
}

int64_t kernel_length(const EmaCase& c) { return c.truncation == 0 ? c.L : std::min(c.truncation, c.L); }
int64_t valid(const EmaCase& c, int64_t b) { return c.lengths.empty() ? c.L : c.lengths[size_t(b)]; }

// Brute force: y[t] = Σ_m Kf[m]·x̃[t − m] + Σ_m Kb[m]·x̃[t + m], out = silu(y + ω·x) on valid rows, 0 elsewhere.
std::vector<double> ref_forward(const EmaCase& c, const Inputs& in) {
  const int64_t k = kernel_length(c);
  const std::vector<double> K = ref_kernel(in, rows_of(c), c.H, k);
  std::vector<double> out(in.x.size(), 0.0);
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t n = valid(c, b);
    auto xt = [&](int64_t t, int64_t j) { return t >= 0 && t < n ? in.x[size_t((b * c.L + t) * c.D + j)] : 0.0; };
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < c.D; ++j) {
        double y = 0.0;
        for (int64_t m = 0; m < k; ++m) {
          y += K[size_t(j * k + m)] * xt(t - m, j);
          if (c.bidirectional) y += K[size_t((c.D + j) * k + m)] * xt(t + m, j);
        }
        const double z = y + in.omega[size_t(j)] * xt(t, j);
        out[size_t((b * c.L + t) * c.D + j)] = z * sigmoid(z);
      }
  }
  return out;
}

struct TensorInputs {
  Tensor x, delta, alpha, beta, gamma, omega, lengths;
};

TensorInputs to_tensors(const EmaCase& c, const Inputs& in, DType dtype, bool requires_grad = false) {
  auto make = [&](const std::vector<double>& v, Shape shape) {
    Tensor t = from_vector<double>(v, std::move(shape)).to(dtype).detach();
    if (requires_grad) t.requires_grad_();
    return t;
  };
  const int64_t rows = rows_of(c);
  TensorInputs t{make(in.x, {c.B, c.L, c.D}),
                 make(in.delta, {rows, c.H}),
                 make(in.alpha, {rows, c.H}),
                 make(in.beta, {rows, c.H}),
                 make(in.gamma, {rows, c.H}),
                 make(in.omega, {c.D}),
                 Tensor()};
  if (!c.lengths.empty()) t.lengths = from_vector<int32_t>(c.lengths, {c.B}, TensorOptions(DType::i32));
  return t;
}

EmaOptions options_for(const EmaCase& c, EmaPath path) { return {c.bidirectional, c.truncation, path}; }

Tensor run(const EmaCase& c, const TensorInputs& t, EmaPath path) {
  return multihead_ema(t.x, t.delta, t.alpha, t.beta, t.gamma, t.omega, t.lengths, options_for(c, path));
}

std::vector<EmaPath> paths_for(const EmaCase& c) {
  std::vector<EmaPath> p = {EmaPath::automatic, EmaPath::convolution};
  if (kernel_length(c) == c.L) p.push_back(EmaPath::scan);
  return p;
}

// Gradients of sum(out · w) for x and the five parameters on one path.
std::vector<Tensor> grads_of(const EmaCase& c, const Inputs& in, DType dtype, EmaPath path, const Tensor& w) {
  TensorInputs t = to_tensors(c, in, dtype, true);
  sum(mul(run(c, t, path), w)).backward();
  return {t.x.grad(), t.delta.grad(), t.alpha.grad(), t.beta.grad(), t.gamma.grad(), t.omega.grad()};
}

}  // namespace

TEST_CASE("ema: forward matches the brute-force kernel form on every path", "[ema]") {
  for (const EmaCase& c : cases()) {
    const Inputs in = make_inputs(c, 11);
    const Tensor expected = from_vector<double>(ref_forward(c, in), {c.B, c.L, c.D});
    for (EmaPath path : paths_for(c)) {
      INFO(c.name << ", path " << ema_path_name(path));
      const TensorInputs t64 = to_tensors(c, in, DType::f64);
      REQUIRE_CLOSE(all_close(run(c, t64, path), expected, tolerance(Compare::forward_f64)));
      const TensorInputs t32 = to_tensors(c, in, DType::f32);
      REQUIRE_CLOSE(all_close(run(c, t32, path).to(DType::f64), expected, {1e-5, 1e-5}));
    }
  }
}

TEST_CASE("ema: the automatic path is the scan exactly when the kernel spans the sequence", "[ema]") {
  CHECK(ema_resolve_path(100, {true, 0, EmaPath::automatic}) == EmaPath::scan);
  CHECK(ema_resolve_path(100, {true, 100, EmaPath::automatic}) == EmaPath::scan);
  CHECK(ema_resolve_path(100, {true, 4096, EmaPath::automatic}) == EmaPath::scan);
  CHECK(ema_resolve_path(100, {true, 99, EmaPath::automatic}) == EmaPath::convolution);
  CHECK(ema_resolve_path(100, {false, 1, EmaPath::convolution}) == EmaPath::convolution);
  REQUIRE_THROWS_WITH(ema_resolve_path(100, {true, 64, EmaPath::scan}), Contains("truncation 64 < L = 100"));
}

TEST_CASE("ema: ema_kernel materialises the formula's taps", "[ema]") {
  const EmaCase c{"kernel", 1, 1, 3, 4, true, 0, {}};
  const Inputs in = make_inputs(c, 5);
  const TensorInputs t = to_tensors(c, in, DType::f64);
  const Tensor K = ema_kernel(t.delta, t.alpha, t.beta, t.gamma, 33);
  REQUIRE_CLOSE(all_close(K, from_vector<double>(ref_kernel(in, 6, 4, 33), {6, 33}), tolerance(Compare::forward_f64)));
}

TEST_CASE("ema: scan and convolution paths agree, forward and backward", "[ema]") {
  for (const EmaCase& c : cases()) {
    if (kernel_length(c) != c.L) continue;
    const Inputs in = make_inputs(c, 23);
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO(c.name << ", " << dtype_name(dtype));
      const Tolerance tol = dtype == DType::f64 ? tolerance(Compare::forward_f64) : Tolerance{1e-4, 1e-5};
      const TensorInputs t = to_tensors(c, in, dtype);
      REQUIRE_CLOSE(all_close(run(c, t, EmaPath::scan), run(c, t, EmaPath::convolution), tol));
      const Tensor w = rand_f64({c.B, c.L, c.D}, 0.5, 1.5, false).to(dtype);
      const auto gs = grads_of(c, in, dtype, EmaPath::scan, w);
      const auto gc = grads_of(c, in, dtype, EmaPath::convolution, w);
      for (size_t i = 0; i < gs.size(); ++i) {
        INFO("gradient of input " << i << " (x, delta, alpha, beta, gamma, omega)");
        REQUIRE_CLOSE(all_close(gs[i], gc[i], tol));
      }
    }
  }
}

TEST_CASE("ema: float64 finite differences for x and every parameter", "[ema]") {
  for (const EmaCase& c : cases()) {
    const Inputs in = make_inputs(c, 37);
    for (EmaPath path : paths_for(c)) {
      INFO(c.name << ", path " << ema_path_name(path));
      const TensorInputs t = to_tensors(c, in, DType::f64, true);
      const Tensor lengths = t.lengths;
      const EmaOptions opt = options_for(c, path);
      auto f = [&](const std::vector<Tensor>& v) {
        return multihead_ema(v[0], v[1], v[2], v[3], v[4], v[5], lengths, opt);
      };
      REQUIRE_CLOSE(gradcheck(f, {t.x, t.delta, t.alpha, t.beta, t.gamma, t.omega}));
    }
  }
}

TEST_CASE("ema: padded inputs never reach valid outputs and get zero gradient", "[ema]") {
  for (const EmaCase& c : cases()) {
    if (c.lengths.empty()) continue;
    const Inputs in = make_inputs(c, 41);
    Inputs noisy = in;  // padded positions changed wildly
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t t = valid(c, b); t < c.L; ++t)
        for (int64_t j = 0; j < c.D; ++j) noisy.x[size_t((b * c.L + t) * c.D + j)] = 1e3 * double(t + j + 1);
    for (EmaPath path : paths_for(c)) {
      INFO(c.name << ", path " << ema_path_name(path));
      const Tensor w = rand_f64({c.B, c.L, c.D}, 0.5, 1.5, false);
      const Tensor a = run(c, to_tensors(c, in, DType::f64), path);
      const Tensor n = run(c, to_tensors(c, noisy, DType::f64), path);
      REQUIRE_CLOSE(bit_equal(n, a));
      const std::vector<double> dx = grads_of(c, noisy, DType::f64, path, w)[0].to_vector<double>();
      const std::vector<double> out = n.to_vector<double>();
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t t = valid(c, b); t < c.L; ++t)
          for (int64_t j = 0; j < c.D; ++j) {
            const size_t i = size_t((b * c.L + t) * c.D + j);
            REQUIRE(out[i] == 0.0);
            REQUIRE(dx[i] == 0.0);
          }
    }
  }
}

TEST_CASE("ema: a padded sample equals the same sample run alone at its length", "[ema]") {
  const EmaCase c{"padded", 2, 12, 3, 4, true, 5, {12, 7}};
  const Inputs in = make_inputs(c, 43);
  const std::vector<double> full = run(c, to_tensors(c, in, DType::f64), EmaPath::automatic).to_vector<double>();
  EmaCase alone{"alone", 1, 7, 3, 4, true, 5, {}};
  Inputs one = in;
  one.x.assign(in.x.begin() + c.L * c.D, in.x.begin() + c.L * c.D + 7 * c.D);
  const std::vector<double> short_run =
      run(alone, to_tensors(alone, one, DType::f64), EmaPath::automatic).to_vector<double>();
  for (size_t i = 0; i < short_run.size(); ++i)
    REQUIRE(full[size_t(c.L * c.D) + i] == Approx(short_run[i]).epsilon(1e-12));
}

TEST_CASE("ema: L = 16K forward and backward against the direct formula, memory linear in L", "[ema]") {
  const int64_t L = 16384, D = 2, H = 4;
  const EmaCase c{"16K", 2, L, D, H, true, 0, {int32_t(L), 10000}};
  Inputs in = make_inputs(c, 53);
  for (size_t i = 0; i < in.delta.size(); i += 2) in.delta[i] = -6.0;  // decays near 1: taps reach thousands back
  const TensorInputs t = to_tensors(c, in, DType::f32, true);
  reset_peak_memory(kCPU);
  const int64_t before = memory_stats(kCPU).bytes_in_use;
  Tensor out = run(c, t, EmaPath::automatic);
  const Tensor w = rand_f64({c.B, L, D}, 0.5, 1.5, false).to(DType::f32);
  sum(mul(out, w)).backward();
  // Everything the op and its backward hold is a few [B, L, D] buffers; [D, L, L] would be 2 GiB.
  CHECK(memory_stats(kCPU).peak_bytes - before < 64 * c.B * L * D * int64_t(sizeof(float)) + (1 << 20));

  // Reference in float64: s_t = q·s_{t−1} + x̃_t per direction (exact as the kernel form when k = L), then
  // out, dpre = w·silu'(pre), and dx[s] = ω·dpre[s] + Σ_t Kf[t − s]·dpre[t] + Σ_t Kb[s − t]·dpre[t] for a few s.
  const std::vector<double> K = ref_kernel(in, 2 * D, H, L);
  const std::vector<double> got = out.detach().to(DType::f64).to_vector<double>();
  const std::vector<double> dx = t.x.grad().to(DType::f64).to_vector<double>();
  const std::vector<double> wv = w.to(DType::f64).to_vector<double>();
  std::vector<double> domega(size_t(D), 0.0);  // Σ_{b, t} dpre·x
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t n = valid(c, b);
    for (int64_t j = 0; j < D; ++j) {
      auto at = [&](int64_t tt) { return size_t((b * L + tt) * D + j); };
      std::vector<double> y(size_t(L), 0.0);
      for (int64_t dir = 0; dir < 2; ++dir) {
        const int64_t r = dir == 0 ? j : D + j;
        for (int64_t h = 0; h < H; ++h) {
          const size_t i = size_t(r * H + h);
          const double p = sigmoid(in.delta[i]), q = 1.0 - p * sigmoid(in.alpha[i]);
          const double coef = p * in.beta[i] * in.gamma[i] / std::sqrt(double(H));
          double s = 0.0;
          for (int64_t step = 0; step < n; ++step) {
            const int64_t tt = dir == 0 ? step : n - 1 - step;
            s = q * s + in.x[at(tt)];
            y[size_t(tt)] += coef * s;
          }
        }
      }
      std::vector<double> dpre(size_t(L), 0.0);
      for (int64_t tt = 0; tt < n; ++tt) {
        const double z = y[size_t(tt)] + in.omega[size_t(j)] * in.x[at(tt)];
        const double sg = sigmoid(z);
        dpre[size_t(tt)] = wv[at(tt)] * sg * (1.0 + z * (1.0 - sg));
        domega[size_t(j)] += dpre[size_t(tt)] * in.x[at(tt)];
        if (tt % 4093 == 0 || tt == n - 1) REQUIRE(got[at(tt)] == Approx(z * sg).epsilon(1e-4).margin(1e-4));
      }
      for (int64_t s : {int64_t(0), int64_t(1), int64_t(777), n / 2, n - 2, n - 1}) {
        double e = in.omega[size_t(j)] * dpre[size_t(s)];
        for (int64_t tt = 0; tt < n; ++tt) e += tt >= s ? K[size_t(j * L + (tt - s))] * dpre[size_t(tt)] : 0.0;
        for (int64_t tt = 0; tt <= s; ++tt) e += K[size_t((D + j) * L + (s - tt))] * dpre[size_t(tt)];
        INFO("b " << b << " j " << j << " s " << s);
        REQUIRE(dx[at(s)] == Approx(e).epsilon(1e-3).margin(1e-3));
      }
      for (int64_t tt = n; tt < L; ++tt) REQUIRE(dx[at(tt)] == 0.0);
    }
  }
  const std::vector<double> got_domega = t.omega.grad().to(DType::f64).to_vector<double>();
  for (int64_t j = 0; j < D; ++j)
    REQUIRE(got_domega[size_t(j)] == Approx(domega[size_t(j)]).epsilon(1e-3).margin(1e-2));
  // The convolution path at L = 16K with a Path-X-like truncation stays finite and padded rows stay zero.
  const Tensor conv = multihead_ema(t.x.detach(), t.delta.detach(), t.alpha.detach(), t.beta.detach(), t.gamma.detach(),
                                    t.omega.detach(), t.lengths, {true, 64, EmaPath::automatic});
  const std::vector<float> cv = conv.to_vector<float>();
  for (float v : cv) REQUIRE(std::isfinite(v));
}

TEST_CASE("ema: invalid arguments are clear errors", "[ema]") {
  const EmaCase c{"errors", 2, 6, 3, 4, true, 0, {}};
  const TensorInputs t = to_tensors(c, make_inputs(c, 3), DType::f32);
  auto call = [&](const Tensor& x, const Tensor& delta, const Tensor& omega, const Tensor& lengths, EmaOptions o) {
    return multihead_ema(x, delta, t.alpha, t.beta, t.gamma, omega, lengths, o);
  };
  const EmaOptions bi;
  REQUIRE_THROWS_WITH(call(t.x.reshape({12, 3}), t.delta, t.omega, Tensor(), bi),
                      Contains("x must be 3-D [B, L, D], got shape [12, 3]"));
  REQUIRE_THROWS_WITH(call(t.x, t.delta, t.omega, Tensor(), {false, 0, EmaPath::automatic}),
                      Contains("delta has shape [6, 4], expected [rows, ndim] with rows = 3"));
  REQUIRE_THROWS_WITH(call(t.x, zeros({6, 5}), t.omega, Tensor(), bi), Contains("alpha has shape [6, 4], expected "
                                                                                "delta's shape [6, 5]"));
  REQUIRE_THROWS_WITH(call(t.x, t.delta, zeros({4}), Tensor(), bi),
                      Contains("omega has shape [4], expected [D] = [3]"));
  REQUIRE_THROWS_WITH(call(t.x, t.delta, t.omega, from_vector<int32_t>({6, 7}, {2}), bi),
                      Contains("lengths[1] = 7 is outside [1, L] = [1, 6]"));
  REQUIRE_THROWS_WITH(call(t.x, t.delta, t.omega, from_vector<int32_t>({6}, {1}), bi),
                      Contains("lengths has shape [1], expected [B] = [2]"));
  REQUIRE_THROWS_WITH(call(t.x, t.delta, t.omega, Tensor(), {true, -1, EmaPath::automatic}),
                      Contains("truncation = -1, expected >= 0"));
  REQUIRE_THROWS_WITH(call(t.x, t.delta, t.omega, Tensor(), {true, 3, EmaPath::scan}),
                      Contains("scan path was requested with truncation 3 < L = 6"));
  REQUIRE_THROWS_WITH(call(t.x.to(DType::f64), t.delta, t.omega, Tensor(), bi),
                      Contains("multihead_ema: expected tensors of the same dtype"));
  const Tensor wide = zeros({6, 65});
  REQUIRE_THROWS_WITH(multihead_ema(t.x, wide, wide, wide, wide, t.omega, Tensor(), bi),
                      Contains("ndim = 65 (delta has shape [6, 65]), expected 1 <= ndim <= 64"));
}

namespace {
// Mean and standard deviation of column n of a [rows, ndim] tensor, or of all of it (n < 0).
std::pair<double, double> column_stats(const Tensor& t, int64_t n) {
  const std::vector<float> v = t.detach().to_vector<float>();
  const int64_t rows = t.size(0), cols = t.dim() == 2 ? t.size(1) : 1;
  double s = 0.0, s2 = 0.0, count = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      if (n >= 0 && c != n) continue;
      const double e = v[size_t(r * cols + c)];
      s += e, s2 += e * e, count += 1.0;
    }
  const double mean = s / count;
  return {mean, std::sqrt(s2 / count - mean * mean)};
}
}  // namespace

TEST_CASE("ema: nn::MultiHeadEMA parameters, MEGA initialisation and forward", "[ema]") {
  manual_seed(7);
  nn::MultiHeadEMA ema(128, {16, true, 0, EmaPath::automatic});
  const auto named = ema.named_parameters();
  REQUIRE(named.size() == 5);
  const std::vector<std::pair<std::string, Shape>> want = {
      {"delta", {256, 16}}, {"alpha", {256, 16}}, {"beta", {256, 16}}, {"gamma", {256, 16}}, {"omega", {128}}};
  for (size_t i = 0; i < want.size(); ++i) {
    CHECK(named[i].first == want[i].first);
    CHECK(named[i].second.shape() == want[i].second);
  }
  CHECK(ema.num_parameters() == 4 * 256 * 16 + 128);
  // delta, alpha ~ N(0, 0.2); beta ~ N(0, 0.02) + (1, −1, ...) along ndim; gamma, omega ~ N(0, 1).
  for (const Tensor* t : {&ema.delta, &ema.alpha}) {
    const auto [mean, sd] = column_stats(*t, -1);
    CHECK(std::abs(mean) < 0.02);
    CHECK(sd == Approx(0.2).epsilon(0.05));
  }
  for (int64_t n = 0; n < 16; ++n) {
    const auto [mean, sd] = column_stats(ema.beta, n);
    CHECK(mean == Approx(n % 2 == 0 ? 1.0 : -1.0).margin(0.01));
    CHECK(sd == Approx(0.02).epsilon(0.2));
  }
  for (const Tensor* t : {&ema.gamma, &ema.omega}) {
    const auto [mean, sd] = column_stats(*t, -1);
    CHECK(std::abs(mean) < 0.2);
    CHECK(sd == Approx(1.0).epsilon(0.15));
  }
  CHECK(ema.kernel(10).shape() == Shape{256, 10});

  nn::MultiHeadEMA small(3, {4, false, 5, EmaPath::automatic});
  CHECK(small.delta.shape() == Shape{3, 4});
  const Tensor x = rand_f64({2, 9, 3}, -1.0, 1.0, false).to(DType::f32);
  const Tensor lengths = from_vector<int32_t>({9, 4}, {2}, TensorOptions(DType::i32));
  Tensor y = small.forward(x, lengths);
  Tensor direct;
  {
    NoGradGuard ng;
    direct = multihead_ema(x, small.delta, small.alpha, small.beta, small.gamma, small.omega, lengths,
                           {false, 5, EmaPath::automatic});
  }
  REQUIRE_CLOSE(bit_equal(y.detach(), direct));
  sum(y).backward();
  for (const Tensor& p : small.parameters()) REQUIRE(p.grad().defined());
  REQUIRE_THROWS_WITH(nn::MultiHeadEMA(4, {0, true, 0, EmaPath::automatic}),
                      Contains("MultiHeadEMA: ndim = 0, expected 1 <= ndim <= 64"));
}
