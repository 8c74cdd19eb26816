// MEGA / GAU gated-attention scores (specs/lra.md §6.2 steps 6-7, §6.4): the op against a naive float64 reference
// for each attention function × {full, chunked with L not a multiple of the chunk} × {padded, not} × {bias, none},
// also on sizes that cross the kernels' 64-row tiles; float64 finite differences for q, k, v and rel_bias; padded
// positions isolated (zero outputs and gradients); bitwise determinism; memory far below L × L at L = 4096; every
// validation error.
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/gated_attention.h"
#include "engine/mixgrad.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using namespace mixgrad::testing;
using Catch::Contains;

struct GattCase {
  int64_t B, L, Z, E;
  GatedAttentionFn fn;
  int64_t chunk;                 // -1: full
  std::vector<int32_t> lengths;  // empty: every sample full length
  int64_t bias_half;             // P of rel_bias; 0: no bias
  std::string name() const {
    std::string n =
        gated_attention_fn_name(fn) + (chunk > 0 && chunk < L ? ", chunk " + std::to_string(chunk) : ", full");
    n += lengths.empty() ? ", unpadded" : ", padded";
    n += bias_half > 0 ? ", bias P " + std::to_string(bias_half) : ", no bias";
    return n + ", B " + std::to_string(B) + " L " + std::to_string(L) + " Z " + std::to_string(Z) + " E " +
           std::to_string(E);
  }
  int64_t span() const { return chunk > 0 && chunk < L ? chunk : L; }
  int64_t valid(int64_t b) const { return lengths.empty() ? L : lengths[size_t(b)]; }
};

const GatedAttentionFn kFns[] = {GatedAttentionFn::softmax, GatedAttentionFn::laplace, GatedAttentionFn::relu2};

// Every fn × {full, chunked} × {padded, not} × {bias, none} on one size (chunk 4 does not divide L = 11; a padded
// sample ends inside a chunk). The bias is sized with room to spare (P > span) where it is present.
std::vector<GattCase> grid(int64_t B, int64_t L, int64_t Z, int64_t E, int64_t chunk, std::vector<int32_t> lengths) {
  std::vector<GattCase> cases;
  for (GatedAttentionFn fn : kFns)
    for (int64_t ch : {int64_t(-1), chunk})
      for (bool padded : {false, true})
        for (bool bias : {false, true}) {
          GattCase c{B, L, Z, E, fn, ch, padded ? lengths : std::vector<int32_t>{}, 0};
          if (bias) c.bias_half = c.span() + 2;
          cases.push_back(c);
        }
  return cases;
}

struct Inputs {
  std::vector<double> q, k, v, bias;
};

std::vector<double> uniform(size_t n, double lo, double hi, std::mt19937& gen) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> x(n);
  for (double& e : x) e = u(gen);
  return x;
}

// Values that put laplace's and relu²'s arguments on both sides of their bends (q·k/n spans about ±1 with the bias).
Inputs make_inputs(const GattCase& c, uint32_t seed) {
  std::mt19937 gen(seed);
  const double a = c.fn == GatedAttentionFn::softmax ? 1.5 : 2.0 * std::sqrt(double(c.span()) / double(c.Z));
  Inputs in;
  in.q = uniform(size_t(c.B * c.L * c.Z), -a, a, gen);
  in.k = uniform(size_t(c.B * c.L * c.Z), -a, a, gen);
  in.v = uniform(size_t(c.B * c.L * c.E), -1.0, 1.0, gen);
  if (c.bias_half > 0) in.bias = uniform(size_t(2 * c.bias_half - 1), -0.5, 0.5, gen);
  return in;
}

double ref_f(GatedAttentionFn fn, double x) {
  if (fn == GatedAttentionFn::relu2) return x > 0 ? x * x : 0.0;
  return 0.5 * (1.0 + std::erf((x - 0.707107) / (0.282095 * std::sqrt(2.0))));
}

// Straight from the definition: per valid query, its span's valid keys, the scores, A, and A·v.
std::vector<double> ref_forward(const GattCase& c, const Inputs& in) {
  std::vector<double> out(size_t(c.B * c.L * c.E), 0.0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t i = 0; i < c.valid(b); ++i) {
      const int64_t lo = i / c.span() * c.span(), hi = std::min({lo + c.span(), c.L, c.valid(b)});
      const double scale = c.fn == GatedAttentionFn::softmax ? 1.0 / std::sqrt(double(c.Z)) : 1.0 / double(hi - lo);
      std::vector<double> a(size_t(hi - lo));
      for (int64_t j = lo; j < hi; ++j) {
        double dot = 0.0;
        for (int64_t z = 0; z < c.Z; ++z)
          dot += in.q[size_t((b * c.L + i) * c.Z + z)] * in.k[size_t((b * c.L + j) * c.Z + z)];
        const double bias = c.bias_half > 0 ? in.bias[size_t(c.bias_half - 1 + j - i)] : 0.0;
        a[size_t(j - lo)] = scale * dot + bias;
      }
      if (c.fn == GatedAttentionFn::softmax) {
        double mx = a[0], sum = 0.0;
        for (double x : a) mx = std::max(mx, x);
        for (double& x : a) sum += (x = std::exp(x - mx));
        for (double& x : a) x /= sum;
      } else {
        for (double& x : a) x = ref_f(c.fn, x);
      }
      for (int64_t j = lo; j < hi; ++j)
        for (int64_t e = 0; e < c.E; ++e)
          out[size_t((b * c.L + i) * c.E + e)] += a[size_t(j - lo)] * in.v[size_t((b * c.L + j) * c.E + e)];
    }
  return out;
}

struct TensorInputs {
  Tensor q, k, v, bias, lengths;
};

TensorInputs to_tensors(const GattCase& c, const Inputs& in, DType dtype, bool requires_grad = false) {
  auto make = [&](const std::vector<double>& x, Shape shape) {
    Tensor t = from_vector<double>(x, std::move(shape)).to(dtype).detach();
    if (requires_grad) t.requires_grad_();
    return t;
  };
  TensorInputs t{make(in.q, {c.B, c.L, c.Z}), make(in.k, {c.B, c.L, c.Z}), make(in.v, {c.B, c.L, c.E}), Tensor(),
                 Tensor()};
  if (c.bias_half > 0) t.bias = make(in.bias, {2 * c.bias_half - 1});
  if (!c.lengths.empty()) t.lengths = from_vector<int32_t>(c.lengths, {c.B}, TensorOptions(DType::i32));
  return t;
}

GatedAttentionOptions options_of(const GattCase& c) { return {c.fn, c.chunk}; }

Tensor run(const GattCase& c, const TensorInputs& t) {
  return gated_attention(t.q, t.k, t.v, t.bias, t.lengths, options_of(c));
}

std::vector<GattCase> all_forward_cases() {
  std::vector<GattCase> cases = grid(2, 11, 3, 4, 4, {11, 6});
  for (const GattCase& c : grid(2, 150, 5, 7, 70, {150, 97})) cases.push_back(c);    // tiles of 64 inside chunks of 70
  cases.push_back({1, 1, 1, 1, GatedAttentionFn::softmax, -1, {}, 1});               // one token
  cases.push_back({3, 9, 2, 3, GatedAttentionFn::relu2, 1, {9, 1, 4}, 1});           // chunk 1: each token alone
  cases.push_back({2, 130, 16, 8, GatedAttentionFn::laplace, 200, {130, 65}, 200});  // chunk > L: full, P > L
  return cases;
}

}  // namespace

TEST_CASE("gated_attention: forward matches the naive float64 reference", "[gated_attention]") {
  for (const GattCase& c : all_forward_cases()) {
    INFO(c.name());
    const Inputs in = make_inputs(c, 11);
    const Tensor expected = from_vector<double>(ref_forward(c, in), {c.B, c.L, c.E});
    REQUIRE_CLOSE(all_close(run(c, to_tensors(c, in, DType::f64)), expected, tolerance(Compare::forward_f64)));
    REQUIRE_CLOSE(all_close(run(c, to_tensors(c, in, DType::f32)).to(DType::f64), expected, {1e-4, 1e-5}));
  }
}

TEST_CASE("gated_attention: float64 finite differences for q, k, v and rel_bias", "[gated_attention]") {
  std::vector<GattCase> cases = grid(2, 7, 3, 2, 3, {7, 4});
  cases.push_back({1, 70, 2, 2, GatedAttentionFn::softmax, -1, {67}, 71});  // two tiles of queries and keys
  cases.push_back({1, 70, 2, 1, GatedAttentionFn::relu2, 66, {}, 66});
  // 16 or more (sample, span) pairs: the backward's one-pass schedule (the cases above run the two-pass one).
  for (GatedAttentionFn fn : kFns) cases.push_back({2, 21, 2, 2, fn, 2, {21, 12}, 3});
  for (const GattCase& c : cases) {
    INFO(c.name());
    const TensorInputs t = to_tensors(c, make_inputs(c, 37), DType::f64, true);
    const Tensor lengths = t.lengths;
    const GatedAttentionOptions opt = options_of(c);
    auto f = [&](const std::vector<Tensor>& x) { return gated_attention(x[0], x[1], x[2], x[3], lengths, opt); };
    REQUIRE_CLOSE(gradcheck(f, {t.q, t.k, t.v, t.bias}));
  }
}

TEST_CASE("gated_attention: padded positions never reach valid outputs and get zero gradients", "[gated_attention]") {
  for (const GattCase& c : grid(2, 11, 3, 4, 4, {11, 6})) {
    if (c.lengths.empty()) continue;
    INFO(c.name());
    const Inputs in = make_inputs(c, 41);
    Inputs noisy = in;  // padded q, k, v changed wildly
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t t = c.valid(b); t < c.L; ++t) {
        for (int64_t z = 0; z < c.Z; ++z) noisy.q[size_t((b * c.L + t) * c.Z + z)] = 1e3 * double(t + z + 1);
        for (int64_t z = 0; z < c.Z; ++z) noisy.k[size_t((b * c.L + t) * c.Z + z)] = -1e3 * double(t + z + 1);
        for (int64_t e = 0; e < c.E; ++e) noisy.v[size_t((b * c.L + t) * c.E + e)] = 1e4;
      }
    const Tensor clean = run(c, to_tensors(c, in, DType::f64));
    const TensorInputs t = to_tensors(c, noisy, DType::f64, true);
    const Tensor out = run(c, t);
    REQUIRE_CLOSE(bit_equal(out.detach(), clean));
    sum(mul(out, rand_f64({c.B, c.L, c.E}, 0.5, 1.5, false))).backward();
    const std::vector<double> o = out.detach().to_vector<double>(), dq = t.q.grad().to_vector<double>(),
                              dk = t.k.grad().to_vector<double>(), dv = t.v.grad().to_vector<double>();
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t p = c.valid(b); p < c.L; ++p) {
        for (int64_t e = 0; e < c.E; ++e) REQUIRE(o[size_t((b * c.L + p) * c.E + e)] == 0.0);
        for (int64_t e = 0; e < c.E; ++e) REQUIRE(dv[size_t((b * c.L + p) * c.E + e)] == 0.0);
        for (int64_t z = 0; z < c.Z; ++z) REQUIRE(dq[size_t((b * c.L + p) * c.Z + z)] == 0.0);
        for (int64_t z = 0; z < c.Z; ++z) REQUIRE(dk[size_t((b * c.L + p) * c.Z + z)] == 0.0);
      }
  }
}

TEST_CASE("gated_attention: results are bitwise the same for any thread count", "[gated_attention]") {
  // Chunk 90: 9 (sample, span) pairs, the two-pass backward; chunk 20: 30 pairs, the one-pass backward.
  for (const GattCase& c : {GattCase{3, 200, 8, 6, GatedAttentionFn::softmax, 90, {200, 150, 33}, 95},
                            GattCase{3, 200, 8, 6, GatedAttentionFn::laplace, 20, {200, 150, 33}, 21}}) {
    INFO(c.name());
    const Inputs in = make_inputs(c, 5);
    auto once = [&](int threads) {
      const int before = omp_get_max_threads();
      omp_set_num_threads(threads);
      const TensorInputs t = to_tensors(c, in, DType::f32, true);
      const Tensor out = run(c, t);
      sum(mul(out, full({c.B, c.L, c.E}, 0.75))).backward();
      omp_set_num_threads(before);
      return std::vector<Tensor>{out.detach(), t.q.grad(), t.k.grad(), t.v.grad(), t.bias.grad()};
    };
    const std::vector<Tensor> one = once(1), two = once(2);
    for (size_t i = 0; i < one.size(); ++i) {
      INFO("tensor " << i << " (out, dq, dk, dv, drel_bias)");
      REQUIRE_CLOSE(bit_equal(two[i], one[i]));
    }
  }
}

TEST_CASE("gated_attention: full softmax at L = 4096 needs memory far below L x L", "[gated_attention]") {
  const int64_t L = 4096, Z = 16, E = 16;
  const GattCase c{1, L, Z, E, GatedAttentionFn::softmax, -1, {4000}, L};
  const TensorInputs t = to_tensors(c, make_inputs(c, 3), DType::f32, true);
  reset_peak_memory(kCPU);
  const int64_t before = memory_stats(kCPU).bytes_in_use;
  const Tensor out = run(c, t);
  sum(out).backward();
  // Inputs, output, lse and gradients are a few [L, 16] buffers (256 KiB each); L × L floats would be 64 MiB.
  CHECK(memory_stats(kCPU).peak_bytes - before < 4 * 1024 * 1024);
  // Spot-check one row against the reference formula (float64).
  const std::vector<double> q = t.q.detach().to(DType::f64).to_vector<double>(),
                            k = t.k.detach().to(DType::f64).to_vector<double>(),
                            v = t.v.detach().to(DType::f64).to_vector<double>(),
                            w = t.bias.detach().to(DType::f64).to_vector<double>();
  const std::vector<float> got = out.detach().to_vector<float>();
  for (int64_t i : {int64_t(0), int64_t(2047), int64_t(3999)}) {
    std::vector<double> s(4000);
    double mx = -1e300, sum_e = 0.0;
    for (int64_t j = 0; j < 4000; ++j) {
      double dot = 0.0;
      for (int64_t z = 0; z < Z; ++z) dot += q[size_t(i * Z + z)] * k[size_t(j * Z + z)];
      s[size_t(j)] = dot / 4.0 + w[size_t(L - 1 + j - i)];
      mx = std::max(mx, s[size_t(j)]);
    }
    for (double& x : s) sum_e += (x = std::exp(x - mx));
    for (int64_t e = 0; e < E; ++e) {
      double o = 0.0;
      for (int64_t j = 0; j < 4000; ++j) o += s[size_t(j)] / sum_e * v[size_t(j * E + e)];
      REQUIRE(got[size_t(i * E + e)] == Approx(o).margin(1e-5));
    }
  }
  for (int64_t e = 0; e < E; ++e) REQUIRE(got[size_t(4000 * E + e)] == 0.0f);
}

TEST_CASE("gated_attention: attention function names", "[gated_attention]") {
  for (GatedAttentionFn fn : kFns) CHECK(parse_gated_attention_fn(gated_attention_fn_name(fn)) == fn);
  CHECK(gated_attention_fn_name(GatedAttentionFn::relu2) == "relu2");
  REQUIRE_THROWS_WITH(parse_gated_attention_fn("relu"),
                      Contains("unknown attention function 'relu' (expected one of: softmax, laplace, relu2)"));
}

TEST_CASE("gated_attention: invalid arguments are clear errors", "[gated_attention]") {
  const GattCase c{2, 6, 3, 4, GatedAttentionFn::softmax, -1, {}, 6};
  const TensorInputs t = to_tensors(c, make_inputs(c, 3), DType::f32);
  auto call = [&](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias, const Tensor& lengths,
                  GatedAttentionOptions o = {}) { return gated_attention(q, k, v, bias, lengths, o); };
  REQUIRE_THROWS_WITH(call(t.q.reshape({12, 3}), t.k, t.v, Tensor(), Tensor()),
                      Contains("gated_attention: q must be 3-D [B, L, Z], got [12, 3]"));
  REQUIRE_THROWS_WITH(call(t.q, zeros({2, 6, 2}), t.v, Tensor(), Tensor()),
                      Contains("k has shape [2, 6, 2], expected q's shape [2, 6, 3]"));
  REQUIRE_THROWS_WITH(call(t.q, t.k, zeros({2, 5, 4}), Tensor(), Tensor()),
                      Contains("v has shape [2, 5, 4], expected [B, L, E] = [2, 6, E] with E >= 1"));
  REQUIRE_THROWS_WITH(call(t.q, t.k, t.v, zeros({10}), Tensor()),
                      Contains("rel_bias has shape [10], expected [2P - 1]"));
  REQUIRE_THROWS_WITH(call(t.q, t.k, t.v, zeros({9}), Tensor()),
                      Contains("rel_bias has shape [9] (P = 5), expected P >= the attention span 6 (L, full "
                               "attention)"));
  REQUIRE_THROWS_WITH(call(t.q, t.k, t.v, zeros({3}), Tensor(), {GatedAttentionFn::relu2, 4}),
                      Contains("(P = 2), expected P >= the attention span 4 (the chunk size)"));
  REQUIRE_THROWS_WITH(call(t.q, t.k, t.v, Tensor(), Tensor(), {GatedAttentionFn::laplace, 0}),
                      Contains("chunk = 0, expected -1 (full attention) or a chunk size >= 1"));
  REQUIRE_THROWS_WITH(call(t.q, t.k, t.v, Tensor(), Tensor(), {GatedAttentionFn::laplace, -2}), Contains("chunk = -2"));
  REQUIRE_THROWS_WITH(call(t.q, t.k, t.v, Tensor(), from_vector<int32_t>({6, 7}, {2})),
                      Contains("lengths[1] = 7 is outside [1, L] = [1, 6]"));
  REQUIRE_THROWS_WITH(call(t.q, t.k, t.v, Tensor(), from_vector<int32_t>({0, 6}, {2})),
                      Contains("lengths[0] = 0 is outside [1, L] = [1, 6]"));
  REQUIRE_THROWS_WITH(call(t.q, t.k, t.v, Tensor(), from_vector<int32_t>({6}, {1})),
                      Contains("lengths has shape [1], expected [B] = [2]"));
  REQUIRE_THROWS_WITH(call(t.q, t.k, t.v, Tensor(), zeros({2})), Contains("lengths has dtype float32, expected int32"));
  REQUIRE_THROWS_WITH(call(t.q, t.k.to(DType::f64), t.v, Tensor(), Tensor()),
                      Contains("gated_attention: expected tensors of the same dtype"));
  REQUIRE_THROWS_WITH(call(t.q.to(DType::i32), t.k, t.v, Tensor(), Tensor()),
                      Contains("q has dtype int32, expected float32 or float64"));
  REQUIRE_THROWS_WITH(call(t.q, t.k, t.v, Tensor(), Tensor(), {static_cast<GatedAttentionFn>(7), -1}),
                      Contains("unknown attention function 7"));
}
