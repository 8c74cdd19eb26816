// CPU reduction, softmax, normalisation, cross-entropy and embedding kernels (kernels/cpu/{reduce,softmax,norm,
// loss,embedding}.h) against naive double formulas, central finite differences and hand-computed values.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/embedding.h"
#include "kernels/cpu/loss.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/reduce.h"
#include "kernels/cpu/softmax.h"

namespace {

namespace kc = mixgrad::kernels::cpu;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Per-dtype tolerances against the double reference: |got - want| <= abs + rel * |want|.
template <class T>
struct RefTol;
template <>
struct RefTol<float> {
  static constexpr double abs = 1e-5, rel = 1e-5;
};
template <>
struct RefTol<double> {
  static constexpr double abs = 1e-12, rel = 1e-11;
};
// Finite differences (double, h = 1e-5).
constexpr double kFdAbs = 1e-6, kFdRel = 1e-5;

// Every element checked (NaN matches NaN, inf matches the same inf); on failure reports the count and the worst
// element.
template <class G, class W>
void check_close(const G& got, const W& want, double abs_tol, double rel_tol, const std::string& what) {
  REQUIRE(got.size() == want.size());
  size_t bad = 0, worst = 0;
  double worst_excess = -kInf, max_abs = 0, max_rel = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
    if (std::isnan(w) && std::isnan(g)) continue;
    if (std::isinf(w) && g == w) continue;
    const double err = std::abs(g - w), limit = abs_tol + rel_tol * std::abs(w);
    if (!std::isnan(err)) max_abs = std::max(max_abs, err);
    if (w != 0 && !std::isnan(err)) max_rel = std::max(max_rel, err / std::abs(w));
    if (!(err <= limit)) ++bad;
    const double excess = std::isnan(err) ? kInf : err - limit;
    if (excess > worst_excess) worst_excess = excess, worst = i;
  }
  INFO(what << ": " << bad << " of " << got.size() << " out of tolerance; max abs err " << max_abs << ", max rel err "
            << max_rel << "; worst at " << worst << ": got " << (got.empty() ? 0.0 : double(got[worst])) << ", want "
            << (want.empty() ? 0.0 : double(want[worst])));
  CHECK(bad == 0);
}

template <class T>
void check_ref(const std::vector<T>& got, const std::vector<double>& want, const std::string& what) {
  check_close(got, want, RefTol<T>::abs, RefTol<T>::rel, what);
}

std::vector<double> random_vector(int64_t n, double lo, double hi, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(gen);
  return v;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Inputs are rounded to T first so the double reference sees the same values as the kernel.
template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Compares an analytic gradient of loss() at x with central differences at up to max_coords coordinates spread
// over x (all of them when x is small). loss() reads x.
void check_fd(std::vector<double>& x, const std::function<double()>& loss, const std::vector<double>& grad,
              const std::string& what, size_t max_coords = 48) {
  REQUIRE(grad.size() == x.size());
  const double h = 1e-5;  // roundoff in a loss summed over ~1e4 terms dominates below this
  std::vector<double> fd, an;
  const size_t step = std::max<size_t>(1, x.size() / max_coords);
  for (size_t i = 0; i < x.size(); i += step) {
    const double keep = x[i];
    x[i] = keep + h;
    const double lp = loss();
    x[i] = keep - h;
    const double lm = loss();
    x[i] = keep;
    fd.push_back((lp - lm) / (2 * h));
    an.push_back(grad[i]);
  }
  check_close(an, fd, kFdAbs, kFdRel, what + " (finite differences)");
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

std::string shape_name(int64_t a, int64_t b) { return "[" + std::to_string(a) + ", " + std::to_string(b) + "]"; }
std::string shape_name(int64_t a, int64_t b, int64_t c) {
  return "[" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + "]";
}

struct Dims3 {
  int64_t outer, dim, inner;
};
const std::vector<Dims3> kReduceShapes = {{1, 1, 1},  {7, 33, 1},     {1, 5000, 1}, {7, 1000, 1},
                                          {7, 33, 5}, {1, 1000, 300}, {2, 1, 33},   {3, 5, 1}};
const std::vector<int64_t> kRows = {1, 7};
const std::vector<int64_t> kCols = {1, 33, 1000, 5000};

// ---------------------------------------------------------------------------------------------------------------
// reduce

TEMPLATE_TEST_CASE("reduce: sum_dim and mean match the naive sum on awkward shapes", "[kernels][reduce]", float,
                   double) {
  using T = TestType;
  for (const auto& s : kReduceShapes) {
    const int64_t n = s.outer * s.dim * s.inner;
    const auto x = cast<T>(random_vector(n, -2, 2, 11));
    for (const bool mean : {false, true}) {
      const T scale = mean ? T(1) / T(s.dim) : T(1);
      std::vector<T> y(static_cast<size_t>(s.outer * s.inner), T(-7));
      kc::sum_dim_forward(y.data(), x.data(), s.outer, s.dim, s.inner, scale);
      std::vector<double> want(y.size(), 0.0);
      for (int64_t o = 0; o < s.outer; ++o)
        for (int64_t i = 0; i < s.inner; ++i) {
          double acc = 0;
          for (int64_t d = 0; d < s.dim; ++d) acc += static_cast<double>(x[(o * s.dim + d) * s.inner + i]);
          want[o * s.inner + i] = acc * static_cast<double>(scale);
        }
      check_ref(y, want, std::string(mean ? "mean " : "sum ") + shape_name(s.outer, s.dim, s.inner));

      const auto dy = cast<T>(random_vector(s.outer * s.inner, -1, 1, 12));
      std::vector<T> dx(static_cast<size_t>(n), T(-7));
      kc::sum_dim_backward(dx.data(), dy.data(), s.outer, s.dim, s.inner, scale);
      std::vector<double> want_dx(dx.size());
      for (int64_t e = 0; e < n; ++e)
        want_dx[e] =
            static_cast<double>(scale) * static_cast<double>(dy[(e / (s.dim * s.inner)) * s.inner + e % s.inner]);
      check_ref(dx, want_dx, "sum backward " + shape_name(s.outer, s.dim, s.inner));
    }
  }
}

TEST_CASE("reduce: empty reduced dimension gives 0 for sum and NaN for mean", "[kernels][reduce]") {
  std::vector<float> y(6, -7.f);
  kc::sum_dim_forward<float>(y.data(), nullptr, 3, 0, 2, 1.f);
  for (float v : y) CHECK(v == 0.f);
  kc::sum_dim_forward<float>(y.data(), nullptr, 3, 0, 2, std::numeric_limits<float>::infinity());  // 1 / 0
  for (float v : y) CHECK(std::isnan(v));
}

TEST_CASE("reduce: sum_dim gradient matches finite differences", "[kernels][reduce]") {
  for (const auto& s : std::vector<Dims3>{{7, 33, 1}, {3, 5, 4}}) {
    const int64_t n = s.outer * s.dim * s.inner, m = s.outer * s.inner;
    auto x = random_vector(n, -1, 1, 21);
    const auto w = random_vector(m, -1, 1, 22);
    const double scale = 1.0 / static_cast<double>(s.dim);
    std::vector<double> y(m), dx(n);
    auto loss = [&] {
      kc::sum_dim_forward(y.data(), x.data(), s.outer, s.dim, s.inner, scale);
      return dot(y, w);
    };
    kc::sum_dim_backward(dx.data(), w.data(), s.outer, s.dim, s.inner, scale);
    check_fd(x, loss, dx, "mean " + shape_name(s.outer, s.dim, s.inner));
  }
}

TEMPLATE_TEST_CASE("reduce: max_dim matches the naive max with first-index ties", "[kernels][reduce]", float, double) {
  using T = TestType;
  for (const auto& s : kReduceShapes) {
    const int64_t n = s.outer * s.dim * s.inner;
    auto xd = random_vector(n, -2, 2, 31);
    for (auto& v : xd) v = std::round(v * 4) / 4;  // plenty of ties
    const auto x = cast<T>(xd);
    std::vector<T> y(static_cast<size_t>(s.outer * s.inner));
    std::vector<int64_t> arg(y.size(), -1);
    kc::max_dim_forward(y.data(), arg.data(), x.data(), s.outer, s.dim, s.inner);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t i = 0; i < s.inner; ++i) {
        int64_t best = 0;
        for (int64_t d = 1; d < s.dim; ++d)
          if (x[(o * s.dim + d) * s.inner + i] > x[(o * s.dim + best) * s.inner + i]) best = d;
        INFO("shape " << shape_name(s.outer, s.dim, s.inner) << " output (" << o << ", " << i << ")");
        CHECK(arg[o * s.inner + i] == best);
        CHECK(y[o * s.inner + i] == x[(o * s.dim + best) * s.inner + i]);
      }
    const auto dy = cast<T>(random_vector(s.outer * s.inner, -1, 1, 32));
    std::vector<T> dx(static_cast<size_t>(n), T(-7));
    kc::max_dim_backward(dx.data(), dy.data(), arg.data(), s.outer, s.dim, s.inner);
    std::vector<double> want(static_cast<size_t>(n), 0.0);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t i = 0; i < s.inner; ++i)
        want[(o * s.dim + arg[o * s.inner + i]) * s.inner + i] = static_cast<double>(dy[o * s.inner + i]);
    check_ref(dx, want, "max backward " + shape_name(s.outer, s.dim, s.inner));
  }
}

TEST_CASE("reduce: max_dim ties, NaN and -inf follow torch.max", "[kernels][reduce]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // Rows of length 5 (inner == 1).
  const std::vector<float> x = {1,    3,    3,    2,    0,     // tie: first index
                                1,    nan,  5,    nan,  9,     // NaN is the maximum, the first one wins
                                -inf, -inf, -inf, -inf, -inf,  // all -inf
                                nan,  1,    2,    3,    4,     // NaN first
                                -inf, -2,   -2,   -inf, -3};
  std::vector<float> y(5);
  std::vector<int64_t> arg(5);
  kc::max_dim_forward(y.data(), arg.data(), x.data(), 5, 5, 1);
  CHECK(y[0] == 3.f);
  CHECK(arg[0] == 1);
  CHECK(std::isnan(y[1]));
  CHECK(arg[1] == 1);
  CHECK(y[2] == -inf);
  CHECK(arg[2] == 0);
  CHECK(std::isnan(y[3]));
  CHECK(arg[3] == 0);
  CHECK(y[4] == -2.f);
  CHECK(arg[4] == 1);
  // The same columns with inner > 1: x^T viewed as [1, 5, 5].
  std::vector<float> xt(25);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 5; ++c) xt[c * 5 + r] = x[r * 5 + c];
  std::vector<float> yt(5);
  std::vector<int64_t> argt(5);
  kc::max_dim_forward(yt.data(), argt.data(), xt.data(), 1, 5, 5);
  CHECK(argt == arg);

  std::vector<float> dx(25, -7.f);
  const std::vector<float> dy = {1, 2, 3, 4, 5};
  kc::max_dim_backward(dx.data(), dy.data(), arg.data(), 5, 5, 1);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 5; ++c) CHECK(dx[r * 5 + c] == (c == arg[r] ? dy[r] : 0.f));

  CHECK_THROWS_AS(kc::max_dim_forward(y.data(), arg.data(), x.data(), 2, 0, 1), std::invalid_argument);
  std::vector<int64_t> bad_arg = {0, 5, 0, 0, 0};
  CHECK_THROWS_AS(kc::max_dim_backward(dx.data(), dy.data(), bad_arg.data(), 5, 5, 1), std::invalid_argument);
}

TEST_CASE("reduce: max_dim gradient matches finite differences", "[kernels][reduce]") {
  const int64_t outer = 3, dim = 33, inner = 2, n = outer * dim * inner;
  auto x = random_vector(n, -1, 1, 41);  // distinct values: the max is locally smooth
  const auto w = random_vector(outer * inner, -1, 1, 42);
  std::vector<double> y(outer * inner), dx(n);
  std::vector<int64_t> arg(outer * inner);
  auto loss = [&] {
    kc::max_dim_forward(y.data(), arg.data(), x.data(), outer, dim, inner);
    return dot(y, w);
  };
  loss();
  kc::max_dim_backward(dx.data(), w.data(), arg.data(), outer, dim, inner);
  check_fd(x, loss, dx, "max [3, 33, 2]", 1000);
}

// ---------------------------------------------------------------------------------------------------------------
// softmax

std::vector<double> naive_softmax(const std::vector<double>& x, int64_t rows, int64_t cols, bool log) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double m = -kInf;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, x[r * cols + c]);
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += std::exp(x[r * cols + c] - m);
    for (int64_t c = 0; c < cols; ++c)
      y[r * cols + c] = log ? x[r * cols + c] - m - std::log(s) : std::exp(x[r * cols + c] - m) / s;
  }
  return y;
}

TEMPLATE_TEST_CASE("softmax: forward and backward match the naive formulas", "[kernels][softmax]", float, double) {
  using T = TestType;
  for (const int64_t rows : kRows)
    for (const int64_t cols : kCols) {
      const int64_t n = rows * cols;
      const auto x = cast<T>(random_vector(n, -8, 8, 51));
      const auto dy = cast<T>(random_vector(n, -1, 1, 52));
      for (const bool log : {false, true}) {
        const std::string name = std::string(log ? "log_softmax " : "softmax ") + shape_name(rows, cols);
        std::vector<T> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
        if (log)
          kc::log_softmax_forward(y.data(), x.data(), rows, cols);
        else
          kc::softmax_forward(y.data(), x.data(), rows, cols);
        const auto want = naive_softmax(as_double(x), rows, cols, log);
        check_ref(y, want, name);

        if (log)
          kc::log_softmax_backward(dx.data(), dy.data(), y.data(), rows, cols);
        else
          kc::softmax_backward(dx.data(), dy.data(), y.data(), rows, cols);
        std::vector<double> want_dx(static_cast<size_t>(n));
        for (int64_t r = 0; r < rows; ++r) {
          double s = 0;
          for (int64_t c = 0; c < cols; ++c) {
            const size_t i = r * cols + c;
            s += log ? static_cast<double>(dy[i]) : static_cast<double>(dy[i]) * want[i];
          }
          for (int64_t c = 0; c < cols; ++c) {
            const size_t i = r * cols + c;
            want_dx[i] = log ? dy[i] - std::exp(want[i]) * s : want[i] * (dy[i] - s);
          }
        }
        check_ref(dx, want_dx, name + " backward");
      }
    }
}

TEST_CASE("softmax: gradients match finite differences", "[kernels][softmax]") {
  for (const int64_t rows : kRows)
    for (const int64_t cols : kCols) {
      const int64_t n = rows * cols;
      auto x = random_vector(n, -3, 3, 61);
      const auto w = random_vector(n, -1, 1, 62);
      for (const bool log : {false, true}) {
        std::vector<double> y(n), dx(n);
        auto loss = [&] {
          if (log)
            kc::log_softmax_forward(y.data(), x.data(), rows, cols);
          else
            kc::softmax_forward(y.data(), x.data(), rows, cols);
          return dot(y, w);
        };
        loss();
        if (log)
          kc::log_softmax_backward(dx.data(), w.data(), y.data(), rows, cols);
        else
          kc::softmax_backward(dx.data(), w.data(), y.data(), rows, cols);
        check_fd(x, loss, dx, std::string(log ? "log_softmax " : "softmax ") + shape_name(rows, cols));
      }
    }
}

TEST_CASE("softmax: fully -inf rows give 0 / -inf with zero gradient; NaN poisons its row", "[kernels][softmax]") {
  const int64_t rows = 4, cols = 33;
  std::vector<double> x = random_vector(rows * cols, -2, 2, 71);
  for (int64_t c = 0; c < cols; ++c) x[1 * cols + c] = -kInf;     // fully masked
  for (int64_t c = 0; c < cols; c += 2) x[2 * cols + c] = -kInf;  // half masked
  x[3 * cols + 5] = kNaN;                                         // NaN
  const auto dy = random_vector(rows * cols, -1, 1, 72);
  std::vector<double> y(x.size()), ly(x.size()), dx(x.size()), ldx(x.size());
  kc::softmax_forward(y.data(), x.data(), rows, cols);
  kc::log_softmax_forward(ly.data(), x.data(), rows, cols);
  kc::softmax_backward(dx.data(), dy.data(), y.data(), rows, cols);
  kc::log_softmax_backward(ldx.data(), dy.data(), ly.data(), rows, cols);
  for (int64_t c = 0; c < cols; ++c) {
    CHECK(y[cols + c] == 0.0);
    CHECK(ly[cols + c] == -kInf);
    CHECK(dx[cols + c] == 0.0);
    CHECK(ldx[cols + c] == 0.0);
    CHECK(std::isnan(y[3 * cols + c]));
    CHECK(std::isnan(ly[3 * cols + c]));
    if (c % 2 == 0) {
      CHECK(y[2 * cols + c] == 0.0);
      CHECK(ly[2 * cols + c] == -kInf);
      CHECK(dx[2 * cols + c] == 0.0);
      CHECK(ldx[2 * cols + c] == dy[2 * cols + c]);  // d(x - lse)/dx through the identity term only
    }
  }
  // Half-masked row: the live entries are the softmax of the live entries alone.
  std::vector<double> live, live_y(17);
  for (int64_t c = 1; c < cols; c += 2) live.push_back(x[2 * cols + c]);
  live_y = naive_softmax(live, 1, static_cast<int64_t>(live.size()), false);
  for (size_t k = 0; k < live.size(); ++k) CHECK(y[2 * cols + 1 + 2 * k] == Approx(live_y[k]).epsilon(1e-12));
}

// ---------------------------------------------------------------------------------------------------------------
// norm

struct NormRef {
  std::vector<double> y, mean, rstd;
};

NormRef naive_norm(const std::vector<double>& x, const double* w, const double* b, int64_t rows, int64_t cols,
                   double eps, bool rms) {
  NormRef ref{std::vector<double>(x.size()), std::vector<double>(rows), std::vector<double>(rows)};
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0;
    if (!rms) {
      for (int64_t c = 0; c < cols; ++c) mu += x[r * cols + c];
      mu /= static_cast<double>(cols);
    }
    double var = 0;
    for (int64_t c = 0; c < cols; ++c) var += (x[r * cols + c] - mu) * (x[r * cols + c] - mu);
    const double rs = 1 / std::sqrt(var / static_cast<double>(cols) + eps);
    for (int64_t c = 0; c < cols; ++c)
      ref.y[r * cols + c] = (x[r * cols + c] - mu) * rs * (w ? w[c] : 1.0) + (b ? b[c] : 0.0);
    ref.mean[r] = mu;
    ref.rstd[r] = rs;
  }
  return ref;
}

TEMPLATE_TEST_CASE("norm: layer_norm and rms_norm forward match the naive formulas", "[kernels][norm]", float, double) {
  using T = TestType;
  const T eps = T(1e-5);
  for (const int64_t rows : kRows)
    for (const int64_t cols : kCols)
      for (const bool affine : {false, true}) {
        const int64_t n = rows * cols;
        const auto x = cast<T>(random_vector(n, -3, 5, 81));  // non-zero mean
        const auto w = cast<T>(random_vector(cols, 0.5, 1.5, 82));
        const auto b = cast<T>(random_vector(cols, -1, 1, 83));
        const auto wd = as_double(w), bd = as_double(b);
        const std::string name = shape_name(rows, cols) + (affine ? " affine" : " plain");
        std::vector<T> y(static_cast<size_t>(n)), mean(rows), rstd(rows);
        kc::layer_norm_forward(y.data(), mean.data(), rstd.data(), x.data(), affine ? w.data() : nullptr,
                               affine ? b.data() : nullptr, rows, cols, eps);
        auto ref = naive_norm(as_double(x), affine ? wd.data() : nullptr, affine ? bd.data() : nullptr, rows, cols,
                              static_cast<double>(eps), false);
        check_ref(y, ref.y, "layer_norm " + name);
        check_ref(mean, ref.mean, "layer_norm mean " + name);
        // rstd of a one-column row is 1/sqrt(eps) ~ 316: compare relatively.
        check_close(rstd, ref.rstd, 0, RefTol<T>::rel, "layer_norm rstd " + name);

        kc::rms_norm_forward(y.data(), rstd.data(), x.data(), affine ? w.data() : nullptr, rows, cols, eps);
        ref =
            naive_norm(as_double(x), affine ? wd.data() : nullptr, nullptr, rows, cols, static_cast<double>(eps), true);
        check_ref(y, ref.y, "rms_norm " + name);
        check_close(rstd, ref.rstd, 0, RefTol<T>::rel, "rms_norm rstd " + name);
      }
}

TEST_CASE("norm: layer_norm and rms_norm gradients match finite differences", "[kernels][norm]") {
  const double eps = 1e-5;
  for (const int64_t rows : kRows)
    for (const int64_t cols : kCols)
      for (const bool rms : {false, true}) {
        const int64_t n = rows * cols;
        auto x = random_vector(n, -2, 3, 91);
        auto w = random_vector(cols, 0.5, 1.5, 92);
        auto b = random_vector(cols, -1, 1, 93);
        const auto dy = random_vector(n, -1, 1, 94);
        std::vector<double> y(n), mean(rows), rstd(rows), dx(n), dw(cols, -7), db(cols, -7);
        auto forward = [&] {
          if (rms)
            kc::rms_norm_forward(y.data(), rstd.data(), x.data(), w.data(), rows, cols, eps);
          else
            kc::layer_norm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows, cols, eps);
          return dot(y, dy);
        };
        forward();
        if (rms)
          kc::rms_norm_backward(dx.data(), dw.data(), dy.data(), x.data(), rstd.data(), w.data(), rows, cols);
        else
          kc::layer_norm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(), rstd.data(),
                                  w.data(), rows, cols);
        const std::string name = std::string(rms ? "rms_norm " : "layer_norm ") + shape_name(rows, cols);
        check_fd(x, forward, dx, name + " dx");
        check_fd(w, forward, dw, name + " dweight");
        if (!rms) check_fd(b, forward, db, name + " dbias");

        // Null weight means 1, null outputs are skipped.
        std::vector<double> dx1(n), dw1(cols);
        const std::vector<double> ones(cols, 1.0);
        if (rms) {
          kc::rms_norm_backward<double>(dx1.data(), nullptr, dy.data(), x.data(), rstd.data(), nullptr, rows, cols);
          kc::rms_norm_backward(dx.data(), dw1.data(), dy.data(), x.data(), rstd.data(), ones.data(), rows, cols);
        } else {
          kc::layer_norm_backward<double>(dx1.data(), nullptr, nullptr, dy.data(), x.data(), mean.data(), rstd.data(),
                                          nullptr, rows, cols);
          kc::layer_norm_backward<double>(dx.data(), dw1.data(), nullptr, dy.data(), x.data(), mean.data(), rstd.data(),
                                          ones.data(), rows, cols);
        }
        check_close(dx1, dx, 1e-15, 1e-13, name + " null weight");
        check_close(dw1, dw, 1e-15, 1e-13, name + " dweight independent of weight");
      }
}

TEST_CASE("norm: float backward matches the double backward", "[kernels][norm]") {
  const int64_t rows = 7, cols = 1000;
  const auto xd = as_double(cast<float>(random_vector(rows * cols, -2, 3, 101)));
  const auto wd = as_double(cast<float>(random_vector(cols, 0.5, 1.5, 102)));
  const auto dyd = as_double(cast<float>(random_vector(rows * cols, -1, 1, 103)));
  const auto xf = cast<float>(xd), wf = cast<float>(wd), dyf = cast<float>(dyd);
  std::vector<double> yd(xd.size()), md(rows), rd(rows), dxd(xd.size()), dwd(cols), dbd(cols);
  std::vector<float> yf(xd.size()), mf(rows), rf(rows), dxf(xd.size()), dwf(cols), dbf(cols);
  kc::layer_norm_forward<double>(yd.data(), md.data(), rd.data(), xd.data(), wd.data(), nullptr, rows, cols, 1e-5);
  kc::layer_norm_forward<float>(yf.data(), mf.data(), rf.data(), xf.data(), wf.data(), nullptr, rows, cols, 1e-5f);
  kc::layer_norm_backward(dxd.data(), dwd.data(), dbd.data(), dyd.data(), xd.data(), md.data(), rd.data(), wd.data(),
                          rows, cols);
  kc::layer_norm_backward(dxf.data(), dwf.data(), dbf.data(), dyf.data(), xf.data(), mf.data(), rf.data(), wf.data(),
                          rows, cols);
  check_close(dxf, dxd, 1e-5, 1e-4, "layer_norm float dx");
  check_close(dwf, dwd, 1e-5, 1e-4, "layer_norm float dweight");
  check_close(dbf, dbd, 1e-5, 1e-4, "layer_norm float dbias");
}

TEST_CASE("norm: zero rows give zero parameter gradients", "[kernels][norm]") {
  std::vector<float> dw(5, -7.f), db(5, -7.f);
  kc::layer_norm_backward<float>(nullptr, dw.data(), db.data(), nullptr, nullptr, nullptr, nullptr, nullptr, 0, 5);
  for (int c = 0; c < 5; ++c) CHECK((dw[c] == 0.f && db[c] == 0.f));
  std::fill(dw.begin(), dw.end(), -7.f);
  kc::rms_norm_backward<float>(nullptr, dw.data(), nullptr, nullptr, nullptr, nullptr, 0, 5);
  for (int c = 0; c < 5; ++c) CHECK(dw[c] == 0.f);
}

// ---------------------------------------------------------------------------------------------------------------
// loss

TEST_CASE("loss: cross_entropy against a hand computation, with ignore_index and label smoothing", "[kernels][loss]") {
  const std::vector<double> logits = {1, 2, 3, 1, 1, 1, 0.5, -1, 2};
  const std::vector<int64_t> target = {2, -100, 1};
  std::vector<double> loss(3, -7), lse(3, -7);
  kc::cross_entropy_forward(loss.data(), lse.data(), logits.data(), target.data(), 3, 3, -100, 0.0);
  CHECK(lse[0] == Approx(3.40760596444438).epsilon(1e-13));
  CHECK(lse[1] == Approx(2.09861228866811).epsilon(1e-13));  // log(3) + 1, written for ignored rows too
  CHECK(lse[2] == Approx(2.24131129665716).epsilon(1e-13));
  CHECK(loss[0] == Approx(0.407605964444381).epsilon(1e-13));
  CHECK(loss[1] == 0.0);
  CHECK(loss[2] == Approx(3.24131129665716).epsilon(1e-13));

  // eps = 0.1: 0.9 * (lse - z_t) + 0.1 * (lse - mean z).
  kc::cross_entropy_forward(loss.data(), lse.data(), logits.data(), target.data(), 3, 3, -100, 0.1);
  CHECK(loss[0] == Approx(0.507605964444381).epsilon(1e-13));
  CHECK(loss[1] == 0.0);
  CHECK(loss[2] == Approx(3.09131129665716).epsilon(1e-13));

  // dlogits = dloss * (softmax - 0.9 * onehot - 0.1 / 3); dloss = 2 on the last row.
  const std::vector<double> dloss = {1, 5, 2};
  std::vector<double> dz(9, -7);
  kc::cross_entropy_backward(dz.data(), dloss.data(), logits.data(), lse.data(), target.data(), 3, 3, -100, 0.1);
  CHECK(dz[6] == Approx(0.283914117613407).epsilon(1e-12));
  CHECK(dz[7] == Approx(-1.78844152012529).epsilon(1e-12));
  CHECK(dz[8] == Approx(1.50452740251188).epsilon(1e-12));
  for (int c = 3; c < 6; ++c) CHECK(dz[c] == 0.0);  // ignored row
}

TEMPLATE_TEST_CASE("loss: cross_entropy matches the naive formula on awkward shapes", "[kernels][loss]", float,
                   double) {
  using T = TestType;
  for (const int64_t rows : kRows)
    for (const int64_t classes : kCols)
      for (const double eps : {0.0, 0.2}) {
        const auto z = cast<T>(random_vector(rows * classes, -6, 6, 111));
        std::vector<int64_t> target(rows);
        for (int64_t r = 0; r < rows; ++r) target[r] = (r * 7919 + 3) % classes;
        if (rows > 1) target[1] = -1;  // ignore_index
        std::vector<T> loss(rows), lse(rows);
        kc::cross_entropy_forward(loss.data(), lse.data(), z.data(), target.data(), rows, classes, -1, T(eps));
        std::vector<double> want_loss(rows), want_lse(rows);
        const auto logp = naive_softmax(as_double(z), rows, classes, true);
        for (int64_t r = 0; r < rows; ++r) {
          double zmax = -kInf, mean_logp = 0;
          for (int64_t c = 0; c < classes; ++c) {
            zmax = std::max(zmax, static_cast<double>(z[r * classes + c]));
            mean_logp += logp[r * classes + c] / static_cast<double>(classes);
          }
          want_lse[r] = static_cast<double>(z[r * classes]) - logp[r * classes];
          want_loss[r] = target[r] < 0 ? 0.0
                                       : -(1 - static_cast<double>(T(eps))) * logp[r * classes + target[r]] -
                                             static_cast<double>(T(eps)) * mean_logp;
        }
        const std::string name = shape_name(rows, classes) + " eps " + std::to_string(eps);
        check_ref(lse, want_lse, "cross_entropy lse " + name);
        check_ref(loss, want_loss, "cross_entropy loss " + name);
      }
}

TEST_CASE("loss: cross_entropy gradient matches finite differences", "[kernels][loss]") {
  for (const int64_t rows : kRows)
    for (const int64_t classes : kCols)
      for (const double eps : {0.0, 0.15}) {
        auto z = random_vector(rows * classes, -4, 4, 121);
        const auto dloss = random_vector(rows, 0.5, 2, 122);
        std::vector<int64_t> target(rows);
        for (int64_t r = 0; r < rows; ++r) target[r] = (r * 31 + 1) % classes;
        if (rows > 1) target[rows - 1] = -100;
        std::vector<double> loss(rows), lse(rows), dz(z.size());
        auto f = [&] {
          kc::cross_entropy_forward(loss.data(), lse.data(), z.data(), target.data(), rows, classes, -100, eps);
          return dot(loss, dloss);
        };
        f();
        kc::cross_entropy_backward(dz.data(), dloss.data(), z.data(), lse.data(), target.data(), rows, classes, -100,
                                   eps);
        check_fd(z, f, dz, "cross_entropy " + shape_name(rows, classes) + " eps " + std::to_string(eps), 96);
      }
}

TEST_CASE("loss: cross_entropy rejects a target out of range naming the row and value", "[kernels][loss]") {
  const std::vector<float> z(12, 0.f);
  const std::vector<int64_t> target = {0, 3, 4, -100};
  std::vector<float> loss(4), lse(4), dz(12);
  try {
    kc::cross_entropy_forward(loss.data(), lse.data(), z.data(), target.data(), 4, 3, -100, 0.f);
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("target 3") != std::string::npos);
    CHECK(msg.find("row 1") != std::string::npos);
  }
  CHECK_THROWS_AS(
      kc::cross_entropy_backward(dz.data(), loss.data(), z.data(), lse.data(), target.data(), 4, 3, -100, 0.f),
      std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------------------------
// embedding

TEMPLATE_TEST_CASE("embedding: forward gathers rows, backward sums repeated indices in order", "[kernels][embedding]",
                   float, double) {
  using T = TestType;
  for (const int64_t dim : {int64_t{1}, int64_t{33}, int64_t{1000}}) {
    const int64_t num = 11;
    const std::vector<int64_t> index = {3, 0, 3, 10, 3, 7, 0, 3, 10, 5, 3, 3, 3};  // 1, 2, 4, 6, 8, 9 unused
    const int64_t n = static_cast<int64_t>(index.size());
    const auto w = cast<T>(random_vector(num * dim, -1, 1, 131));
    const auto dy = cast<T>(random_vector(n * dim, -1, 1, 132));
    std::vector<T> y(n * dim, T(-7));
    kc::embedding_forward(y.data(), w.data(), index.data(), n, num, dim);
    for (int64_t p = 0; p < n; ++p)
      for (int64_t c = 0; c < dim; ++c) REQUIRE(y[p * dim + c] == w[index[p] * dim + c]);

    std::vector<T> dw(num * dim, T(-7));
    kc::embedding_backward(dw.data(), dy.data(), index.data(), n, num, dim);
    std::vector<T> want(num * dim, T(0));  // same type and order: bit-exact
    for (int64_t p = 0; p < n; ++p)
      for (int64_t c = 0; c < dim; ++c) want[index[p] * dim + c] += dy[p * dim + c];
    INFO("dim " << dim);
    CHECK(dw == want);
    for (const int64_t e : {1, 2, 4, 6, 8, 9})
      for (int64_t c = 0; c < dim; ++c) CHECK(dw[e * dim + c] == T(0));
  }
}

TEST_CASE("embedding: out-of-range indices are rejected naming the value and range", "[kernels][embedding]") {
  const std::vector<float> w(10, 1.f);
  const std::vector<int64_t> index = {0, 4, 5, -1};
  std::vector<float> y(8), dw(10);
  try {
    kc::embedding_forward(y.data(), w.data(), index.data(), 4, 5, 2);
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("index 5") != std::string::npos);
    CHECK(msg.find("[0, 5)") != std::string::npos);
  }
  CHECK_THROWS_AS(kc::embedding_backward(dw.data(), y.data(), index.data(), 4, 5, 2), std::invalid_argument);
  // No indices at all: the gradient is zero.
  std::vector<float> dw2(10, -7.f);
  kc::embedding_backward<float>(dw2.data(), nullptr, nullptr, 0, 5, 2);
  for (float v : dw2) CHECK(v == 0.f);
}

}  // namespace
