// Engine-level matmul (every torch.matmul form) and linear against a naive triple loop in float64 and float32,
// gradients against finite differences, validation messages, and the autograd tape's contract (fan-out, grad
// accumulation, NoGradGuard, tape clearing, consumed graphs, no leaks across training-like iterations).
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
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
using mt::unravel;
using mt::values;

// Flat index into a batch of shape `in` for a batch index of the (broadcast) shape `out`.
int64_t broadcast_index(const std::vector<int64_t>& out_idx, const Shape& in) {
  const size_t shift = out_idx.size() - in.size();
  int64_t flat = 0;
  for (size_t d = 0; d < in.size(); ++d) flat = flat * in[d] + (in[d] == 1 ? 0 : out_idx[d + shift]);
  return flat;
}

// torch.matmul by definition: 1-D operands promoted (and the added dim dropped), batch dims broadcast.
std::vector<double> matmul_ref(const std::vector<double>& a, Shape sa, const std::vector<double>& b, Shape sb,
                               Shape& out_shape) {
  const bool a1 = sa.size() == 1, b1 = sb.size() == 1;
  if (a1) sa = {1, sa[0]};
  if (b1) sb = {sb[0], 1};
  const int64_t m = sa[sa.size() - 2], k = sa.back(), n = sb.back();
  const Shape ba(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
  const Shape batch = mt::broadcast_shapes(ba, bb);
  const int64_t nb = shape_numel(batch);
  std::vector<double> out(size_t(nb * m * n), 0.0);
  for (int64_t p = 0; p < nb; ++p) {
    const std::vector<int64_t> bi = unravel(p, batch);
    const int64_t pa = broadcast_index(bi, ba), pb = broadcast_index(bi, bb);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t t = 0; t < k; ++t) acc += a[size_t((pa * m + i) * k + t)] * b[size_t((pb * k + t) * n + j)];
        out[size_t((p * m + i) * n + j)] = acc;
      }
  }
  out_shape = batch;
  if (!a1) out_shape.push_back(m);
  if (!b1) out_shape.push_back(n);
  return out;
}

// y = x·Wᵀ + b over the last dim of x.
std::vector<double> linear_ref(const std::vector<double>& x, const Shape& sx, const std::vector<double>& w, int64_t out,
                               const std::vector<double>* bias, Shape& out_shape) {
  const int64_t in = sx.back(), rows = shape_numel(sx) / in;
  std::vector<double> y(size_t(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = bias ? (*bias)[size_t(o)] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += x[size_t(r * in + i)] * w[size_t(o * in + i)];
      y[size_t(r * out + o)] = acc;
    }
  out_shape = sx;
  out_shape.back() = out;
  return y;
}

struct ShapePair {
  Shape a, b;
};

}  // namespace

TEST_CASE("matmul matches the reference in every form", "[ops][linalg]") {
  const std::vector<ShapePair> pairs = {
      {{7}, {7}},                 // 1-D · 1-D -> []
      {{7}, {7, 5}},              // 1-D · 2-D -> [5]
      {{3, 7}, {7}},              // 2-D · 1-D -> [3]
      {{3, 7}, {7, 5}},           // 2-D · 2-D
      {{2, 3, 7}, {7, 5}},        // batched · 2-D
      {{2, 3, 7}, {2, 7, 5}},     // batched · batched
      {{2, 1, 3, 4}, {5, 4, 6}},  // broadcast batch dims -> [2, 5, 3, 6]
      {{3, 1, 2, 4}, {1, 5, 4, 3}},
      {{4}, {2, 4, 3}},        // 1-D · batched -> [2, 3]
      {{2, 3, 4}, {4}},        // batched · 1-D -> [2, 3]
      {{1, 3, 4}, {2, 4, 5}},  // batch of one on the left
      {{2, 3, 4}, {1, 4, 5}},  // batch of one on the right
      {{3, 4}, {2, 4, 5}},     // 2-D · batched
      {{1, 1}, {1, 1}},
      {{1, 33}, {33, 257}},  // single row, odd sizes
      {{33, 257}, {257, 7}},
      {{7, 3}, {3, 1}},
  };
  uint64_t seed = 1;
  for (DType dt : {DType::f64, DType::f32})
    for (const ShapePair& p : pairs) {
      // Non-negative float32 inputs: no cancellation, so the relative tolerance applies to every output.
      const double lo = dt == DType::f32 ? 0.0 : -1.0;
      const std::vector<double> va = rounded(uniform(shape_numel(p.a), lo, 1, seed++), dt);
      const std::vector<double> vb = rounded(uniform(shape_numel(p.b), lo, 1, seed++), dt);
      Shape out;
      const std::vector<double> expect = matmul_ref(va, p.a, vb, p.b, out);
      INFO(shape_str(p.a) << " @ " << shape_str(p.b) << " " << dtype_name(dt));
      const Tensor y = matmul(make(va, p.a, dt), make(vb, p.b, dt));
      REQUIRE(y.dtype() == dt);
      REQUIRE(y.shape() == out);
      REQUIRE_CLOSE(mt::all_close(y, make(expect, out), fwd_tol(dt)));
    }
}

TEST_CASE("matmul: long inner dimension and empty dimensions", "[ops][linalg]") {
  const std::vector<ShapePair> pairs = {{{5000}, {5000}}, {{1, 5000}, {5000, 3}}, {{2, 5000}, {5000}}};
  uint64_t seed = 50;
  for (const ShapePair& p : pairs) {
    const std::vector<double> va = uniform(shape_numel(p.a), -1, 1, seed++),
                              vb = uniform(shape_numel(p.b), -1, 1, seed++);
    Shape out;
    const std::vector<double> expect = matmul_ref(va, p.a, vb, p.b, out);
    INFO(shape_str(p.a) << " @ " << shape_str(p.b));
    REQUIRE_CLOSE(mt::all_close(matmul(make(va, p.a), make(vb, p.b)), make(expect, out), fwd_tol(DType::f64)));
  }
  // Inner dimension 0: zeros (whatever the output buffer held before).
  for (DType dt : {DType::f64, DType::f32}) {
    const Tensor z = matmul(make({}, {3, 0}, dt), make({}, {0, 4}, dt));
    REQUIRE(z.shape() == Shape{3, 4});
    REQUIRE(values(z) == std::vector<double>(12, 0.0));
    const Tensor zb = matmul(make({}, {2, 3, 0}, dt), make({}, {2, 0, 4}, dt));
    REQUIRE(zb.shape() == Shape{2, 3, 4});
    REQUIRE(values(zb) == std::vector<double>(24, 0.0));
    REQUIRE(matmul(make({}, {0}, dt), make({}, {0}, dt)).item() == 0.0);
  }
  REQUIRE(matmul(make({}, {0, 3}), make(uniform(12, -1, 1, 60), {3, 4})).shape() == Shape{0, 4});
  REQUIRE(matmul(make({}, {2, 0, 3}), make(uniform(15, -1, 1, 61), {3, 5})).shape() == Shape{2, 0, 5});
  REQUIRE(matmul(make({}, {0, 2, 3}), make(uniform(15, -1, 1, 62), {3, 5})).shape() == Shape{0, 2, 5});
  // Gradient with an empty inner dimension: empty gradients of the right shapes.
  Tensor a = make_leaf({}, {3, 0}), b = make_leaf({}, {0, 4});
  sum(matmul(a, b)).backward();
  REQUIRE(a.grad().shape() == Shape{3, 0});
  REQUIRE(b.grad().shape() == Shape{0, 4});
}

TEST_CASE("matmul: gradients match finite differences in every form", "[ops][linalg]") {
  const std::vector<ShapePair> pairs = {
      {{4}, {4}},
      {{4}, {4, 3}},
      {{3, 4}, {4}},
      {{3, 4}, {4, 2}},
      {{2, 3, 4}, {4, 2}},
      {{2, 3, 4}, {2, 4, 2}},
      {{2, 1, 3, 4}, {5, 4, 2}},
      {{4}, {2, 4, 3}},
      {{2, 3, 4}, {4}},
      {{1, 3, 4}, {2, 4, 2}},
      {{2, 3, 4}, {1, 4, 2}},
      {{3, 4}, {2, 4, 2}},
      {{3, 1, 2, 3}, {1, 2, 3, 2}},
  };
  uint64_t seed = 100;
  for (const ShapePair& p : pairs) {
    INFO(shape_str(p.a) << " @ " << shape_str(p.b));
    Tensor a = make_leaf(uniform(shape_numel(p.a), -1, 1, seed++), p.a);
    Tensor b = make_leaf(uniform(shape_numel(p.b), -1, 1, seed++), p.b);
    REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, b}));
  }
  // One operand constant: only the other gets a gradient.
  Tensor a = make_leaf(uniform(6, -1, 1, 150), {2, 3});
  Tensor c = make(uniform(12, -1, 1, 151), {2, 3, 2});
  REQUIRE_CLOSE(mt::gradcheck([&](const std::vector<Tensor>& in) { return matmul(in[0], c); }, {a}));
  REQUIRE_CLOSE(mt::gradcheck([&](const std::vector<Tensor>& in) { return matmul(c, in[0]); }, {a}));
  REQUIRE_FALSE(c.grad().defined());
}

TEST_CASE("matmul rejects incompatible operands with clear messages", "[ops][linalg][errors]") {
  const Tensor a23 = make(uniform(6, -1, 1, 200), {2, 3}), b45 = make(uniform(20, -1, 1, 201), {4, 5});
  REQUIRE_MG_ERROR(matmul(a23, b45),
                   Contains("matmul") && Contains("[2, 3]") && Contains("[4, 5]") && Contains("cannot be multiplied"));
  REQUIRE_MG_ERROR(matmul(make(uniform(24, -1, 1, 202), {2, 3, 4}), make(uniform(60, -1, 1, 203), {3, 4, 5})),
                   Contains("matmul") && Contains("broadcast"));
  REQUIRE_MG_ERROR(matmul(make({1, 2, 3}, {3}), make({1, 2, 3, 4}, {4})),
                   Contains("matmul") && Contains("3") && Contains("4"));
  REQUIRE_MG_ERROR(matmul(make({1, 2, 3}, {3}), b45), Contains("matmul") && Contains("cannot be multiplied"));
  REQUIRE_MG_ERROR(matmul(a23, make({1, 2}, {2})), Contains("matmul") && Contains("cannot be multiplied"));
  REQUIRE_MG_ERROR(matmul(make({2}, {}), a23), Contains("matmul") && Contains("at least one dimension"));
  REQUIRE_MG_ERROR(matmul(a23, make(uniform(6, -1, 1, 204), {3, 2}, DType::f32)),
                   Contains("matmul") && Contains("float64") && Contains("float32"));
  REQUIRE_MG_ERROR(matmul(from_vector<int64_t>({1, 2}, {1, 2}), from_vector<int64_t>({1, 2}, {2, 1})),
                   Contains("matmul") && Contains("floating-point"));
}

// The process's matmul precision for one scope.
struct PrecisionScope {
  explicit PrecisionScope(MatmulPrecision p) { set_matmul_precision(p); }
  ~PrecisionScope() { set_matmul_precision(MatmulPrecision::fp32); }
};

Tensor bf16_rounded(const Tensor& t) {
  std::vector<float> v = t.to_vector<float>();
  for (float& e : v) e = std::bit_cast<float>(kernels::bf16_round_bits(std::bit_cast<uint32_t>(e)));
  return from_vector(v, t.shape());
}

TEST_CASE("matmul precision bf16: products of bf16-rounded operands, fp32 sums, forward and backward",
          "[ops][linalg][precision]") {
  // On the CPU, bf16 rounds each operand and runs the fp32 GEMM, so the result is bitwise the fp32 product of
  // the rounded operands; the backward's products (dA = dY·Bᵀ, dB = Aᵀ·dY) are rounded the same way.
  manual_seed(31);
  const Tensor a = randn({2, 3, 37, 50}), b = randn({50, 29}), g = randn({2, 3, 37, 29});
  Tensor al = a.detach(), bl = b.detach();
  al.requires_grad_(), bl.requires_grad_();
  Tensor y;
  {
    PrecisionScope bf16(MatmulPrecision::bf16);
    CHECK(matmul_precision() == MatmulPrecision::bf16);
    CHECK(allow_tf32());  // bf16 allows anything TF32 allows
    y = matmul(al, bl);
    autograd::backward(y, g);
  }
  CHECK(matmul_precision() == MatmulPrecision::fp32);
  // The same calls in fp32 on rounded a, b and dY.
  Tensor ar = bf16_rounded(a), br = bf16_rounded(b);
  ar.requires_grad_(), br.requires_grad_();
  const Tensor yr = matmul(ar, br);
  autograd::backward(yr, bf16_rounded(g));
  REQUIRE_CLOSE(mt::bit_equal(y, yr));
  REQUIRE_CLOSE(mt::bit_equal(al.grad(), ar.grad()));
  REQUIRE_CLOSE(mt::bit_equal(bl.grad(), br.grad()));
  // And it is not the fp32 product: the rounding is real.
  const Tensor y32 = matmul(a, b);
  CHECK_FALSE(mt::bit_equal(y, y32).ok);
  REQUIRE_CLOSE(mt::all_close(y, y32, mt::Tolerance{5e-2, 0.15}));  // k = 50 sums of ~2^-9-relative errors
}

TEST_CASE("matmul precision: names parse, unknown names are refused, set_allow_tf32 maps onto it",
          "[ops][linalg][precision]") {
  CHECK(parse_matmul_precision("fp32") == MatmulPrecision::fp32);
  CHECK(parse_matmul_precision("tf32") == MatmulPrecision::tf32);
  CHECK(parse_matmul_precision("bf16") == MatmulPrecision::bf16);
  CHECK_THROWS_WITH(parse_matmul_precision("fp16"), Contains("expected fp32, tf32 or bf16"));
  set_allow_tf32(true);
  CHECK(matmul_precision() == MatmulPrecision::tf32);
  set_allow_tf32(false);
  CHECK(matmul_precision() == MatmulPrecision::fp32);
  CHECK_FALSE(allow_tf32());
  // tf32 leaves CPU products in fp32.
  manual_seed(32);
  const Tensor a = randn({17, 33}), b = randn({33, 9});
  const Tensor y32 = matmul(a, b);
  PrecisionScope tf32(MatmulPrecision::tf32);
  REQUIRE_CLOSE(mt::bit_equal(matmul(a, b), y32));
}

TEST_CASE("linear matches the reference on 1-D, 2-D and 3-D inputs, with and without bias", "[ops][linalg]") {
  struct Case {
    Shape x;
    int64_t out;
  };
  const std::vector<Case> cases = {{{5, 7}, 3},    {{2, 5, 7}, 3},  {{7}, 4},   {{1, 1}, 1},
                                   {{33, 257}, 7}, {{3, 1, 33}, 9}, {{0, 7}, 3}};
  uint64_t seed = 300;
  for (DType dt : {DType::f64, DType::f32})
    for (const Case& c : cases)
      for (bool with_bias : {false, true}) {
        const int64_t in = c.x.back();
        const double lo = dt == DType::f32 ? 0.0 : -1.0;
        const std::vector<double> vx = rounded(uniform(shape_numel(c.x), lo, 1, seed++), dt);
        const std::vector<double> vw = rounded(uniform(c.out * in, lo, 1, seed++), dt);
        const std::vector<double> vb = rounded(uniform(c.out, lo, 1, seed++), dt);
        Shape out;
        const std::vector<double> expect = linear_ref(vx, c.x, vw, c.out, with_bias ? &vb : nullptr, out);
        INFO("x " << shape_str(c.x) << " out " << c.out << " bias " << with_bias << " " << dtype_name(dt));
        const Tensor b = with_bias ? make(vb, {c.out}, dt) : Tensor();
        const Tensor y = linear(make(vx, c.x, dt), make(vw, {c.out, in}, dt), b);
        REQUIRE(y.shape() == out);
        REQUIRE(y.dtype() == dt);
        REQUIRE_CLOSE(mt::all_close(y, make(expect, out), fwd_tol(dt)));
        // The bias must not be modified by being used as the GEMM's initial C.
        if (with_bias) REQUIRE(values(b) == vb);
      }
}

TEST_CASE("linear: gradients match finite differences", "[ops][linalg]") {
  uint64_t seed = 400;
  for (const Shape& sx : {Shape{5, 4}, Shape{2, 3, 4}, Shape{4}})
    for (bool with_bias : {false, true}) {
      INFO("x " << shape_str(sx) << " bias " << with_bias);
      Tensor x = make_leaf(uniform(shape_numel(sx), -1, 1, seed++), sx);
      Tensor w = make_leaf(uniform(12, -1, 1, seed++), {3, 4});
      Tensor b = with_bias ? make_leaf(uniform(3, -1, 1, seed++), {3}) : Tensor();
      std::vector<Tensor> inputs = {x, w};
      if (with_bias) inputs.push_back(b);
      REQUIRE_CLOSE(mt::gradcheck(
          [&](const std::vector<Tensor>& in) { return linear(in[0], in[1], with_bias ? in[2] : Tensor()); }, inputs));
    }
  // Frozen weight, trainable bias (and the reverse).
  Tensor x = make(uniform(8, -1, 1, 450), {2, 4});
  Tensor w = make(uniform(12, -1, 1, 451), {3, 4});
  Tensor b = make_leaf(uniform(3, -1, 1, 452), {3});
  sum(linear(x, w, b)).backward();
  REQUIRE(values(b.grad()) == std::vector<double>{2, 2, 2});
  REQUIRE_FALSE(w.grad().defined());
  Tensor w2 = make_leaf(uniform(12, -1, 1, 453), {3, 4});
  REQUIRE_CLOSE(mt::gradcheck([&](const std::vector<Tensor>& in) { return linear(x, in[0], b.detach()); }, {w2}));
}

TEST_CASE("linear rejects bad shapes with clear messages", "[ops][linalg][errors]") {
  const Tensor x = make(uniform(10, -1, 1, 500), {2, 5}), w = make(uniform(12, -1, 1, 501), {3, 4});
  REQUIRE_MG_ERROR(linear(x, w), Contains("linear") && Contains("in_features 4") && Contains("[2, 5]"));
  REQUIRE_MG_ERROR(linear(make(uniform(8, -1, 1, 502), {2, 4}), w, make({1, 2, 3, 4}, {4})),
                   Contains("linear") && Contains("bias") && Contains("[4]") && Contains("[3]"));
  REQUIRE_MG_ERROR(linear(make(uniform(8, -1, 1, 503), {2, 4}), make({1, 2, 3, 4}, {4})),
                   Contains("linear") && Contains("2-D"));
  REQUIRE_MG_ERROR(linear(make(uniform(8, -1, 1, 504), {2, 4}, DType::f32), w),
                   Contains("linear") && Contains("float32") && Contains("float64"));
  REQUIRE_MG_ERROR(linear(make({1}, {}), w), Contains("linear"));
}

// ================================================= autograd =====================================================

TEST_CASE("autograd: a tensor used twice accumulates both gradients", "[ops][autograd]") {
  autograd::clear_tape();
  const std::vector<double> v = {-1.5, 0.25, 2.0};
  Tensor x = make_leaf(v, {3});
  sum(add(mul(x, x), x)).backward();  // d/dx (x² + x) = 2x + 1
  REQUIRE_CLOSE(mt::all_close(x.grad(), make({-2.0, 1.5, 5.0}, {3}), fwd_tol(DType::f64)));
  // Fan-out through an intermediate: h feeds two branches.
  Tensor y = make_leaf(v, {3});
  Tensor h = exp(y);
  sum(add(mul_scalar(h, 2.0), mul(h, y))).backward();  // d/dy (2e^y + y·e^y) = e^y (3 + y)
  std::vector<double> want;
  for (double e : v) want.push_back(std::exp(e) * (3 + e));
  REQUIRE_CLOSE(mt::all_close(y.grad(), make(want, {3}), fwd_tol(DType::f64)));
  Tensor m = make_leaf(uniform(9, -1, 1, 600), {3, 3});
  REQUIRE_CLOSE(
      mt::gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0], transpose(in[0], 0, 1)); }, {m}));
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return cat({in[0], in[0]}, 0); }, {m}));
}

TEST_CASE("autograd: leaf .grad accumulates across backward calls until cleared", "[ops][autograd]") {
  autograd::clear_tape();
  Tensor x = make_leaf({1, 2, 3}, {3});
  sum(mul_scalar(x, 3.0)).backward();
  REQUIRE(values(x.grad()) == std::vector<double>{3, 3, 3});
  sum(mul(x, x)).backward();
  REQUIRE(values(x.grad()) == std::vector<double>{5, 7, 9});
  x.zero_grad();
  REQUIRE_FALSE(x.grad().defined());
  sum(x).backward();
  REQUIRE(values(x.grad()) == std::vector<double>{1, 1, 1});
  // A gradient given to two inputs of one op is not shared between their .grad tensors.
  Tensor a = make_leaf({1, 2}, {2}), b = make_leaf({3, 4}, {2});
  sum(add(a, b)).backward();
  REQUIRE_FALSE(a.grad().same_storage(b.grad()));
  // backward with an explicit grad_output on a non-scalar.
  Tensor c = make_leaf({1, 2}, {2});
  mul_scalar(c, 2.0).backward(make({10, 100}, {2}));
  REQUIRE(values(c.grad()) == std::vector<double>{20, 200});
}

TEST_CASE("autograd: NoGradGuard records nothing and restores grad mode", "[ops][autograd]") {
  autograd::clear_tape();
  Tensor x = make_leaf(uniform(6, -1, 1, 700), {2, 3});
  Tensor w = make_leaf(uniform(12, -1, 1, 701), {4, 3});
  {
    NoGradGuard guard;
    REQUIRE_FALSE(autograd::grad_mode_enabled());
    Tensor y = sum(gelu(linear(x, w)), {1});
    y = cat({y, exp(y)}, 0).reshape({2, 2});
    y = matmul(transpose(y, 0, 1), y);
    REQUIRE_FALSE(y.requires_grad());
    { NoGradGuard nested; }
    REQUIRE_FALSE(autograd::grad_mode_enabled());
    REQUIRE(autograd::tape_size() == 0);
    REQUIRE_MG_ERROR(sum(y).backward(), Contains("backward") && Contains("does not require grad"));
  }
  REQUIRE(autograd::grad_mode_enabled());
  Tensor z = sum(mul(x, x));
  REQUIRE(z.requires_grad());
  REQUIRE(autograd::tape_size() > 0);
  autograd::clear_tape();
}

TEST_CASE("autograd: the tape is empty after backward; a consumed graph cannot be reused", "[ops][autograd]") {
  autograd::clear_tape();
  Tensor x = make_leaf(uniform(4, -1, 1, 800), {4});
  Tensor y = mul_scalar(tanh(x), 2.0);
  Tensor loss = sum(y);
  REQUIRE(autograd::tape_size() >= 3);
  loss.backward();
  REQUIRE(autograd::tape_size() == 0);
  REQUIRE(x.grad().defined());
  // y's producing node is gone: using y in a new graph is an error that says what to do.
  REQUIRE_MG_ERROR(mul(y, x), Contains("already consumed") && Contains("detach()"));
  REQUIRE_MG_ERROR(loss.backward(), Contains("already consumed"));
  REQUIRE(autograd::tape_size() == 0);
  // detach() makes it a constant again.
  x.zero_grad();
  sum(mul(y.detach(), x)).backward();
  REQUIRE_CLOSE(mt::all_close(x.grad(), y.detach(), fwd_tol(DType::f64)));
  REQUIRE(autograd::tape_size() == 0);
  // clear_tape() has the same effect as a consumed graph.
  Tensor q = exp(x);
  autograd::clear_tape();
  REQUIRE_MG_ERROR(sum(q), Contains("already consumed"));
}

TEST_CASE("autograd: memory returns to its baseline across 100 training-like iterations", "[ops][autograd][memory]") {
  autograd::clear_tape();
  Tensor x = make(uniform(6 * 10, -1, 1, 900), {6, 10});
  Tensor w1 = make_leaf(uniform(10 * 16, -0.3, 0.3, 901), {10, 16});
  Tensor b1 = make_leaf(uniform(16, -0.1, 0.1, 902), {16});
  Tensor w2 = make_leaf(uniform(16 * 3, -0.3, 0.3, 903), {16, 3});
  const int64_t baseline = memory_stats(kCPU).bytes_in_use;
  double first_loss = 0;
  for (int it = 0; it < 100; ++it) {
    {
      Tensor h = gelu(add(matmul(x, w1), b1));
      Tensor loss = sum(matmul(h, w2));
      if (it == 0) first_loss = loss.item();
      REQUIRE(loss.item() == first_loss);  // nothing drifts: the same graph every time
      loss.backward();
      REQUIRE(autograd::tape_size() == 0);
      REQUIRE(w1.grad().shape() == w1.shape());
      REQUIRE(b1.grad().shape() == b1.shape());
      REQUIRE(w2.grad().shape() == w2.shape());
    }
    w1.zero_grad();
    b1.zero_grad();
    w2.zero_grad();
    INFO("iteration " << it);
    REQUIRE(memory_stats(kCPU).bytes_in_use == baseline);
  }
  REQUIRE(memory_stats(kCPU).bytes_in_use == baseline);
}
