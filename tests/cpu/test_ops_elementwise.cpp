// Engine-level element-wise ops (engine/ops.h "element-wise"): forward against naive double references in
// float64 and float32, gradients against finite differences, awkward and empty shapes, and input validation.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "tests/common/check.h"
#include "tests/common/reference.h"

namespace {

using namespace mixgrad;
namespace mt = mixgrad::testing;
using Catch::Contains;
using mt::fwd_tol;
using mt::make;
using mt::make_leaf;
using mt::rounded;
using mt::uniform;
using mt::values;

// Values 0.2·k + offset + jitter: two vectors with offsets 0.05 and 0.15 never come closer than 0.06, which keeps
// maximum/minimum away from their kink and divisors away from zero.
std::vector<double> gapped(int64_t n, double offset, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int> k(-10, 10);
  std::uniform_real_distribution<double> jitter(-0.02, 0.02);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = 0.2 * k(gen) + offset + jitter(gen);
  return v;
}

// ---- broadcasting reference -------------------------------------------------------------------------------
// v (shape `in`) read at every index of `out` with size-1 and missing leading dims repeated.
std::vector<double> broadcast_to(const std::vector<double>& v, const Shape& in, const Shape& out) {
  const int64_t n = shape_numel(out);
  std::vector<double> r(static_cast<size_t>(n));
  const size_t shift = out.size() - in.size();
  for (int64_t flat = 0; flat < n; ++flat) {
    int64_t rem = flat, src = 0, in_stride = 1;
    for (size_t d = out.size(); d-- > 0;) {
      const int64_t idx = rem % out[d];
      rem /= out[d];
      if (d >= shift) {
        const int64_t size = in[d - shift];
        if (size != 1) src += idx * in_stride;
        in_stride *= size;
      }
    }
    r[size_t(flat)] = v[size_t(src)];
  }
  return r;
}

// Sum of `g` (shape `from`) down to `to`: the adjoint of broadcast_to.
std::vector<double> reduce_to(const std::vector<double>& g, const Shape& from, const Shape& to) {
  std::vector<double> r(static_cast<size_t>(shape_numel(to)), 0.0);
  const size_t shift = from.size() - to.size();
  for (int64_t flat = 0; flat < shape_numel(from); ++flat) {
    int64_t rem = flat, dst = 0, stride = 1;
    for (size_t d = from.size(); d-- > 0;) {
      const int64_t idx = rem % from[d];
      rem /= from[d];
      if (d >= shift) {
        const int64_t size = to[d - shift];
        if (size != 1) dst += idx * stride;
        stride *= size;
      }
    }
    r[size_t(dst)] += g[size_t(flat)];
  }
  return r;
}

struct BinaryCase {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
  std::function<double(double, double)> ref;
};

std::vector<BinaryCase> binary_cases() {
  return {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, [](double x, double y) { return x + y; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, [](double x, double y) { return x - y; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, [](double x, double y) { return x * y; }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, [](double x, double y) { return x / y; }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); },
       [](double x, double y) { return std::max(x, y); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); },
       [](double x, double y) { return std::min(x, y); }},
  };
}

struct ShapePair {
  Shape a, b;
};

}  // namespace

TEST_CASE("binary ops match a broadcasting reference in float64 and float32", "[ops][elementwise]") {
  const std::vector<ShapePair> pairs = {
      {{7}, {7}},
      {{3, 1, 33}, {5, 1}},
      {{1}, {257}},
      {{}, {2, 3}},
      {{2, 3}, {}},
      {{}, {}},
      {{1, 5000}, {3, 1}},
      {{0, 3}, {1, 3}},
      {{4, 0}, {4, 1}},
      {{1, 1, 1}, {7}},
      {{2, 1, 4, 1, 3}, {1, 3, 1, 5, 1}},
  };
  uint64_t seed = 1;
  for (DType dt : {DType::f64, DType::f32})
    for (const ShapePair& p : pairs)
      for (const BinaryCase& c : binary_cases()) {
        const std::vector<double> va = rounded(gapped(shape_numel(p.a), 0.05, seed++), dt);
        const std::vector<double> vb = rounded(gapped(shape_numel(p.b), 0.15, seed++), dt);
        const Shape out = mt::broadcast_shapes(p.a, p.b);
        const std::vector<double> ea = broadcast_to(va, p.a, out), eb = broadcast_to(vb, p.b, out);
        std::vector<double> expect(ea.size());
        for (size_t i = 0; i < ea.size(); ++i) expect[i] = c.ref(ea[i], eb[i]);
        INFO(c.name << " " << shape_str(p.a) << " with " << shape_str(p.b) << " " << dtype_name(dt));
        const Tensor y = c.op(make(va, p.a, dt), make(vb, p.b, dt));
        REQUIRE(y.dtype() == dt);
        REQUIRE(y.shape() == out);
        REQUIRE_CLOSE(mt::all_close(y, make(expect, out), fwd_tol(dt)));
      }
}

TEST_CASE("binary ops: gradients match finite differences, including broadcast operands", "[ops][elementwise]") {
  const std::vector<ShapePair> pairs = {
      {{3, 4}, {3, 4}}, {{2, 1, 3}, {4, 1}}, {{}, {2, 3}}, {{5}, {1}}, {{1, 3}, {7, 1}}};
  uint64_t seed = 100;
  for (const ShapePair& p : pairs)
    for (const BinaryCase& c : binary_cases()) {
      INFO(c.name << " " << shape_str(p.a) << " with " << shape_str(p.b));
      Tensor a = make_leaf(gapped(shape_numel(p.a), 0.05, seed++), p.a);
      Tensor b = make_leaf(gapped(shape_numel(p.b), 0.15, seed++), p.b);
      REQUIRE_CLOSE(mt::gradcheck([&](const std::vector<Tensor>& in) { return c.op(in[0], in[1]); }, {a, b}));
    }
}

TEST_CASE("binary ops: only operands that require grad receive one", "[ops][elementwise][autograd]") {
  Tensor a = make({1, 2, 3}, {3});  // constant
  Tensor b = make_leaf({0.5, -1, 2, 4, 5, 6}, {2, 3});
  sum(mul(a, b)).backward();
  REQUIRE_FALSE(a.grad().defined());
  REQUIRE(b.grad().defined());
  REQUIRE_CLOSE(mt::all_close(b.grad(), make({1, 2, 3, 1, 2, 3}, {2, 3}), fwd_tol(DType::f64)));
}

TEST_CASE("maximum and minimum split the gradient evenly on ties", "[ops][elementwise]") {
  Tensor a = make_leaf({1, 2, 3}, {3});
  Tensor b = make_leaf({1, 0, 5}, {3});
  sum(maximum(a, b)).backward();
  REQUIRE(values(a.grad()) == std::vector<double>{0.5, 1, 0});
  REQUIRE(values(b.grad()) == std::vector<double>{0.5, 0, 1});
  a.zero_grad();
  b.zero_grad();
  sum(minimum(a, b)).backward();
  REQUIRE(values(a.grad()) == std::vector<double>{0.5, 0, 1});
  REQUIRE(values(b.grad()) == std::vector<double>{0.5, 1, 0});
}

namespace {
struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo, hi;
  bool avoid_zero = false;  // draw from [lo, -0.05] ∪ [0.05, hi] (kinks at 0)
};

constexpr double kPi = 3.14159265358979323846;

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, -3, 3},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }, -3, 3},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, 0.1, 5},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, 0.1, 5},
      {"pow 2", [](const Tensor& x) { return pow(x, 2.0); }, [](double x) { return x * x; }, -2, 2},
      {"pow 3", [](const Tensor& x) { return pow(x, 3.0); }, [](double x) { return x * x * x; }, -2, 2},
      {"pow 0.5", [](const Tensor& x) { return pow(x, 0.5); }, [](double x) { return std::sqrt(x); }, 0.1, 4},
      {"pow -1.5", [](const Tensor& x) { return pow(x, -1.5); }, [](double x) { return 1.0 / (x * std::sqrt(x)); }, 0.2,
       4},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, -3, 3},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, [](double x) { return 1.0 / (1.0 + std::exp(-x)); }, -6,
       6},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0.0; }, -3, 3, true},
      {"gelu", [](const Tensor& x) { return gelu(x); },
       [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }, -4, 4},
      {"gelu tanh", [](const Tensor& x) { return gelu(x, "tanh"); },
       [](double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / kPi) * (x + 0.044715 * x * x * x))); }, -4, 4},
      {"silu", [](const Tensor& x) { return silu(x); }, [](double x) { return x / (1.0 + std::exp(-x)); }, -6, 6},
      {"add_scalar", [](const Tensor& x) { return add_scalar(x, 0.75); }, [](double x) { return x + 0.75; }, -3, 3},
      {"mul_scalar", [](const Tensor& x) { return mul_scalar(x, -1.25); }, [](double x) { return -1.25 * x; }, -3, 3},
  };
}

std::vector<double> unary_inputs(const UnaryCase& c, int64_t n, uint64_t seed) {
  std::vector<double> v = uniform(n, c.lo, c.hi, seed);
  if (c.avoid_zero)
    for (double& x : v) x = x < 0 ? std::min(x, -0.05) : std::max(x, 0.05);
  return v;
}
}  // namespace

TEST_CASE("unary ops match the reference formula on awkward sizes", "[ops][elementwise]") {
  const std::vector<Shape> shapes = {{0}, {1}, {7}, {33}, {257}, {5000}, {3, 0, 2}, {1, 257}, {3, 7, 11}, {}};
  uint64_t seed = 200;
  for (DType dt : {DType::f64, DType::f32})
    for (const Shape& s : shapes)
      for (const UnaryCase& c : unary_cases()) {
        INFO(c.name << " " << shape_str(s) << " " << dtype_name(dt));
        const std::vector<double> x = rounded(unary_inputs(c, shape_numel(s), seed++), dt);
        std::vector<double> expect(x.size());
        for (size_t i = 0; i < x.size(); ++i) expect[i] = c.ref(x[i]);
        const Tensor y = c.op(make(x, s, dt));
        REQUIRE(y.dtype() == dt);
        REQUIRE(y.shape() == s);
        REQUIRE_CLOSE(mt::all_close(y, make(expect, s), fwd_tol(dt)));
      }
}

TEST_CASE("unary ops: gradients match finite differences", "[ops][elementwise]") {
  uint64_t seed = 300;
  for (const Shape& s : {Shape{7}, Shape{3, 5}, Shape{}})
    for (const UnaryCase& c : unary_cases()) {
      INFO(c.name << " " << shape_str(s));
      Tensor x = make_leaf(unary_inputs(c, shape_numel(s), seed++), s);
      REQUIRE_CLOSE(mt::gradcheck([&](const std::vector<Tensor>& in) { return c.op(in[0]); }, {x}));
    }
}

TEST_CASE("pow with exponent 0 is 1 with a zero gradient", "[ops][elementwise]") {
  Tensor x = make_leaf({-2, 0.5, 3}, {3});
  Tensor y = pow(x, 0.0);
  REQUIRE(values(y) == std::vector<double>{1, 1, 1});
  sum(y).backward();
  REQUIRE(values(x.grad()) == std::vector<double>{0, 0, 0});
}

TEST_CASE("sigmoid and silu stay finite and exact at large |x|", "[ops][elementwise]") {
  const std::vector<double> x = {-100, -50, 50, 100};
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    std::vector<double> es, ess;
    for (double v : x) {
      es.push_back(1.0 / (1.0 + std::exp(-v)));
      ess.push_back(v / (1.0 + std::exp(-v)));
    }
    const Tensor s = sigmoid(make(x, {4}, dt)), sl = silu(make(x, {4}, dt));
    for (double v : values(s)) REQUIRE(std::isfinite(v));
    for (double v : values(sl)) REQUIRE(std::isfinite(v));
    REQUIRE_CLOSE(mt::all_close(s, make(es, {4}), fwd_tol(dt)));
    REQUIRE_CLOSE(mt::all_close(sl, make(ess, {4}), fwd_tol(dt)));
  }
  Tensor xl = make_leaf(x, {4});
  sum(sigmoid(xl)).backward();
  for (double g : values(xl.grad())) REQUIRE((std::isfinite(g) && g >= 0 && g < 1e-20));
}

TEST_CASE("gelu rejects an unknown approximation", "[ops][elementwise][errors]") {
  REQUIRE_MG_ERROR(gelu(make({1}, {1}), "fast"), Contains("gelu") && Contains("fast"));
}

TEST_CASE("where selects with a broadcast uint8 condition", "[ops][elementwise]") {
  const Shape sc{3, 1}, sa{1, 4}, sb{3, 4};
  const std::vector<uint8_t> cond = {1, 0, 7};
  const std::vector<double> va = uniform(4, -1, 1, 400), vb = uniform(12, -1, 1, 401);
  const Shape out{3, 4};
  std::vector<double> expect(12);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) expect[size_t(i * 4 + j)] = cond[size_t(i)] ? va[size_t(j)] : vb[size_t(i * 4 + j)];
  for (DType dt : {DType::f64, DType::f32}) {
    const Tensor y = where(from_vector<uint8_t>(cond, sc), make(va, sa, dt), make(vb, sb, dt));
    REQUIRE(y.shape() == out);
    REQUIRE_CLOSE(mt::all_close(y, make(rounded(expect, dt), out), fwd_tol(dt)));
  }
  // A 0-d value operand broadcasts too.
  const Tensor y0 = where(from_vector<uint8_t>(cond, sc), make(va, sa), make({-9}, {}));
  std::vector<double> e0(12);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) e0[size_t(i * 4 + j)] = cond[size_t(i)] ? va[size_t(j)] : -9.0;
  REQUIRE_CLOSE(mt::all_close(y0, make(e0, out), fwd_tol(DType::f64)));
}

TEST_CASE("where: gradients match finite differences", "[ops][elementwise]") {
  autograd::clear_tape();
  Tensor a = make_leaf(uniform(4, -1, 1, 410), {1, 4}), b = make_leaf(uniform(12, -1, 1, 411), {3, 4});
  const Tensor c = from_vector<uint8_t>({1, 0, 7}, {3, 1});
  REQUIRE_CLOSE(mt::gradcheck([&](const std::vector<Tensor>& in) { return where(c, in[0], in[1]); }, {a, b}));
  Tensor x = make_leaf({1, 2, 3}, {3}), k = make({4, 5, 6}, {3});
  sum(where(from_vector<uint8_t>({1, 0, 1}, {3}), x, k)).backward();
  REQUIRE(values(x.grad()) == std::vector<double>{1, 0, 1});
  autograd::clear_tape();
}

TEST_CASE("masked_fill writes the value where the mask is set", "[ops][elementwise]") {
  const std::vector<double> vx = uniform(6, -1, 1, 500);
  const std::vector<uint8_t> mask = {0, 1, 1};  // broadcast over rows of [2, 3]
  for (DType dt : {DType::f64, DType::f32}) {
    const Tensor y = masked_fill(make(vx, {2, 3}, dt), from_vector<uint8_t>(mask, {3}), -1e4);
    REQUIRE(y.dtype() == dt);
    const std::vector<double> r = rounded(vx, dt);
    REQUIRE_CLOSE(mt::all_close(y, make({r[0], -1e4, -1e4, r[3], -1e4, -1e4}, {2, 3}), fwd_tol(dt)));
  }
  REQUIRE_MG_ERROR(masked_fill(make(vx, {2, 3}), from_vector<uint8_t>({1, 0, 1, 0, 1, 0}, {3, 2}), 0.0),
                   Contains("masked_fill"));
  // A mask that broadcasts but would grow the input is rejected too.
  REQUIRE_MG_ERROR(masked_fill(make({1, 2, 3}, {3}), from_vector<uint8_t>({1, 0, 1, 0, 1, 0}, {2, 3}), 0.0),
                   Contains("masked_fill") && Contains("[2, 3]") && Contains("[3]"));
  REQUIRE_MG_ERROR(masked_fill(make(vx, {2, 3}), make({1, 0, 1}, {3}), 0.0), Contains("uint8"));
}

TEST_CASE("masked_fill: gradient is zero where the mask is set", "[ops][elementwise]") {
  autograd::clear_tape();
  const std::vector<double> vx = uniform(6, -1, 1, 500);
  const Tensor m = from_vector<uint8_t>({0, 1, 1}, {3});
  Tensor x = make_leaf(vx, {2, 3});
  sum(mul_scalar(masked_fill(x, m, 5.0), 3.0)).backward();
  REQUIRE(values(x.grad()) == std::vector<double>{3, 0, 0, 3, 0, 0});
  Tensor x2 = make_leaf(vx, {2, 3});
  REQUIRE_CLOSE(mt::gradcheck([&](const std::vector<Tensor>& in) { return masked_fill(in[0], m, 0.25); }, {x2}));
  autograd::clear_tape();
}

TEST_CASE("where rejects a non-uint8 condition and mismatched shapes", "[ops][elementwise][errors]") {
  REQUIRE_MG_ERROR(where(make({1, 0}, {2}), make({1, 2}, {2}), make({3, 4}, {2})),
                   Contains("where") && Contains("uint8"));
  REQUIRE_MG_ERROR(where(from_vector<uint8_t>({1, 0}, {2}), make({1, 2, 3}, {3}), make({3, 4}, {2})),
                   Contains("where") && Contains("[3]") && Contains("[2]"));
  REQUIRE_MG_ERROR(where(from_vector<uint8_t>({1, 0}, {2}), make({1, 2}, {2}), make({3, 4}, {2}, DType::f32)),
                   Contains("where") && Contains("float32") && Contains("float64"));
}

TEST_CASE("broadcast_shapes follows numpy rules and names both shapes on mismatch", "[ops][elementwise]") {
  REQUIRE(broadcast_shapes({3, 1, 5}, {4, 1}, "t") == Shape{3, 4, 5});
  REQUIRE(broadcast_shapes({}, {2}, "t") == Shape{2});
  REQUIRE(broadcast_shapes({0}, {1}, "t") == Shape{0});
  REQUIRE(broadcast_shapes({1, 7}, {33, 1}, "t") == Shape{33, 7});
  REQUIRE_MG_ERROR(broadcast_shapes({2, 3}, {4}, "myop"), Contains("myop") && Contains("[2, 3]") && Contains("[4]"));
  REQUIRE_MG_ERROR(broadcast_shapes({0}, {2}, "myop"), Contains("[0]") && Contains("[2]"));
}

TEST_CASE("sum_to_shape is the adjoint of broadcasting", "[ops][elementwise]") {
  const Shape from{2, 3, 4};
  const std::vector<double> g = uniform(24, -1, 1, 600);
  for (const Shape& to : {Shape{3, 1}, Shape{1, 4}, Shape{}, Shape{2, 1, 4}, Shape{4}, Shape{1, 1, 1}}) {
    INFO(shape_str(to));
    const Tensor r = sum_to_shape(make(g, from), to);
    REQUIRE(r.shape() == to);
    REQUIRE_CLOSE(mt::all_close(r, make(reduce_to(g, from, to), to), fwd_tol(DType::f64)));
  }
  const Tensor same = make(g, from);
  REQUIRE(sum_to_shape(same, from).same_storage(same));
  REQUIRE_MG_ERROR(sum_to_shape(make(g, from), {5}),
                   Contains("sum_to_shape") && Contains("[2, 3, 4]") && Contains("[5]"));
  REQUIRE_MG_ERROR(sum_to_shape(make(g, from), {1, 2, 3, 4}), Contains("sum_to_shape"));
}

TEST_CASE("operator overloads are the named ops", "[ops][elementwise]") {
  const Tensor a = make(gapped(12, 0.05, 700), {3, 4}), b = make(gapped(4, 0.15, 701), {4});
  REQUIRE_CLOSE(mt::bit_equal(a + b, add(a, b)));
  REQUIRE_CLOSE(mt::bit_equal(a - b, sub(a, b)));
  REQUIRE_CLOSE(mt::bit_equal(a * b, mul(a, b)));
  REQUIRE_CLOSE(mt::bit_equal(a / b, div(a, b)));
  REQUIRE_CLOSE(mt::bit_equal(-a, neg(a)));
  REQUIRE_CLOSE(mt::bit_equal(a + 2.5, add_scalar(a, 2.5)));
  REQUIRE_CLOSE(mt::bit_equal(a * 2.5, mul_scalar(a, 2.5)));
  REQUIRE_CLOSE(mt::bit_equal(2.5 * a, mul_scalar(a, 2.5)));
  const std::vector<double> va = values(a);
  std::vector<double> minus(va.size()), over(va.size());
  for (size_t i = 0; i < va.size(); ++i) minus[i] = va[i] - 2.5, over[i] = va[i] / 3.0;
  REQUIRE_CLOSE(mt::all_close(a - 2.5, make(minus, {3, 4}), fwd_tol(DType::f64)));
  REQUIRE_CLOSE(mt::all_close(a / 3.0, make(over, {3, 4}), fwd_tol(DType::f64)));
  // Overloads are differentiable: d/dx (2x·x − x/4 + 1) = 4x − 1/4.
  Tensor x = make_leaf({-1, 0.5, 2}, {3});
  sum(2.0 * x * x - x / 4.0 + 1.0).backward();
  REQUIRE_CLOSE(mt::all_close(x.grad(), make({-4.25, 1.75, 7.75}, {3}), fwd_tol(DType::f64)));
}

TEST_CASE("element-wise ops reject bad dtypes and shapes with clear messages", "[ops][elementwise][errors]") {
  const Tensor f32 = make({1, 2, 3}, {3}, DType::f32), f64 = make({1, 2, 3}, {3});
  REQUIRE_MG_ERROR(add(f32, f64), Contains("add") && Contains("float32") && Contains("float64"));
  REQUIRE_MG_ERROR(mul(f64, f32), Contains("mul") && Contains("same dtype"));
  const Tensor i64 = from_vector<int64_t>({1, 2, 3}, {3});
  REQUIRE_MG_ERROR(exp(i64), Contains("exp") && Contains("floating-point") && Contains("int64"));
  REQUIRE_MG_ERROR(relu(i64), Contains("relu") && Contains("int64"));
  REQUIRE_MG_ERROR(add(i64, i64), Contains("add") && Contains("floating-point"));
  REQUIRE_MG_ERROR(sub(make({1, 2, 3, 4, 5, 6}, {2, 3}), make({1, 2}, {2})),
                   Contains("sub") && Contains("[2, 3]") && Contains("[2]"));
  REQUIRE_MG_ERROR(maximum(make(std::vector<double>(6, 1.0), {3, 2}), make(std::vector<double>(6, 1.0), {2, 3})),
                   Contains("maximum") && Contains("[3, 2]") && Contains("[2, 3]"));
  REQUIRE_MG_ERROR(make({1}, {1}) + make({1, 2}, {2}) * make({1, 2, 3}, {3}), Contains("[2]") && Contains("[3]"));
}
