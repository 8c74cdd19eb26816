// Every registered token mixer, by one table: shapes, key padding (padded tokens never reach valid outputs and get
// zero gradient), float64 finite differences of the whole mixer, checkpoint round trips, overfitting one batch alone
// and inside a tiny ViT. A newly registered mixer is tested by this file without a line added. Also the typed
// mixer options (declaration checks, --mixer-opt parsing).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "engine/sequence.h"
#include "models/vit.h"
#include "nn/mixer.h"
#include "nn/optim/optimizer.h"
#include "nn/serialize.h"
#include "tests/common/check.h"
#include "tests/common/mixer_harness.h"
#include "tests/common/vit_helpers.h"

using namespace mixgrad;
using Catch::Contains;
using testing::kMixerTestBatch;
using testing::kMixerTestDim;
using testing::kMixerTestTokens;

namespace {

const Shape kShape{kMixerTestBatch, kMixerTestTokens, kMixerTestDim};

// A float64 mixer in eval mode (no dropout), weights from `seed`.
std::shared_ptr<nn::TokenMixer> f64_mixer(const std::string& name, uint64_t seed) {
  manual_seed(seed);
  auto m = nn::make_mixer(name, testing::mixer_test_context(name));
  m->to(DType::f64);
  m->eval();
  return m;
}

// Rows j >= lengths[b] of x [B, N, D] replaced by large random values.
Tensor garbage_in_padding(const Tensor& x, const std::vector<int32_t>& lengths) {
  Tensor y = x.detach().clone();
  Tensor noise = mul_scalar(randn(x.shape(), TensorOptions(x.dtype())), 100.0);
  const int64_t n = x.size(1), d = x.size(2);
  for (int64_t b = 0; b < x.size(0); ++b)
    for (int64_t i = lengths[size_t(b)] * d; i < n * d; ++i)
      y.data<double>()[b * n * d + i] = noise.data<double>()[b * n * d + i];
  return y;
}

// Lengths {N, N, N}: every token valid.
Tensor full_lengths() {
  return from_vector<int32_t>(std::vector<int32_t>(size_t(kMixerTestBatch), int32_t(kMixerTestTokens)),
                              {kMixerTestBatch}, TensorOptions(DType::i32));
}

// The rows j < lengths[b] of x, flattened, as a [rows, D] tensor.
Tensor valid_rows(const Tensor& x, const std::vector<int32_t>& lengths) {
  std::vector<Tensor> rows;
  for (int64_t b = 0; b < x.size(0); ++b) rows.push_back(narrow(narrow(x, 0, b, 1), 1, 0, lengths[size_t(b)]));
  return cat(rows, 1);
}

}  // namespace

TEST_CASE("every mixer: output shape; full lengths equal no lengths; padding never reaches valid outputs", "[mixers]") {
  const Tensor lengths = testing::mixer_test_lengths();
  const std::vector<int32_t> len = lengths.to_vector<int32_t>();
  const Tensor full = full_lengths();
  for (const std::string& name : nn::mixer_names()) {
    INFO("mixer " << name);
    auto m = f64_mixer(name, 500);
    NoGradGuard ng;
    const Tensor x = randn(kShape, TensorOptions(DType::f64));
    const Tensor y = m->forward(x);
    REQUIRE(y.shape() == kShape);
    for (double v : testing::host_values(y)) REQUIRE(std::isfinite(v));
    REQUIRE_CLOSE(testing::bit_equal(m->forward(x, full), y));
    const Tensor yp = m->forward(x, lengths);
    REQUIRE(yp.shape() == kShape);
    const Tensor yg = m->forward(garbage_in_padding(x, len), lengths);
    REQUIRE_CLOSE(testing::bit_equal(valid_rows(yg, len), valid_rows(yp, len)));
    CHECK_THROWS(m->forward(randn({2, kMixerTestTokens, kMixerTestDim + 1}, TensorOptions(DType::f64))));
  }
}

TEST_CASE("every mixer: padded inputs get exactly zero gradient; every parameter gets one", "[mixers]") {
  const Tensor lengths = testing::mixer_test_lengths();
  const std::vector<int32_t> len = lengths.to_vector<int32_t>();
  for (const std::string& name : nn::mixer_names()) {
    INFO("mixer " << name);
    auto m = f64_mixer(name, 501);
    Tensor x = randn(kShape, TensorOptions(DType::f64));
    x.requires_grad_();
    // A loss of the valid outputs only (what padded outputs hold is the mixer's business).
    const Tensor w = zero_padding(randn(kShape, TensorOptions(DType::f64)), lengths);
    sum(mul(m->forward(x, lengths), w)).backward();
    const std::vector<double> g = testing::host_values(x.grad());
    for (int64_t b = 0; b < kMixerTestBatch; ++b)
      for (int64_t j = len[size_t(b)]; j < kMixerTestTokens; ++j)
        for (int64_t c = 0; c < kMixerTestDim; ++c) {
          INFO("sample " << b << " padded position " << j << " channel " << c);
          REQUIRE(g[size_t((b * kMixerTestTokens + j) * kMixerTestDim + c)] == 0.0);
        }
    for (const auto& [pname, p] : m->named_parameters()) {
      INFO("parameter " << pname);
      REQUIRE(p.grad().defined());
      REQUIRE(p.grad().shape() == p.shape());
    }
  }
}

TEST_CASE("every mixer: gradients of the input and every parameter match finite differences (float64)", "[mixers]") {
  const Tensor lengths = testing::mixer_test_lengths();
  for (const std::string& name : nn::mixer_names()) {
    INFO("mixer " << name);
    auto m = f64_mixer(name, 502);
    // Non-zero biases, so that their gradients are checked against something.
    for (Tensor p : m->parameters())
      if (p.dim() == 1) {
        NoGradGuard ng;
        p.copy_(mul_scalar(randn(p.shape(), TensorOptions(DType::f64)), 0.3));
      }
    std::vector<Tensor> inputs = {testing::rand_f64(kShape)};
    for (const auto& [pname, p] : m->named_parameters()) inputs.push_back(p);
    // The parameters are inputs too: gradcheck perturbs them in place and the mixer reads the same storage.
    REQUIRE_CLOSE(
        testing::gradcheck([&](const std::vector<Tensor>& in) { return m->forward(in[0], lengths); }, inputs));
  }
}

TEST_CASE("every mixer: a state dict round-trips through safetensors bit-exactly", "[mixers]") {
  const auto path = std::filesystem::temp_directory_path() /
                    fmt::format("mixgrad_test_mixers_{}.safetensors", std::random_device{}());
  const Tensor lengths = testing::mixer_test_lengths();
  for (const std::string& name : nn::mixer_names()) {
    INFO("mixer " << name);
    manual_seed(503);
    auto a = nn::make_mixer(name, testing::mixer_test_context(name));
    nn::save_state_dict(*a, path, nn::resolve_mixer_options(name, {}).values());
    manual_seed(504);
    auto b = nn::make_mixer(name, testing::mixer_test_context(name));
    bool differed = false;
    for (size_t i = 0; i < a->state_dict().size(); ++i)
      differed = differed || !testing::bit_equal(a->state_dict()[i].second, b->state_dict()[i].second).ok;
    CHECK((differed || a->state_dict().empty()));
    nn::Metadata meta;
    nn::load_state_dict(*b, path, &meta);
    for (const auto& [k, v] : nn::resolve_mixer_options(name, {}).values()) CHECK(meta.at(k) == v);
    a->eval();
    b->eval();
    NoGradGuard ng;
    const Tensor x = randn(kShape);
    REQUIRE_CLOSE(testing::bit_equal(b->forward(x, lengths), a->forward(x, lengths)));
  }
  std::filesystem::remove(path);
}

TEST_CASE("every mixer: a mixer + masked mean + linear head overfits one padded batch", "[mixers]") {
  const Tensor lengths = testing::mixer_test_lengths();
  for (const std::string& name : nn::mixer_names()) {
    INFO("mixer " << name);
    manual_seed(505);
    testing::MixerProbe probe(name, kMixerTestBatch);
    const Tensor x = randn(kShape);
    const Tensor labels = from_vector<int64_t>({0, 1, 2}, {kMixerTestBatch});
    nn::AdamW opt(probe.parameters(), AdamWHyper{1e-2, 0.9, 0.999, 1e-8, 0.0});
    double loss = 1e9, first = 0;
    int steps = 0;
    for (; steps < 400 && loss >= 0.05; ++steps) {
      opt.zero_grad();
      Tensor l = cross_entropy(probe.forward(x, lengths), labels);
      l.backward();
      opt.step();
      loss = l.item();
      if (steps == 0) first = loss;
    }
    INFO("loss " << first << " -> " << loss << " after " << steps << " steps");
    REQUIRE(loss < 0.05);
    REQUIRE(autograd::tape_size() == 0);
  }
}

TEST_CASE("every mixer in a tiny ViT: every parameter gets a gradient, one batch is overfitted", "[mixers][vit]") {
  for (const std::string& name : nn::mixer_names())
    for (const std::string pool : {"token", "avg"}) {
      INFO("mixer " << name << ", pool " << pool);
      manual_seed(506);
      models::VisionTransformer m(testing::tiny_vit_with(name, pool));
      testing::require_overfits_one_batch(m, kCPU);
    }
}

TEST_CASE("every mixer in a tiny ViT: checkpoints round-trip bit-exactly with every option in the metadata",
          "[mixers][vit]") {
  for (const std::string& name : nn::mixer_names()) {
    INFO("mixer " << name);
    manual_seed(507);
    models::ViTConfig c = testing::tiny_vit_with(name, "avg");
    c.qkv_bias = false;
    c.drop_rate = 0.1;
    models::VisionTransformer a(c);
    testing::train_a_few_steps(a, randn({4, 3, 8, 8}));
    const testing::ReloadedCheckpoint ck = testing::checkpoint_round_trip(a, c, "mixgrad_test_mixers_vit", 999);
    CHECK(ck.meta.at("arch") == "vit");
    CHECK(ck.meta.at("mixer") == name);
    for (const auto& [k, v] : nn::resolve_mixer_options(name, {}).values()) {
      INFO("option " << k);
      CHECK(ck.meta.at(k) == v);
    }
    CHECK(ck.loaded.size() == a.state_dict().size());
    a.eval();
    ck.model->eval();
    NoGradGuard ng;
    const Tensor x = randn({3, 3, 8, 8});
    REQUIRE_CLOSE(testing::bit_equal(ck.model->forward(x), a.forward(x)));
    for (const auto& [n, t] : a.state_dict()) {
      INFO(n);
      REQUIRE_CLOSE(testing::bit_equal(testing::find_param(*ck.model, n), t));
    }
  }
}

TEST_CASE("mixer options: declared, checked and resolved; --mixer-opt parsing", "[mixers]") {
  std::vector<std::string> seen;
  for (const nn::MixerInfo& info : nn::mixer_registry()) {
    INFO("mixer " << info.name);
    CHECK(std::find(seen.begin(), seen.end(), info.name) == seen.end());
    seen.push_back(info.name);
    CHECK(!info.summary.empty());
    // Every default passes its own declaration; every option appears in the resolved set.
    const nn::MixerOptions o = nn::resolve_mixer_options(info.name, {});
    CHECK(o.mixer() == info.name);
    CHECK(o.values().size() == info.options.size());
    for (const nn::MixerOptionSpec& s : info.options) CHECK(!s.help.empty());
  }
  const nn::MixerOptions csp = nn::resolve_mixer_options("csp", {{"csp_k", "4"}});
  CHECK(csp.integer("csp_k") == 4);
  CHECK(csp.text("csp_schedule") == "constant");
  CHECK(nn::resolve_mixer_options("csp", {}, {{"csp_schedule", "exponential"}}).text("csp_schedule") == "exponential");
  CHECK(nn::resolve_mixer_options("csp", {{"csp_schedule", "constant"}}, {{"csp_schedule", "exponential"}})
            .text("csp_schedule") == "constant");
  // App defaults for another mixer's options are ignored (one defaults map serves every mixer).
  CHECK(nn::resolve_mixer_options("softmax", {}, {{"csp_schedule", "exponential"}}).values().empty());
  CHECK_THROWS_WITH(nn::resolve_mixer_options("csp", {{"csp_k", "3"}}),
                    Contains("csp_k = \"3\"") && Contains("one of 2, 4, 8"));
  CHECK_THROWS_WITH(nn::resolve_mixer_options("csp", {{"csp_kk", "2"}}),
                    Contains("unknown option \"csp_kk\"") && Contains("csp_k"));
  CHECK_THROWS_WITH(nn::resolve_mixer_options("softmax", {{"csp_k", "2"}}), Contains("belongs to mixer csp"));
  CHECK_THROWS_WITH(nn::resolve_mixer_options("nope", {}), Contains("unknown token mixer \"nope\""));
  std::map<std::string, std::string> given;
  nn::parse_mixer_option("csp_k=8", given);
  nn::parse_mixer_option("csp_schedule=exponential", given);
  CHECK(given == std::map<std::string, std::string>{{"csp_k", "8"}, {"csp_schedule", "exponential"}});
  CHECK_THROWS_WITH(nn::parse_mixer_option("csp_k", given), Contains("expected key=value"));
  CHECK_THROWS_WITH(nn::parse_mixer_option("=2", given), Contains("expected key=value"));
  CHECK_THROWS_WITH(nn::parse_mixer_option("csp_k=2", given), Contains("csp_k is given twice"));
  nn::MixerContext ctx = testing::mixer_test_context("csp");
  CHECK_THROWS_WITH(nn::make_mixer("softmax", ctx), Contains("options resolved for mixer csp"));
}
