// AFT ops and mixers (specs/mixers.md §4, §6 item 5): the GEMM and band forms against the direct O(N²·D) formula
// with the exact per-(t, d) max for every variant, causal and not, with key padding; inputs whose den underflows are
// caught by the fallback; float64 finite differences of Q, K, V, the bias (and U, V_p, the conv parameters through
// the mixers); AFT-conv at init equals AFT-simple; every invalid shape and option is a clear error.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cfloat>
#include <cmath>
#include <string>
#include <vector>

#include "engine/aft.h"
#include "engine/mixgrad.h"
#include "nn/mixer.h"
#include "nn/mixers/aft_mixer.h"
#include "tests/common/aft_reference.h"
#include "tests/common/check.h"
#include "tests/common/mixer_harness.h"

using namespace mixgrad;
using Catch::Contains;
using testing::Compare;
using testing::tolerance;

namespace {

constexpr int64_t kB = 3, kN = 13, kD = 6;
const std::vector<int32_t> kLengths = {13, 7, 1};

// One AFT call: variant, causal, the window (local) or kernel size (conv), the conv heads, and the forced path.
struct AftCase {
  std::string variant;
  bool causal = false;
  int64_t size = 0, heads = 1;
  AftPath path = AftPath::automatic;

  std::string name() const {
    const char* p = path == AftPath::dense ? "dense" : (path == AftPath::band ? "band" : "automatic");
    return fmt::format("{} causal={} size={} heads={} path={}", variant, causal, size, heads, p);
  }
  Shape key_shape(int64_t B, int64_t N, int64_t D) const { return {B, N, variant == "conv" ? heads : D}; }
  Shape bias_shape(int64_t N) const {
    if (variant == "conv") return {heads, size};
    if (variant == "simple") return {};
    return {N, N};
  }
  Tensor run(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias, const Tensor& lengths) const {
    if (variant == "full") return aft_full(q, k, v, bias, lengths, causal, path);
    if (variant == "local") return aft_local(q, k, v, bias, size, lengths, causal, path);
    if (variant == "simple") return aft_simple(q, k, v, lengths, causal, path);
    return aft_conv(q, k, v, bias, lengths, causal);
  }
};

std::vector<AftCase> all_cases() {
  std::vector<AftCase> cases;
  for (bool causal : {false, true}) {
    for (AftPath p : {AftPath::automatic, AftPath::band}) cases.push_back({"full", causal, 0, 1, p});
    for (int64_t s : {1, 3, 20})
      for (AftPath p : {AftPath::dense, AftPath::band}) cases.push_back({"local", causal, s, 1, p});
    for (AftPath p : {AftPath::automatic, AftPath::dense}) cases.push_back({"simple", causal, 0, 1, p});
    for (auto [s, h] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 2}, {5, 3}, {15, 6}})
      cases.push_back({"conv", causal, s, h});
  }
  for (int64_t s : {2, 4}) cases.push_back({"conv", true, s, 2});
  return cases;
}

Tensor lengths_tensor(const std::vector<int32_t>& lengths) {
  return from_vector<int32_t>(lengths, {int64_t(lengths.size())}, TensorOptions(DType::i32));
}

struct Inputs {
  Tensor q, k, v, bias;
};

Inputs random_inputs(const AftCase& c, DType dtype, uint64_t seed, int64_t B = kB, int64_t N = kN, int64_t D = kD) {
  manual_seed(seed);
  const TensorOptions opt(DType::f64);
  Inputs in{mul_scalar(randn({B, N, D}, opt), 1.5), mul_scalar(randn(c.key_shape(B, N, D), opt), 2.0),
            randn({B, N, D}, opt), Tensor()};
  if (c.variant != "simple") in.bias = mul_scalar(randn(c.bias_shape(N), opt), 2.0);
  for (Tensor* t : {&in.q, &in.k, &in.v, &in.bias})
    if (t->defined()) *t = t->to(dtype);
  return in;
}

// Inputs whose GEMM-form den underflows (spec §4.3): the maxima of K and of w' fall on different keys `gap` apart.
// Key 0 has K = 0 and bias 0; every other key has K = −gap and in-band bias +gap (local/full/conv; causal simple:
// the last key has K = 0, every earlier one −gap). The exact result averages V over the keys with logit 0.
Inputs underflow_inputs(const AftCase& c, DType dtype, double gap) {
  Inputs in = random_inputs(c, DType::f64, 90, 2, 9, 4);
  const int64_t N = 9;
  const int64_t kw = in.k.size(2);
  std::vector<double> k(size_t(2 * N * kw));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < N; ++t)
      for (int64_t j = 0; j < kw; ++j) {
        const bool top = c.variant == "simple" ? t == N - 1 : t == 0;
        k[size_t((b * N + t) * kw + j)] = top ? 0.0 : -gap;
      }
  in.k = from_vector<double>(k, in.k.shape());
  if (c.variant == "full" || c.variant == "local") {
    std::vector<double> w(size_t(N * N));
    for (int64_t t = 0; t < N; ++t)
      for (int64_t tp = 0; tp < N; ++tp) w[size_t(t * N + tp)] = tp == 0 ? 0.0 : gap;
    in.bias = from_vector<double>(w, {N, N});
  } else if (c.variant == "conv") {
    in.bias = full(in.bias.shape(), gap, TensorOptions(DType::f64));
  }
  for (Tensor* t : {&in.q, &in.k, &in.v, &in.bias})
    if (t->defined()) *t = t->to(dtype);
  return in;
}

// How many (b, t, c) of AFT-full's GEMM form (spec §4.3: A = exp(w − m^w), E = exp(K − m^K), den = A·E) have a den
// below the smallest normal, in float32: the elements the fallback has to catch.
int underflowing_dens_f32(const Inputs& in, bool causal) {
  const std::vector<double> k = in.k.to(DType::f64).to_vector<double>(), w = in.bias.to(DType::f64).to_vector<double>();
  const int64_t B = in.k.size(0), N = in.k.size(1), D = in.k.size(2);
  int count = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < D; ++c) {
      float mk = -INFINITY;
      for (int64_t t = 0; t < N; ++t) mk = std::max(mk, float(k[size_t((b * N + t) * D + c)]));
      for (int64_t t = 0; t < N; ++t) {
        const int64_t end = causal ? t + 1 : N;
        float mw = -INFINITY, den = 0.f;
        for (int64_t tp = 0; tp < end; ++tp) mw = std::max(mw, float(w[size_t(t * N + tp)]));
        for (int64_t tp = 0; tp < end; ++tp)
          den += std::exp(float(w[size_t(t * N + tp)]) - mw) * std::exp(float(k[size_t((b * N + tp) * D + c)]) - mk);
        count += den < FLT_MIN ? 1 : 0;
      }
    }
  return count;
}

}  // namespace

TEST_CASE("aft: every variant and path matches the direct formula with the exact per-(t, d) max", "[aft]") {
  const Tensor lengths = lengths_tensor(kLengths);
  for (const AftCase& c : all_cases()) {
    INFO(c.name());
    NoGradGuard ng;
    const Inputs in = random_inputs(c, DType::f64, 11);
    const Tensor y = c.run(in.q, in.k, in.v, in.bias, lengths);
    REQUIRE_CLOSE(
        testing::all_close(y, testing::aft_reference(c.variant, in.q, in.k, in.v, in.bias, kLengths, c.causal, c.size),
                           tolerance(Compare::forward_f64)));
    REQUIRE_CLOSE(testing::all_close(c.run(in.q, in.k, in.v, in.bias, Tensor()),
                                     testing::aft_reference(c.variant, in.q, in.k, in.v, in.bias, {}, c.causal, c.size),
                                     tolerance(Compare::forward_f64)));
    // float32 against the float64 formula of the same (rounded) inputs.
    const Inputs f = random_inputs(c, DType::f32, 11);
    REQUIRE_CLOSE(
        testing::all_close(c.run(f.q, f.k, f.v, f.bias, lengths),
                           testing::aft_reference(c.variant, f.q, f.k, f.v, f.bias, kLengths, c.causal, c.size),
                           testing::Tolerance{1e-4, 1e-5}));
  }
}

TEST_CASE("aft: local with a window >= N is full; local keeps bias 0 (not -inf) outside the window", "[aft]") {
  NoGradGuard ng;
  const Inputs in = random_inputs({"full"}, DType::f64, 12);
  const Tensor lengths = lengths_tensor(kLengths);
  for (bool causal : {false, true}) {
    REQUIRE_CLOSE(testing::all_close(aft_local(in.q, in.k, in.v, in.bias, kN, lengths, causal),
                                     aft_full(in.q, in.k, in.v, in.bias, lengths, causal),
                                     tolerance(Compare::forward_f64)));
    // Window 1 and a bias of −1000 on the diagonal: each query's own key is switched off and every other visible key
    // still counts with bias 0, so AFT-local is AFT-simple over the other keys — not a masked-out row.
    const Tensor diag_off = mul_scalar(ones({kN, kN}, TensorOptions(DType::f64)), -1000.0);
    const Tensor y = aft_local(in.q, in.k, in.v, diag_off, 1, Tensor(), causal);
    const Tensor ref = testing::aft_reference("local", in.q, in.k, in.v, diag_off, {}, causal, 1);
    REQUIRE_CLOSE(testing::all_close(y, ref, tolerance(Compare::forward_f64)));
    for (double x : y.to_vector<double>()) REQUIRE(std::isfinite(x));
  }
}

TEST_CASE("aft: den underflow (gap > 100) is caught by the fallback, forward and backward", "[aft]") {
  const std::vector<AftCase> cases = {{"full", false},
                                      {"full", true},
                                      {"full", false, 0, 1, AftPath::band},
                                      {"local", false, 9},
                                      {"local", false, 2, 1, AftPath::band},
                                      {"local", true, 2, 1, AftPath::band},
                                      {"simple", true},
                                      {"simple", true, 0, 1, AftPath::band},
                                      {"conv", false, 3, 2},
                                      {"conv", true, 3, 4}};
  const std::vector<int32_t> len = {9, 6};
  const Tensor lengths = lengths_tensor(len);
  for (const AftCase& c : cases) {
    INFO(c.name());
    // float32, gap 110: e^-110 is below float's smallest subnormal, so the GEMM form would give 0/0.
    const Inputs f = underflow_inputs(c, DType::f32, 110.0);
    if (c.variant == "full") CHECK(underflowing_dens_f32(f, c.causal) > 0);
    {
      NoGradGuard ng;
      const Tensor y = c.run(f.q, f.k, f.v, f.bias, lengths);
      for (float x : y.to_vector<float>()) REQUIRE(std::isfinite(x));
      REQUIRE_CLOSE(testing::all_close(y,
                                       testing::aft_reference(c.variant, f.q, f.k, f.v, f.bias, len, c.causal, c.size),
                                       testing::Tolerance{1e-5, 1e-6}));
    }
    // float64, gap 800 (below double's smallest subnormal): the same, and the fallback's backward against finite
    // differences.
    const Inputs d = underflow_inputs(c, DType::f64, 800.0);
    {
      NoGradGuard ng;
      REQUIRE_CLOSE(testing::all_close(c.run(d.q, d.k, d.v, d.bias, lengths),
                                       testing::aft_reference(c.variant, d.q, d.k, d.v, d.bias, len, c.causal, c.size),
                                       tolerance(Compare::forward_f64)));
    }
    std::vector<Tensor> inputs = {d.q, d.k, d.v};
    if (d.bias.defined()) inputs.push_back(d.bias);
    for (Tensor& t : inputs) t.requires_grad_();
    REQUIRE_CLOSE(testing::gradcheck(
        [&](const std::vector<Tensor>& x) { return c.run(x[0], x[1], x[2], x.size() > 3 ? x[3] : Tensor(), lengths); },
        inputs));
    // float32 gradients of the fallback elements against float64 ones (where e^-110 does not underflow).
    const Inputs f64 = underflow_inputs(c, DType::f64, 110.0);
    std::vector<Tensor> g32, g64;
    for (const Inputs* in : {&f, &f64}) {
      std::vector<Tensor> xs = {in->q.detach(), in->k.detach(), in->v.detach()};
      if (in->bias.defined()) xs.push_back(in->bias.detach());
      for (Tensor& t : xs) t.requires_grad_();
      const Tensor w = ones(in->q.shape(), TensorOptions(in->q.dtype()));
      sum(mul(c.run(xs[0], xs[1], xs[2], xs.size() > 3 ? xs[3] : Tensor(), lengths), w)).backward();
      for (const Tensor& t : xs) (in == &f ? g32 : g64).push_back(t.grad());
    }
    for (size_t i = 0; i < g32.size(); ++i) {
      INFO("input " << i);
      REQUIRE_CLOSE(testing::all_close(g32[i], g64[i], testing::Tolerance{1e-3, 1e-4}));
    }
  }
}

TEST_CASE("aft: gradients of Q, K, V and the bias match finite differences (float64, key padding)", "[aft]") {
  const Tensor lengths = lengths_tensor({5, 3});
  for (const AftCase& c : all_cases()) {
    INFO(c.name());
    const Inputs in = random_inputs(c, DType::f64, 13, 2, 7, 6);
    std::vector<Tensor> inputs = {in.q, in.k, in.v};
    if (in.bias.defined()) inputs.push_back(in.bias);
    for (Tensor& t : inputs) t.requires_grad_();
    REQUIRE_CLOSE(testing::gradcheck(
        [&](const std::vector<Tensor>& x) { return c.run(x[0], x[1], x[2], x.size() > 3 ? x[3] : Tensor(), lengths); },
        inputs));
  }
}

TEST_CASE(
    "aft: the causal GEMMs' row blocks, the channel-blocked scan and many-head conv agree with the band form "
    "at larger shapes (forward and gradients)",
    "[aft]") {
  // N = 300 spans three of the CPU's 128-row causal GEMM blocks; D = 70 two of the scan's 64-channel blocks (the
  // second partial); conv with 70 one-channel heads and with 7-channel heads. Forward and gradients against the band
  // form (conv: the forward against the float64 formula; its gradients are the finite-difference test's), float64
  // and float32, with key padding.
  const int64_t B = 2, N = 300, D = 70;
  const std::vector<int32_t> len = {300, 171};
  const Tensor lengths = lengths_tensor(len);
  const std::vector<std::pair<AftCase, AftCase>> pairs = {
      {{"full", true}, {"full", true, 0, 1, AftPath::band}},
      {{"local", true, 100, 1, AftPath::dense}, {"local", true, 100, 1, AftPath::band}},
      {{"full", false}, {"full", false, 0, 1, AftPath::band}},
      {{"simple", true}, {"simple", true, 0, 1, AftPath::band}},
      {{"simple", false}, {"simple", false, 0, 1, AftPath::dense}},
      {{"conv", false, 11, 70}, {"conv", false, 11, 70}},
      {{"conv", true, 4, 10}, {"conv", true, 4, 10}}};
  for (const auto& [c, ref] : pairs) {
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO(fmt::format("{} vs {} {}", c.name(), ref.name(), dtype));
      const Inputs in = random_inputs(c, dtype, 21, B, N, D);
      std::vector<std::vector<Tensor>> grads(2);
      std::vector<Tensor> ys;
      for (int which = 0; which < (c.variant == "conv" ? 1 : 2); ++which) {  // conv: against the formula only
        std::vector<Tensor> xs = {in.q.detach(), in.k.detach(), in.v.detach()};
        if (in.bias.defined()) xs.push_back(in.bias.detach());
        for (Tensor& t : xs) t.requires_grad_();
        const AftCase& run = which == 0 ? c : ref;
        const Tensor y = run.run(xs[0], xs[1], xs[2], xs.size() > 3 ? xs[3] : Tensor(), lengths);
        manual_seed(22);
        sum(mul(y, randn(y.shape(), TensorOptions(dtype)))).backward();
        ys.push_back(y.detach());
        for (const Tensor& t : xs) grads[size_t(which)].push_back(t.grad());
      }
      const testing::Tolerance tol =
          dtype == DType::f64 ? tolerance(Compare::forward_f64) : testing::Tolerance{2e-4, 2e-5};
      if (c.variant == "conv") {
        NoGradGuard ng;
        REQUIRE_CLOSE(testing::all_close(
            ys[0], testing::aft_reference(c.variant, in.q, in.k, in.v, in.bias, len, c.causal, c.size), tol));
      } else {
        REQUIRE_CLOSE(testing::all_close(ys[0], ys[1], tol));
        for (size_t i = 0; i < grads[0].size(); ++i) {
          INFO("gradient of input " << i);
          REQUIRE_CLOSE(testing::all_close(
              grads[0][i], grads[1][i],
              dtype == DType::f64 ? testing::Tolerance{1e-9, 1e-10} : testing::Tolerance{2e-3, 2e-4}));
        }
      }
    }
  }
}

TEST_CASE("aft: AFT-local from the bias band of U V_p^T equals the dense form; dU, dV_p match finite differences",
          "[aft]") {
  const Tensor lengths = lengths_tensor({7, 4});
  for (bool causal : {false, true})
    for (int64_t s : {1, 2, 3, 9})
      for (AftPath path : {AftPath::dense, AftPath::band}) {
        INFO("causal " << causal << " window " << s << " path " << (path == AftPath::dense ? "dense" : "band"));
        manual_seed(30);
        const TensorOptions opt(DType::f64);
        const Tensor q = randn({2, 7, 5}, opt), k = randn({2, 7, 5}, opt), v = randn({2, 7, 5}, opt);
        const Tensor u = randn({7, 3}, opt), vp = randn({7, 3}, opt);
        {
          NoGradGuard ng;
          const Tensor band = aft_local_bias(u, vp, s, causal);
          CHECK(band.shape() == Shape{7, causal ? std::min<int64_t>(s, 7) : 2 * std::min<int64_t>(s, 7) - 1});
          REQUIRE_CLOSE(testing::all_close(aft_local_band(q, k, v, band, s, lengths, causal, path),
                                           aft_local(q, k, v, matmul(u, transpose(vp, 0, 1)), s, lengths, causal),
                                           tolerance(Compare::forward_f64)));
        }
        std::vector<Tensor> inputs = {q, k, v, u, vp};
        for (Tensor& t : inputs) t.requires_grad_();
        REQUIRE_CLOSE(testing::gradcheck(
            [&](const std::vector<Tensor>& x) {
              return aft_local_band(x[0], x[1], x[2], aft_local_bias(x[3], x[4], s, causal), s, lengths, causal, path);
            },
            inputs));
      }
}

TEST_CASE("aft mixers: U, V_p and the conv parameters match finite differences; causal contexts", "[aft]") {
  const Tensor lengths = testing::mixer_test_lengths();
  for (const std::string name : {"aft-full", "aft-local", "aft-simple", "aft-conv"})
    for (bool causal : {false, true}) {
      INFO(name << " causal " << causal);
      manual_seed(20);
      nn::MixerContext ctx = testing::mixer_test_context(name);
      ctx.causal = causal;
      if (name == "aft-local") ctx.options = nn::resolve_mixer_options(name, {{"aft_window", "2"}});
      if (name == "aft-conv") ctx.options = nn::resolve_mixer_options(name, {{"aft_conv_kernel", "3"}});
      auto m = nn::make_mixer(name, ctx);
      m->to(DType::f64);
      m->eval();
      for (Tensor p : m->parameters())
        if (p.dim() == 1) {
          NoGradGuard ng;
          p.copy_(mul_scalar(randn(p.shape(), TensorOptions(DType::f64)), 0.5));
        }
      std::vector<Tensor> inputs = {testing::rand_f64({3, 8, 8})};
      for (const auto& [pname, p] : m->named_parameters()) inputs.push_back(p);
      REQUIRE_CLOSE(
          testing::gradcheck([&](const std::vector<Tensor>& in) { return m->forward(in[0], lengths); }, inputs));
    }
}

TEST_CASE("aft mixers: position biases sized from seq_len, a shorter N uses their leading rows", "[aft]") {
  manual_seed(21);
  nn::MixerContext ctx = testing::mixer_test_context("aft-full");
  auto m = std::dynamic_pointer_cast<nn::AftMixer>(nn::make_mixer("aft-full", ctx));
  REQUIRE(m);
  m->eval();
  CHECK(m->pos_u.shape() == Shape{testing::kMixerTestTokens, 128});
  CHECK(m->pos_v.shape() == Shape{testing::kMixerTestTokens, 128});
  NoGradGuard ng;
  const Tensor x = randn({2, 5, testing::kMixerTestDim});
  const Tensor w = matmul(m->pos_u.slice0(0, 5), transpose(m->pos_v.slice0(0, 5), 0, 1));
  const Tensor expected = m->proj->forward(aft_full(m->to_q->forward(x), m->to_k->forward(x), m->to_v->forward(x), w));
  REQUIRE_CLOSE(testing::bit_equal(m->forward(x), expected));
  CHECK_THROWS_WITH(m->forward(randn({2, testing::kMixerTestTokens + 1, testing::kMixerTestDim})),
                    Contains("N = 9 tokens") && Contains("seq_len = 8"));
}

TEST_CASE("aft-conv at init equals aft-simple", "[aft]") {
  manual_seed(22);
  nn::MixerContext ctx = testing::mixer_test_context("aft-conv");
  auto m = std::dynamic_pointer_cast<nn::AftMixer>(nn::make_mixer("aft-conv", ctx));
  REQUIRE(m);
  m->to(DType::f64);
  m->eval();
  NoGradGuard ng;
  const Tensor kernel = m->conv_kernel();
  CHECK(kernel.shape() == Shape{2, 11});
  for (double v : kernel.to_vector<double>()) CHECK(v == 0.0);
  const Tensor lengths = testing::mixer_test_lengths();
  const Tensor x = randn({3, 8, 8}, TensorOptions(DType::f64));
  const Tensor q = m->to_q->forward(x), k = m->to_k->forward(x), v = m->to_v->forward(x);
  const Tensor k_channels = reshape(expand(reshape(k, {3, 8, 2, 1}), {3, 8, 2, 6}), {3, 8, 12});
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    REQUIRE_CLOSE(testing::all_close(aft_conv(q, k, v, kernel, lengths, causal),
                                     aft_simple(q, k_channels, v, lengths, causal), tolerance(Compare::forward_f64)));
  }
  REQUIRE_CLOSE(testing::all_close(m->forward(x, lengths), m->proj->forward(aft_simple(q, k_channels, v, lengths)),
                                   tolerance(Compare::forward_f64)));
}

TEST_CASE("aft: a NaN key or value reaches the outputs that see it (NaN in, NaN out), every variant and path",
          "[aft]") {
  const int64_t B = 1, N = 5, D = 4;
  for (const AftCase& c : std::vector<AftCase>{{"simple", true},
                                               {"simple", false},
                                               {"simple", true, 0, 1, AftPath::band},
                                               {"full", true},
                                               {"full", false},
                                               {"local", true, 2, 1, AftPath::band},
                                               {"conv", true, 3, 2}}) {
    for (const DType dt : {DType::f32, DType::f64}) {
      INFO(c.name() << (dt == DType::f32 ? " float32" : " float64"));
      NoGradGuard ng;
      const TensorOptions o(dt);
      const Tensor q = full({B, N, D}, 0.5, o), v = full({B, N, D}, 1.0, o);
      std::vector<double> kv(size_t(B * N * (c.variant == "conv" ? c.heads : D)), 0.25);
      kv[0] = NAN;  // token 0's key (channel 0, or head 0 for conv)
      const Tensor k = from_vector<double>(kv, {B, N, int64_t(kv.size()) / N}).to(dt);
      const Tensor bias = c.variant == "conv" ? full({c.heads, c.size}, 0.0, o) : full({N, N}, 0.0, o);
      const std::vector<double> y = c.run(q, k, v, bias, Tensor()).to(DType::f64).to_vector<double>();
      // Token 0 is a key of every query (causal: each query's first key; local and conv: outside the window or
      // kernel a key still counts, with bias 0), so channel 0 is NaN at every token.
      for (int64_t t = 0; t < N; ++t) REQUIRE(std::isnan(y[size_t(t * D)]));
    }
  }
}

TEST_CASE("aft: invalid shapes and options are clear errors", "[aft]") {
  const TensorOptions opt(DType::f64);
  const Tensor q = randn({2, 5, 4}, opt), k = randn({2, 5, 4}, opt), v = randn({2, 5, 4}, opt);
  const Tensor w = randn({5, 5}, opt);
  CHECK_THROWS_WITH(aft_full(q, k, v, randn({4, 5}, opt)),
                    Contains("aft_full") && Contains("[4, 5]") && Contains("expected [N, N] = [5, 5]"));
  CHECK_THROWS_WITH(aft_full(q, randn({2, 5, 3}, opt), v, w), Contains("k has shape [2, 5, 3]"));
  CHECK_THROWS_WITH(aft_full(q, k, randn({2, 4, 4}, opt), w), Contains("v has shape [2, 4, 4]"));
  CHECK_THROWS_WITH(aft_full(randn({5, 4}, opt), k, v, w), Contains("q must be 3-D"));
  CHECK_THROWS_WITH(aft_full(q, k, v, randn({5, 5})), Contains("aft_full"));  // float32 bias with float64 q
  CHECK_THROWS_WITH(aft_full(q, k, v, Tensor()), Contains("position bias w has shape undefined"));
  CHECK_THROWS_WITH(aft_full(q, k, v, w, from_vector<int32_t>({5, 6}, {2})), Contains("aft_full"));
  CHECK_THROWS_WITH(aft_full(q, k, v, w, from_vector<int32_t>({5}, {1})), Contains("aft_full"));
  CHECK_THROWS_WITH(aft_local(q, k, v, w, 0), Contains("window s = 0"));
  CHECK_THROWS_WITH(aft_local_band(q, k, v, randn({5, 4}, opt), 2),
                    Contains("aft_local_band") && Contains("expected [N, W] = [5, 3]"));
  CHECK_THROWS_WITH(aft_local_bias(randn({5, 3}, opt), randn({5, 2}, opt), 2), Contains("V_p has shape [5, 2]"));
  CHECK_THROWS_WITH(aft_local_bias(randn({5, 3}, opt), randn({5, 3}, opt), 0), Contains("window s = 0"));
  CHECK_THROWS_WITH(aft_local_bias(randn({5}, opt), randn({5}, opt), 2), Contains("U must be 2-D [N, R]"));
  CHECK_THROWS_WITH(aft_simple(q, k, Tensor()), Contains("aft_simple") && Contains("must be defined"));
  CHECK_THROWS_WITH(aft_conv(q, randn({2, 5, 2}, opt), v, randn({3, 3}, opt)), Contains("k has shape [2, 5, 2]"));
  CHECK_THROWS_WITH(aft_conv(q, randn({2, 5, 3}, opt), v, randn({3, 3}, opt)),
                    Contains("3 heads") && Contains("do not divide D = 4"));
  CHECK_THROWS_WITH(aft_conv(q, randn({2, 5, 2}, opt), v, randn({2, 4}, opt)), Contains("kernel size s = 4"));
  CHECK_THROWS_WITH(aft_conv(q, randn({2, 5, 2}, opt), v, randn({2}, opt)), Contains("must be 2-D [H, s]"));
  CHECK_NOTHROW(aft_conv(q, randn({2, 5, 2}, opt), v, randn({2, 4}, opt), Tensor(), true));
  CHECK_THROWS_WITH(aft_full(q.to(DType::i32), k, v, w), Contains("float32 or float64"));

  nn::MixerContext ctx = testing::mixer_test_context("aft-conv");
  ctx.options = nn::resolve_mixer_options("aft-conv", {{"aft_conv_heads", "5"}});
  CHECK_THROWS_WITH(nn::make_mixer("aft-conv", ctx), Contains("5 heads do not divide the mixing width 12"));
  ctx.options = nn::resolve_mixer_options("aft-conv", {{"aft_conv_kernel", "4"}});
  CHECK_THROWS_WITH(nn::make_mixer("aft-conv", ctx), Contains("aft_conv_kernel = 4 must be odd"));
  ctx.causal = true;
  CHECK_NOTHROW(nn::make_mixer("aft-conv", ctx));
  CHECK_THROWS_WITH(nn::resolve_mixer_options("aft-local", {{"aft_window", "0"}}), Contains("aft_window"));
  CHECK_THROWS_WITH(nn::resolve_mixer_options("aft-simple", {{"aft_rank", "4"}}), Contains("belongs to mixer"));
  CHECK_THROWS_WITH(nn::resolve_mixer_options("aft-full", {{"aft_rank", "x"}}), Contains("not an integer"));
  nn::MixerContext no_len = testing::mixer_test_context("aft-full");
  no_len.seq_len = 0;
  CHECK_THROWS_WITH(nn::make_mixer("aft-full", no_len), Contains("seq_len"));
}
