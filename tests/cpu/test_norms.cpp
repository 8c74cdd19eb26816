// MEGA's sequence norms (specs/lra.md §6.2): scale_norm and batch_norm against naive float64 references (train and
// eval, with and without padding and affine parameters), padded positions excluded from the statistics, the running
// statistics after two steps against PyTorch's update rule, float64 finite differences for every input, every
// validation error; the nn::ScaleNorm / nn::BatchNorm / nn::SequenceNorm layers (parameters vs buffers, checkpoints).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "engine/norms.h"
#include "nn/norms.h"
#include "nn/serialize.h"
#include "tests/common/check.h"
#include "tests/common/temp_files.h"

namespace {

using namespace mixgrad;
using namespace mixgrad::testing;
using Catch::Contains;

std::vector<double> uniform(size_t n, double lo, double hi, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(n);
  for (double& e : v) e = u(gen);
  return v;
}

Tensor f64(const std::vector<double>& v, Shape shape) { return from_vector<double>(v, std::move(shape)); }

// ---- ScaleNorm reference ------------------------------------------------------------------------------------------

std::vector<double> ref_scale_norm(const std::vector<double>& x, int64_t cols, double g, double eps) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / size_t(cols); ++r) {
    double sq = 0;
    for (int64_t c = 0; c < cols; ++c) sq += x[r * cols + c] * x[r * cols + c];
    const double denom = std::sqrt(sq / double(cols) + eps);
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = x[r * cols + c] * g / denom;
  }
  return y;
}

const std::vector<Shape>& scale_shapes() {
  static const std::vector<Shape> s = {{1}, {3, 1}, {2, 5, 7}, {4, 130}, {2, 3, 64}, {1, 1, 1029}};
  return s;
}

// ---- BatchNorm reference ------------------------------------------------------------------------------------------

struct BnCase {
  std::string name;
  int64_t B, L, C;
  std::vector<int32_t> lengths;  // empty: every position valid
  bool affine;
};

const std::vector<BnCase>& bn_cases() {
  static const std::vector<BnCase> t = {
      {"no padding, affine", 2, 5, 3, {}, true},
      {"padded, affine", 3, 6, 4, {6, 2, 4}, true},
      {"padded, no affine", 2, 7, 5, {1, 7}, false},
      {"one sample, two positions", 1, 2, 1, {}, true},
      {"padded, 70 channels (column tiles)", 3, 9, 70, {9, 3, 5}, true},
  };
  return t;
}

bool valid_at(const BnCase& c, int64_t b, int64_t t) { return c.lengths.empty() || t < c.lengths[size_t(b)]; }

// Mean, biased variance and count of channel j over the valid positions.
struct ChannelStats {
  std::vector<double> mean, var;
  int64_t n = 0;
};

ChannelStats ref_stats(const BnCase& c, const std::vector<double>& x) {
  ChannelStats s{std::vector<double>(size_t(c.C), 0.0), std::vector<double>(size_t(c.C), 0.0), 0};
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.L; ++t) {
      if (!valid_at(c, b, t)) continue;
      ++s.n;
      for (int64_t j = 0; j < c.C; ++j) s.mean[size_t(j)] += x[size_t((b * c.L + t) * c.C + j)];
    }
  for (double& m : s.mean) m /= double(s.n);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.L; ++t) {
      if (!valid_at(c, b, t)) continue;
      for (int64_t j = 0; j < c.C; ++j) {
        const double d = x[size_t((b * c.L + t) * c.C + j)] - s.mean[size_t(j)];
        s.var[size_t(j)] += d * d;
      }
    }
  for (double& v : s.var) v /= double(s.n);
  return s;
}

std::vector<double> ref_batch_norm(const BnCase& c, const std::vector<double>& x, const std::vector<double>& mean,
                                   const std::vector<double>& var, const std::vector<double>& w,
                                   const std::vector<double>& bias, double eps) {
  std::vector<double> y(x.size(), 0.0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.L; ++t) {
      if (!valid_at(c, b, t)) continue;
      for (int64_t j = 0; j < c.C; ++j) {
        const size_t i = size_t((b * c.L + t) * c.C + j);
        const double wj = w.empty() ? 1.0 : w[size_t(j)], bj = bias.empty() ? 0.0 : bias[size_t(j)];
        y[i] = (x[i] - mean[size_t(j)]) / std::sqrt(var[size_t(j)] + eps) * wj + bj;
      }
    }
  return y;
}

struct BnInputs {
  std::vector<double> x, w, b;
};

BnInputs bn_inputs(const BnCase& c, uint32_t seed) {
  BnInputs in;
  in.x = uniform(size_t(c.B * c.L * c.C), -2.0, 3.0, seed);
  if (c.affine) {
    in.w = uniform(size_t(c.C), 0.5, 1.5, seed + 1);
    in.b = uniform(size_t(c.C), -0.5, 0.5, seed + 2);
  }
  return in;
}

Tensor lengths_of(const BnCase& c) {
  return c.lengths.empty() ? Tensor() : from_vector<int32_t>(c.lengths, {c.B}, TensorOptions(DType::i32));
}

struct BnTensors {
  Tensor x, w, b, running_mean, running_var, lengths;
};

BnTensors bn_tensors(const BnCase& c, const BnInputs& in, DType dtype, bool requires_grad = false) {
  auto make = [&](const std::vector<double>& v, Shape s) {
    if (v.empty()) return Tensor();
    Tensor t = f64(v, std::move(s)).to(dtype).detach();
    if (requires_grad) t.requires_grad_();
    return t;
  };
  return {make(in.x, {c.B, c.L, c.C}),       make(in.w, {c.C}), make(in.b, {c.C}), zeros({c.C}, TensorOptions(dtype)),
          ones({c.C}, TensorOptions(dtype)), lengths_of(c)};
}

Tensor run_bn(const BnTensors& t, bool training, double momentum = 0.1) {
  return batch_norm(t.x, t.w, t.b, t.running_mean, t.running_var, t.lengths, training, momentum, 1e-5);
}

}  // namespace

TEST_CASE("norms: scale_norm matches the float64 formula", "[norms]") {
  for (const Shape& shape : scale_shapes()) {
    INFO("shape " << shape_str(shape));
    const std::vector<double> x = uniform(size_t(shape_numel(shape)), -2.0, 2.0, 3);
    const Tensor want = f64(ref_scale_norm(x, shape.back(), 1.7, 1e-5), shape);
    const Tensor y64 = scale_norm(f64(x, shape), full({1}, 1.7, TensorOptions(DType::f64)));
    REQUIRE_CLOSE(all_close(y64, want, tolerance(Compare::forward_f64)));
    const Tensor y32 = scale_norm(f64(x, shape).to(DType::f32), full({}, 1.7));
    REQUIRE_CLOSE(all_close(y32.to(DType::f64), want, tolerance(Compare::forward_f32)));
  }
  // eps matters for small rows: x = 0 gives 0, and a tiny row is scaled by 1/sqrt(mean + eps).
  const Tensor tiny = scale_norm(f64({1e-3, -1e-3}, {1, 2}), ones({1}, TensorOptions(DType::f64)), 1e-2);
  REQUIRE_CLOSE(all_close(tiny, f64(ref_scale_norm({1e-3, -1e-3}, 2, 1.0, 1e-2), {1, 2}), {1e-12, 0}));
}

TEST_CASE("norms: scale_norm float64 finite differences for x and g", "[norms]") {
  for (const Shape& shape : scale_shapes()) {
    if (shape_numel(shape) > 600) continue;
    INFO("shape " << shape_str(shape));
    const Tensor x = rand_f64(shape, -2.0, 2.0);
    const Tensor g = f64({0.8}, {1}).requires_grad_();
    REQUIRE_CLOSE(gradcheck([](const std::vector<Tensor>& v) { return scale_norm(v[0], v[1]); }, {x, g}));
  }
}

TEST_CASE("norms: batch_norm training matches the float64 reference on the valid positions", "[norms]") {
  for (const BnCase& c : bn_cases()) {
    INFO(c.name);
    const BnInputs in = bn_inputs(c, 5);
    const ChannelStats s = ref_stats(c, in.x);
    const Tensor want = f64(ref_batch_norm(c, in.x, s.mean, s.var, in.w, in.b, 1e-5), {c.B, c.L, c.C});
    const BnTensors t64 = bn_tensors(c, in, DType::f64);
    REQUIRE_CLOSE(all_close(run_bn(t64, true), want, tolerance(Compare::forward_f64)));
    const BnTensors t32 = bn_tensors(c, in, DType::f32);
    REQUIRE_CLOSE(all_close(run_bn(t32, true).to(DType::f64), want, {1e-5, 1e-5}));
    // Without running statistics the batch statistics are still used (nothing to update).
    REQUIRE_CLOSE(
        all_close(batch_norm(t64.x, t64.w, t64.b, Tensor(), Tensor(), t64.lengths, true), want, {1e-12, 1e-12}));
  }
}

TEST_CASE("norms: batch_norm running statistics after two steps follow PyTorch's rule", "[norms]") {
  for (const BnCase& c : bn_cases()) {
    INFO(c.name);
    const BnInputs in1 = bn_inputs(c, 7), in2 = bn_inputs(c, 8);
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO(dtype_name(dtype));
      BnTensors t = bn_tensors(c, in1, dtype);
      const Tensor rm = t.running_mean, rv = t.running_var;
      run_bn(t, true, 0.1);
      t.x = f64(in2.x, {c.B, c.L, c.C}).to(dtype);
      run_bn(t, true, 0.1);
      std::vector<double> want_mean(size_t(c.C), 0.0), want_var(size_t(c.C), 1.0);
      for (const BnInputs* in : {&in1, &in2}) {
        const ChannelStats s = ref_stats(c, in->x);
        for (size_t j = 0; j < size_t(c.C); ++j) {
          want_mean[j] = 0.9 * want_mean[j] + 0.1 * s.mean[j];
          want_var[j] = 0.9 * want_var[j] + 0.1 * s.var[j] * double(s.n) / double(s.n - 1);
        }
      }
      const Tolerance tol = dtype == DType::f64 ? tolerance(Compare::forward_f64) : Tolerance{1e-5, 1e-6};
      REQUIRE_CLOSE(all_close(rm.to(DType::f64), f64(want_mean, {c.C}), tol));
      REQUIRE_CLOSE(all_close(rv.to(DType::f64), f64(want_var, {c.C}), tol));
    }
  }
}

TEST_CASE("norms: batch_norm eval uses the running statistics and leaves them unchanged", "[norms]") {
  for (const BnCase& c : bn_cases()) {
    INFO(c.name);
    const BnInputs in = bn_inputs(c, 9);
    BnTensors t = bn_tensors(c, in, DType::f64);
    const std::vector<double> rm = uniform(size_t(c.C), -0.5, 0.5, 10), rv = uniform(size_t(c.C), 0.5, 2.0, 11);
    t.running_mean = f64(rm, {c.C});
    t.running_var = f64(rv, {c.C});
    const Tensor want = f64(ref_batch_norm(c, in.x, rm, rv, in.w, in.b, 1e-5), {c.B, c.L, c.C});
    REQUIRE_CLOSE(all_close(run_bn(t, false), want, tolerance(Compare::forward_f64)));
    REQUIRE_CLOSE(bit_equal(t.running_mean, f64(rm, {c.C})));
    REQUIRE_CLOSE(bit_equal(t.running_var, f64(rv, {c.C})));
  }
}

TEST_CASE("norms: batch_norm excludes padded positions from the statistics, outputs and gradients", "[norms]") {
  for (const BnCase& c : bn_cases()) {
    if (c.lengths.empty()) continue;
    INFO(c.name);
    const BnInputs in = bn_inputs(c, 13);
    BnInputs noisy = in;
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t t = 0; t < c.L; ++t)
        if (!valid_at(c, b, t))
          for (int64_t j = 0; j < c.C; ++j) noisy.x[size_t((b * c.L + t) * c.C + j)] = 1e4 * double(t + j + 1);
    for (bool training : {true, false}) {
      INFO("training " << training);
      const BnTensors a = bn_tensors(c, in, DType::f64), n = bn_tensors(c, noisy, DType::f64, true);
      const Tensor ya = run_bn(a, training), yn = run_bn(n, training);
      REQUIRE_CLOSE(bit_equal(yn.detach(), ya));
      REQUIRE_CLOSE(bit_equal(n.running_mean, a.running_mean));
      REQUIRE_CLOSE(bit_equal(n.running_var, a.running_var));
      sum(mul(yn, rand_f64({c.B, c.L, c.C}, 0.5, 1.5, false))).backward();
      const std::vector<double> y = yn.detach().to_vector<double>(), dx = n.x.grad().to_vector<double>();
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t t = 0; t < c.L; ++t)
          for (int64_t j = 0; j < c.C; ++j) {
            if (valid_at(c, b, t)) continue;
            const size_t i = size_t((b * c.L + t) * c.C + j);
            REQUIRE(y[i] == 0.0);
            REQUIRE(dx[i] == 0.0);
          }
    }
  }
}

TEST_CASE("norms: a padded batch normalises as its valid positions packed into one sequence", "[norms]") {
  const BnCase c{"padded", 3, 6, 4, {6, 2, 4}, true};
  const BnInputs in = bn_inputs(c, 17);
  std::vector<double> packed;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.lengths[size_t(b)]; ++t)
      for (int64_t j = 0; j < c.C; ++j) packed.push_back(in.x[size_t((b * c.L + t) * c.C + j)]);
  const int64_t n = int64_t(packed.size()) / c.C;
  const BnTensors t = bn_tensors(c, in, DType::f64);
  const Tensor w = f64(in.w, {c.C}), bias = f64(in.b, {c.C});
  const Tensor rm = zeros({c.C}, TensorOptions(DType::f64)), rv = ones({c.C}, TensorOptions(DType::f64));
  const std::vector<double> y = run_bn(t, true).to_vector<double>();
  const std::vector<double> yp =
      batch_norm(f64(packed, {1, n, c.C}), w, bias, rm, rv, Tensor(), true).to_vector<double>();
  size_t k = 0;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t tt = 0; tt < c.lengths[size_t(b)]; ++tt)
      for (int64_t j = 0; j < c.C; ++j) REQUIRE(y[size_t((b * c.L + tt) * c.C + j)] == Approx(yp[k++]).epsilon(1e-12));
  REQUIRE_CLOSE(all_close(t.running_mean, rm, {1e-12, 1e-15}));
  REQUIRE_CLOSE(all_close(t.running_var, rv, {1e-12, 1e-15}));
}

TEST_CASE("norms: batch_norm float64 finite differences for x, weight and bias, train and eval", "[norms]") {
  for (const BnCase& c : bn_cases()) {
    if (c.C > 8) continue;  // the 70-channel case adds nothing but time here
    const BnInputs in = bn_inputs(c, 19);
    for (bool training : {true, false}) {
      INFO(c.name << ", training " << training);
      const BnTensors t = bn_tensors(c, in, DType::f64, true);
      const Tensor rm = f64(uniform(size_t(c.C), -0.5, 0.5, 20), {c.C});
      const Tensor rv = f64(uniform(size_t(c.C), 0.5, 2.0, 21), {c.C});
      const Tensor lengths = t.lengths;
      // Running statistics are updated on every training call; gradcheck evaluates many times, so each call gets
      // fresh copies (the statistics do not feed the training-mode output anyway).
      auto f = [&](const std::vector<Tensor>& v) {
        return batch_norm(v[0], v[1], v[2], rm.clone(), rv.clone(), lengths, training);
      };
      REQUIRE_CLOSE(gradcheck(f, {t.x, t.w, t.b}));
    }
  }
}

TEST_CASE("norms: float32 batch_norm gradients match float64", "[norms]") {
  const BnCase c{"padded", 3, 20, 6, {20, 7, 13}, true};
  const BnInputs in = bn_inputs(c, 23);
  const std::vector<double> wv = uniform(size_t(c.B * c.L * c.C), 0.5, 1.5, 24);
  for (bool training : {true, false}) {
    INFO("training " << training);
    std::vector<std::vector<Tensor>> grads;
    for (DType dtype : {DType::f64, DType::f32}) {
      const BnTensors t = bn_tensors(c, in, dtype, true);
      sum(mul(run_bn(t, training), f64(wv, {c.B, c.L, c.C}).to(dtype))).backward();
      grads.push_back({t.x.grad().to(DType::f64), t.w.grad().to(DType::f64), t.b.grad().to(DType::f64)});
    }
    for (size_t i = 0; i < 3; ++i) REQUIRE_CLOSE(all_close(grads[1][i], grads[0][i], {1e-4, 1e-5}));
  }
}

TEST_CASE("norms: invalid arguments are clear errors", "[norms]") {
  const Tensor x = zeros({2, 3, 4}), w = ones({4}), rm = zeros({4}), rv = ones({4});
  REQUIRE_THROWS_WITH(scale_norm(x, ones({2})), Contains("scale_norm: g has shape [2], expected one scalar"));
  REQUIRE_THROWS_WITH(scale_norm(x, Tensor()), Contains("g has shape (undefined)"));
  REQUIRE_THROWS_WITH(scale_norm(x, ones({1}, TensorOptions(DType::f64))), Contains("same dtype"));
  REQUIRE_THROWS_WITH(scale_norm(x, ones({1}), -1.0), Contains("eps must be non-negative"));
  REQUIRE_THROWS_WITH(scale_norm(zeros({2}, TensorOptions(DType::i32)), ones({1})),
                      Contains("x has dtype int32, expected float32 or float64"));
  REQUIRE_THROWS_WITH(batch_norm(zeros({6, 4}), w, w, rm, rv), Contains("x must be 3-D [B, L, C], got shape [6, 4]"));
  REQUIRE_THROWS_WITH(batch_norm(x, ones({3}), w, rm, rv), Contains("weight has shape [3], expected [C] = [4]"));
  REQUIRE_THROWS_WITH(batch_norm(x, w, w, rm, Tensor()),
                      Contains("running_mean is given but running_var is undefined"));
  REQUIRE_THROWS_WITH(batch_norm(x, w, w, Tensor(), Tensor(), Tensor(), false),
                      Contains("eval mode (training = false) needs running_mean and running_var"));
  REQUIRE_THROWS_WITH(batch_norm(x, w, w, rm, ones({5})), Contains("running_var has shape [5], expected [C] = [4]"));
  REQUIRE_THROWS_WITH(batch_norm(x, w, w, rm, rv, Tensor(), true, 1.5), Contains("momentum = 1.5"));
  REQUIRE_THROWS_WITH(batch_norm(x, w, w, rm.clone().requires_grad_(), rv), Contains("must not require grad"));
  REQUIRE_THROWS_WITH(batch_norm(x, w, w, rm, rv, from_vector<int32_t>({3, 4}, {2})),
                      Contains("lengths[1] = 4 is outside [1, L] = [1, 3]"));
  REQUIRE_THROWS_WITH(batch_norm(x, w, w, rm, rv, from_vector<int32_t>({3}, {1})),
                      Contains("lengths has shape [1], expected [B] = [2]"));
  REQUIRE_THROWS_WITH(batch_norm(x, w, w, rm, rv, zeros({2})), Contains("lengths has dtype float32"));
  REQUIRE_THROWS_WITH(batch_norm(zeros({1, 3, 4}), w, w, rm, rv, from_vector<int32_t>({1}, {1})),
                      Contains("training mode needs more than one valid position"));
  REQUIRE_THROWS_WITH(batch_norm(zeros({1, 1, 4}), w, w, rm, rv), Contains("more than one valid position"));
  REQUIRE_NOTHROW(batch_norm(zeros({1, 1, 4}), w, w, rm, rv, Tensor(), false));  // eval needs no batch statistics
  REQUIRE_THROWS_WITH(batch_norm(x.to(DType::f64), w, w, rm, rv),
                      Contains("batch_norm: expected tensors of the same dtype"));
}

TEST_CASE("norms: nn::ScaleNorm and nn::BatchNorm parameters, buffers and modes", "[norms]") {
  nn::ScaleNorm sn;
  REQUIRE(sn.named_parameters().size() == 1);
  CHECK(sn.named_parameters()[0].first == "scalar");
  CHECK(sn.scalar.shape() == Shape{1});
  CHECK(sn.scalar.item() == 1.0);
  const Tensor x = rand_f64({2, 5, 6}, -1.0, 1.0, false).to(DType::f32);
  REQUIRE_CLOSE(bit_equal(sn.forward(x).detach(), scale_norm(x, ones({1}))));

  nn::BatchNorm bn(6);
  const auto params = bn.named_parameters(), buffers = bn.named_buffers();
  REQUIRE(params.size() == 2);
  CHECK(params[0].first == "weight");
  CHECK(params[1].first == "bias");
  REQUIRE(buffers.size() == 2);
  CHECK(buffers[0].first == "running_mean");
  CHECK(buffers[1].first == "running_var");
  CHECK(bn.parameters().size() == 2);  // what an optimizer sees: no buffers
  CHECK(bn.num_parameters() == 12);
  CHECK(bn.state_dict().size() == 4);
  CHECK_FALSE(bn.running_mean.requires_grad());
  const Tensor lengths = from_vector<int32_t>({5, 3}, {2}, TensorOptions(DType::i32));
  Tensor y = bn.forward(x, lengths);  // training: batch statistics, running statistics move
  sum(y).backward();
  CHECK(bn.weight.grad().defined());
  CHECK(sum(mul(bn.running_mean, bn.running_mean)).item() > 0.0);
  const Tensor rm = bn.running_mean.clone(), rv = bn.running_var.clone();
  bn.eval();
  const Tensor ye = bn.forward(x, lengths);
  REQUIRE_CLOSE(bit_equal(bn.running_mean, rm));
  REQUIRE_CLOSE(all_close(ye, batch_norm(x, bn.weight.detach(), bn.bias.detach(), rm, rv, lengths, false), {0, 0}));
  REQUIRE_THROWS_WITH(nn::BatchNorm(0), Contains("BatchNorm: channels must be positive"));

  nn::BatchNorm plain(3, 1e-5, 0.1, false);
  CHECK(plain.named_parameters().empty());
  CHECK(plain.named_buffers().size() == 2);
}

TEST_CASE("norms: BatchNorm running statistics round-trip through a checkpoint", "[norms]") {
  nn::BatchNorm a(4), b(4);
  const Tensor x = rand_f64({3, 5, 4}, -1.0, 2.0, false).to(DType::f32);
  a.forward(x);
  a.forward(mul(x, x));
  TempDir dir("mixgrad_norms_");
  nn::save_state_dict(a, dir / "bn.safetensors");
  nn::load_state_dict(b, dir / "bn.safetensors");
  REQUIRE_CLOSE(bit_equal(b.running_mean, a.running_mean));
  REQUIRE_CLOSE(bit_equal(b.running_var, a.running_var));
  a.eval(), b.eval();
  REQUIRE_CLOSE(bit_equal(b.forward(x), a.forward(x)));
}

TEST_CASE("norms: nn::SequenceNorm picks the norm by name", "[norms]") {
  CHECK(nn::parse_sequence_norm("layernorm") == nn::SequenceNormKind::layernorm);
  CHECK(nn::sequence_norm_name(nn::SequenceNormKind::batchnorm) == "batchnorm");
  REQUIRE_THROWS_WITH(nn::parse_sequence_norm("rmsnorm"),
                      Contains("unknown norm \"rmsnorm\" (expected one of: layernorm, scalenorm, batchnorm)"));
  const Tensor x = rand_f64({2, 4, 5}, -1.0, 1.0, false).to(DType::f32);
  const Tensor lengths = from_vector<int32_t>({4, 2}, {2}, TensorOptions(DType::i32));
  const std::vector<std::pair<std::string, std::vector<std::string>>> want = {
      {"layernorm", {"norm.weight", "norm.bias"}},
      {"scalenorm", {"norm.scalar"}},
      {"batchnorm", {"norm.weight", "norm.bias", "norm.running_mean", "norm.running_var"}}};
  for (const auto& [name, keys] : want) {
    INFO(name);
    nn::SequenceNorm norm(name, 5);
    CHECK(nn::sequence_norm_name(norm.kind()) == name);
    const auto state = norm.state_dict();
    REQUIRE(state.size() == keys.size());
    for (size_t i = 0; i < keys.size(); ++i) CHECK(state[i].first == keys[i]);
    const Tensor y = norm.forward(x, lengths);
    Tensor direct;
    {
      NoGradGuard ng;
      if (name == "layernorm") direct = layer_norm(x, {5}, ones({5}), zeros({5}), 1e-5);
      if (name == "scalenorm") direct = scale_norm(x, ones({1}));
      if (name == "batchnorm") direct = batch_norm(x, ones({5}), zeros({5}), Tensor(), Tensor(), lengths, true);
    }
    REQUIRE_CLOSE(all_close(y.detach(), direct, {1e-6, 1e-6}));
  }
}
