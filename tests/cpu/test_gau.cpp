// The gated attention unit (nn/gau.h, specs/lra.md §6.4): forward against a naive float64 reference (full and chunked,
// with padding, each attention function), float64 finite differences for the input and every parameter, padding
// isolation, and bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "engine/mixgrad.h"
#include "nn/gau.h"
#include "tests/common/check.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

constexpr int64_t kB = 2, kL = 7, kD = 6, kE = 5, kS = 3;

struct Variant {
  GatedAttentionFn fn;
  int64_t chunk;
};

std::vector<Variant> variants() {
  std::vector<Variant> v;
  for (GatedAttentionFn fn : {GatedAttentionFn::relu2, GatedAttentionFn::softmax, GatedAttentionFn::laplace})
    for (int64_t chunk : {int64_t(-1), int64_t(3)}) v.push_back({fn, chunk});
  return v;
}

std::shared_ptr<nn::GatedAttentionUnit> make_unit(const Variant& v, uint64_t seed) {
  manual_seed(seed);
  auto m = std::make_shared<nn::GatedAttentionUnit>(kD, nn::GAUOptions{kE, kS, v.fn, v.chunk, 9});
  m->to(DType::f64);
  // Larger than the N(0, 0.02) initialisation, so the scores leave relu²'s flat zero and every term matters.
  NoGradGuard ng;
  for (Tensor p : m->parameters()) p.copy_(mul_scalar(randn(p.shape(), TensorOptions(DType::f64)), 0.7));
  return m;
}

double attention_fn(GatedAttentionFn fn, double s) {
  if (fn == GatedAttentionFn::relu2) return s > 0 ? s * s : 0.0;
  return 0.5 * (1.0 + std::erf((s - 0.707107) / (0.282095 * std::sqrt(2.0))));  // laplace
}

// (U ⊙ A·V) W_o + b_o written out with loops from the unit's parameters.
std::vector<double> reference(const nn::GatedAttentionUnit& m, const std::vector<double>& x,
                              const std::vector<int32_t>& lengths, const Variant& v) {
  const auto W = m.in_proj->weight.to_vector<double>(), b = m.in_proj->bias.to_vector<double>();
  const auto Wo = m.out_proj->weight.to_vector<double>(), bo = m.out_proj->bias.to_vector<double>();
  const auto g = m.qk_weight.to_vector<double>(), be = m.qk_bias.to_vector<double>();
  const auto rel = m.rel_pos_bias.to_vector<double>();
  const int64_t P = m.span(), c = v.chunk > 0 ? v.chunk : kL, H = 2 * kE + kS;
  std::vector<double> out(size_t(kB * kL * kD));
  for (int64_t bi = 0; bi < kB; ++bi) {
    std::vector<double> h(size_t(kL * H));
    for (int64_t t = 0; t < kL; ++t)
      for (int64_t o = 0; o < H; ++o) {
        double a = b[size_t(o)];
        for (int64_t i = 0; i < kD; ++i) a += x[size_t((bi * kL + t) * kD + i)] * W[size_t(o * kD + i)];
        h[size_t(t * H + o)] = a / (1.0 + std::exp(-a));
      }
    auto U = [&](int64_t t, int64_t j) { return h[size_t(t * H + j)]; };
    auto V = [&](int64_t t, int64_t j) { return h[size_t(t * H + kE + j)]; };
    auto Z = [&](int64_t t, int64_t j) { return h[size_t(t * H + 2 * kE + j)]; };
    const int64_t len = lengths[size_t(bi)];
    for (int64_t i = 0; i < kL; ++i) {
      std::vector<double> o(size_t(kE), 0.0);
      if (i < len) {
        const int64_t start = (i / c) * c, end = std::min(start + c, kL), valid_end = std::min(end, int64_t(len));
        std::vector<double> a;
        for (int64_t j = start; j < valid_end; ++j) {
          double s = 0;
          for (int64_t z = 0; z < kS; ++z)
            s += (Z(i, z) * g[size_t(z)] + be[size_t(z)]) * (Z(j, z) * g[size_t(kS + z)] + be[size_t(kS + z)]);
          const double bias = rel[size_t(P - 1 + j - i)];
          a.push_back(v.fn == GatedAttentionFn::softmax ? s / std::sqrt(double(kS)) + bias
                                                        : attention_fn(v.fn, s / double(valid_end - start) + bias));
        }
        if (v.fn == GatedAttentionFn::softmax) {
          double mx = -1e300, sum = 0;
          for (double s : a) mx = std::max(mx, s);
          for (double& s : a) sum += (s = std::exp(s - mx));
          for (double& s : a) s /= sum;
        }
        for (int64_t j = start; j < valid_end; ++j)
          for (int64_t e = 0; e < kE; ++e) o[size_t(e)] += a[size_t(j - start)] * V(j, e);
      }
      for (int64_t d = 0; d < kD; ++d) {
        double y = bo[size_t(d)];
        for (int64_t e = 0; e < kE; ++e) y += U(i, e) * o[size_t(e)] * Wo[size_t(d * kE + e)];
        out[size_t((bi * kL + i) * kD + d)] = y;
      }
    }
  }
  return out;
}

const std::vector<int32_t> kLengths = {7, 4};

}  // namespace

TEST_CASE("gau: forward matches a float64 reference (each function, full and chunked, padded)", "[gau]") {
  for (const Variant& v : variants()) {
    INFO("fn " << gated_attention_fn_name(v.fn) << ", chunk " << v.chunk);
    auto m = make_unit(v, 3);
    const Tensor x = testing::rand_f64({kB, kL, kD}, -1.5, 1.5, false);
    const Tensor lengths = from_vector(kLengths, {kB});
    const Tensor y = m->forward(x, lengths);
    const Tensor ref = from_vector(reference(*m, x.to_vector<double>(), kLengths, v), {kB, kL, kD});
    REQUIRE_CLOSE(testing::all_close(y, ref, tolerance(Compare::forward_f64)));
    // Without lengths every position is valid.
    const Tensor y_full = m->forward(x);
    const Tensor ref_full = from_vector(reference(*m, x.to_vector<double>(), {kL, kL}, v), {kB, kL, kD});
    REQUIRE_CLOSE(testing::all_close(y_full, ref_full, tolerance(Compare::forward_f64)));
  }
}

TEST_CASE("gau: gradients of the input and every parameter match finite differences", "[gau]") {
  const Tensor lengths = from_vector(kLengths, {kB});
  for (const Variant& v : variants()) {
    INFO("fn " << gated_attention_fn_name(v.fn) << ", chunk " << v.chunk);
    auto m = make_unit(v, 4);
    std::vector<Tensor> inputs = {testing::rand_f64({kB, kL, kD}, -1.5, 1.5)};
    for (const auto& [name, p] : m->named_parameters()) inputs.push_back(p);
    REQUIRE_CLOSE(testing::gradcheck([&](const std::vector<Tensor>& in) { return m->forward(in[0], lengths); },
                                     inputs));
  }
}

TEST_CASE("gau: padded positions never reach valid outputs; their rows are the output bias", "[gau]") {
  const Tensor lengths = from_vector(kLengths, {kB});
  for (const Variant& v : variants()) {
    INFO("fn " << gated_attention_fn_name(v.fn) << ", chunk " << v.chunk);
    auto m = make_unit(v, 5);
    std::vector<double> x = testing::rand_f64({kB, kL, kD}, -1, 1, false).to_vector<double>(), noisy = x;
    for (int64_t t = kLengths[1]; t < kL; ++t)
      for (int64_t d = 0; d < kD; ++d) noisy[size_t((kL + t) * kD + d)] = 50.0 * double(t + d + 1);
    const auto a = m->forward(from_vector(x, {kB, kL, kD}), lengths).to_vector<double>();
    const auto n = m->forward(from_vector(noisy, {kB, kL, kD}), lengths).to_vector<double>();
    const auto bo = m->out_proj->bias.to_vector<double>();
    for (int64_t bi = 0; bi < kB; ++bi)
      for (int64_t t = 0; t < kL; ++t)
        for (int64_t d = 0; d < kD; ++d) {
          const size_t i = size_t((bi * kL + t) * kD + d);
          if (t < kLengths[size_t(bi)])
            REQUIRE(a[i] == n[i]);
          else
            REQUIRE(n[i] == bo[size_t(d)]);
        }
  }
}

TEST_CASE("gau: sizes and options are checked", "[gau]") {
  using nn::GAUOptions;
  REQUIRE_THROWS_WITH(nn::GatedAttentionUnit(0, GAUOptions{4, 2, GatedAttentionFn::relu2, -1, 8}),
                      Catch::Contains("dim must be positive"));
  REQUIRE_THROWS_WITH(nn::GatedAttentionUnit(4, GAUOptions{4, 0, GatedAttentionFn::relu2, -1, 8}),
                      Catch::Contains("zdim"));
  REQUIRE_THROWS_WITH(nn::GatedAttentionUnit(4, GAUOptions{4, 2, GatedAttentionFn::relu2, 0, 8}),
                      Catch::Contains("chunk = 0"));
  REQUIRE_THROWS_WITH(nn::GatedAttentionUnit(4, GAUOptions{4, 2, GatedAttentionFn::relu2, -1, 0}),
                      Catch::Contains("max_positions"));
  nn::GatedAttentionUnit m(4, GAUOptions{0, 2, GatedAttentionFn::relu2, -1, 8});
  REQUIRE(m.in_proj->weight.size(0) == 2 * 8 + 2);  // expansion 0 = 2·dim
  REQUIRE(m.rel_pos_bias.size(0) == 15);
  REQUIRE_THROWS_WITH(m.forward(zeros({1, 9, 4})), Catch::Contains("longer than max_positions 8"));
  REQUIRE_THROWS_WITH(m.forward(zeros({1, 8, 5})), Catch::Contains("must be [B, L, 4]"));
  nn::GatedAttentionUnit chunked(4, GAUOptions{4, 2, GatedAttentionFn::relu2, 3, 0});
  REQUIRE(chunked.rel_pos_bias.size(0) == 5);
  REQUIRE(chunked.forward(zeros({1, 10, 4})).shape() == Shape{1, 10, 4});  // chunks span any length
}

TEST_CASE("gau layer: x + GAU(Norm(x)) for each norm, and finite differences for x and every parameter", "[gau]") {
  const Tensor lengths = from_vector(kLengths, {kB});
  for (const std::string norm : {"layernorm", "scalenorm", "batchnorm"})
    for (int64_t chunk : {int64_t(-1), int64_t(3)}) {
      INFO("norm " << norm << ", chunk " << chunk);
      manual_seed(6);
      nn::GAULayer layer(kD, nn::GAUOptions{kE, kS, GatedAttentionFn::relu2, chunk, 9}, norm, 1e-5, 0.0);
      layer.to(DType::f64);
      {
        NoGradGuard ng;
        for (Tensor p : layer.parameters()) p.copy_(mul_scalar(randn(p.shape(), TensorOptions(DType::f64)), 0.7));
      }
      const Tensor x = testing::rand_f64({kB, kL, kD}, -1.5, 1.5);
      {
        NoGradGuard ng;
        const Tensor expected = add(x, layer.gau->forward(layer.norm->forward(x, lengths), lengths));
        REQUIRE_CLOSE(testing::all_close(layer.forward(x, lengths), expected, tolerance(Compare::forward_f64)));
      }
      std::vector<Tensor> inputs = {x};
      for (const auto& [name, p] : layer.named_parameters()) inputs.push_back(p);
      REQUIRE_CLOSE(testing::gradcheck([&](const std::vector<Tensor>& in) { return layer.forward(in[0], lengths); },
                                       inputs));
    }
}

TEST_CASE("gau layers: children named 0, 1, ... with the unit's parameter names", "[gau]") {
  nn::GAULayers layers;
  for (int i = 0; i < 2; ++i)
    layers.push_back(std::make_shared<nn::GAULayer>(4, nn::GAUOptions{6, 2, GatedAttentionFn::relu2, -1, 5}));
  const auto names = layers.named_parameters();
  REQUIRE(names.front().first == "0.norm.norm.weight");
  bool found = false;
  for (const auto& [name, p] : names) found = found || name == "1.gau.rel_pos_bias";
  REQUIRE(found);
  REQUIRE(layers.forward(zeros({2, 5, 4})).shape() == Shape{2, 5, 4});
  REQUIRE_THROWS_WITH(nn::GAULayer(4, nn::GAUOptions{6, 2, GatedAttentionFn::relu2, -1, 5}, "rmsnorm"),
                      Catch::Contains("layernorm"));
}
