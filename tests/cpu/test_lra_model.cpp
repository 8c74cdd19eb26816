// The LRA Transformer encoder and dual encoder (models/lra_transformer.h): parameter names and counts, sinusoidal
// positions, pixel embeddings, padding invariance of every mixer's logits, the dual head, config metadata, finite
// differences through the whole model, and overfitting one batch.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "models/lra_transformer.h"
#include "nn/mixer.h"
#include "nn/optim/optimizer.h"
#include "tests/common/check.h"
#include "tests/common/vit_helpers.h"

using namespace mixgrad;
using Catch::Contains;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

models::LraConfig tiny(const std::string& mixer, const std::string& pool, const std::string& input = "tokens") {
  models::LraConfig c;
  c.task = "listops";
  c.input = input;
  c.vocab_size = 7;
  c.max_len = 16;
  c.embed_dim = 8, c.depth = 2, c.num_heads = 2, c.qkv_dim = 6, c.mlp_dim = 12;
  c.pool = pool;
  c.pos = pool == "cls" ? "sinusoidal" : "learned";
  c.dropout = 0.1, c.attn_dropout = 0.1;
  c.mixer = mixer;
  c.num_classes = 3;
  if (input == "pixels") c.grid_h = c.grid_w = 4;  // as the app sets it: grid-aware mixers read it
  return c;
}

// A mixer that needs a token grid (nn::MixerInfo::needs_grid) only takes pixel inputs: token variants are skipped.
bool needs_grid(const std::string& mixer) { return nn::mixer_info(mixer).needs_grid; }

Tensor ids(const std::vector<int64_t>& v, int64_t b, int64_t l) { return from_vector(v, {b, l}); }
Tensor lens(const std::vector<int32_t>& v) { return from_vector(v, {int64_t(v.size())}); }

// Row-major [b, l] of token ids 1..6 from a simple pattern, padded with 0 past each length.
std::vector<int64_t> pattern(int64_t b, int64_t l, const std::vector<int32_t>& lengths, int64_t salt) {
  std::vector<int64_t> v(size_t(b * l), 0);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < lengths[size_t(i)]; ++j) v[size_t(i * l + j)] = 1 + (i * 5 + j * 3 + salt) % 6;
  return v;
}

}  // namespace

TEST_CASE("lra transformer: parameter names, shapes and the count by formula", "[lra][model]") {
  for (const std::string pool : {"cls", "mean"}) {
    INFO("pool " << pool);
    const models::LraConfig c = tiny("softmax", pool);
    models::LraTransformer m(c);
    const int64_t d = 8, i = 6, mlp = 12, v = 7, k = 3, depth = 2;
    // No qkv bias (LRA's); the output projection has one.
    const int64_t block = 2 * 2 * d + d * 3 * i + (i * d + d) + (d * mlp + mlp) + (mlp * d + d);
    int64_t want = v * d + depth * block + 2 * d + (d * mlp + mlp) + (mlp * k + k);
    if (pool == "cls") want += d;                 // class token (positions are sinusoidal: no parameter)
    if (pool == "mean") want += c.seq_len() * d;  // learned positions
    CHECK(m.num_parameters() == want);
    std::vector<std::string> names;
    for (const auto& [n, t] : m.named_parameters()) names.push_back(n);
    CHECK(std::find(names.begin(), names.end(), "embed.weight") != names.end());
    CHECK(std::find(names.begin(), names.end(), "blocks.1.attn.qkv.weight") != names.end());
    CHECK(std::find(names.begin(), names.end(), "head.2.weight") != names.end());
    CHECK((std::find(names.begin(), names.end(), "cls_token") != names.end()) == (pool == "cls"));
    CHECK((std::find(names.begin(), names.end(), "pos_embed") != names.end()) == (pool == "mean"));
  }
  models::LraConfig dual = tiny("softmax", "cls");
  dual.dual = "nli";
  models::LraTransformer m(dual);
  CHECK(testing::find_param(m, "head.0.weight").shape() == Shape({12, 4 * 8}));  // [u, v, u*v, u-v]
  CHECK(testing::find_param(m, "head.2.weight").shape() == Shape({6, 12}));      // mlp -> mlp/2
  CHECK(testing::find_param(m, "head.4.weight").shape() == Shape({3, 6}));
}

TEST_CASE("lra transformer: sinusoidal positions interleave sin and cos of p·10000^(-2i/d)", "[lra][model]") {
  const Tensor t = models::sinusoidal_positions(5, 6);
  const std::vector<float> v = t.to_vector<float>();
  for (int64_t p = 0; p < 5; ++p)
    for (int64_t i = 0; i < 3; ++i) {
      const double w = std::pow(10000.0, -2.0 * double(i) / 6.0);
      CHECK(v[size_t(p * 6 + 2 * i)] == Approx(std::sin(double(p) * w)).margin(1e-6));
      CHECK(v[size_t(p * 6 + 2 * i + 1)] == Approx(std::cos(double(p) * w)).margin(1e-6));
    }
  CHECK_THROWS_WITH(models::sinusoidal_positions(3, 5), Contains("even d"));
}

TEST_CASE("lra transformer: a sample's logits do not change when the batch around it is padded longer",
          "[lra][model]") {
  for (const std::string& mixer : nn::mixer_names())
    for (const std::string pool : {"cls", "mean"})
      for (const std::string input : {"tokens", "pixels"}) {
        INFO("mixer " << mixer << ", pool " << pool << ", input " << input);
        if (input == "tokens" && needs_grid(mixer)) {
          WARN("mixer " << mixer << " needs a token grid: token input (no grid) skipped, pixel input tested");
          continue;
        }
        manual_seed(800);
        models::LraTransformer m(tiny(mixer, pool, input));
        m.to(DType::f64);
        m.eval();
        NoGradGuard ng;
        const DType dt = input == "tokens" ? DType::i64 : DType::f64;
        // Sample 0 (5 tokens) alone, then beside a 13-token sample, then in a batch padded to 16.
        const Tensor alone = m.forward(ids(pattern(1, 5, {5}, 0), 1, 5).to(dt), lens({5}));
        const Tensor beside = m.forward(ids(pattern(2, 13, {5, 13}, 0), 2, 13).to(dt), lens({5, 13}));
        const Tensor padded = m.forward(ids(pattern(3, 16, {5, 13, 2}, 0), 3, 16).to(dt), lens({5, 13, 2}));
        const Tensor want = alone.reshape({3});
        REQUIRE_CLOSE(testing::all_close(narrow(beside, 0, 0, 1).reshape({3}), want, tolerance(Compare::forward_f64)));
        REQUIRE_CLOSE(testing::all_close(narrow(padded, 0, 0, 1).reshape({3}), want, tolerance(Compare::forward_f64)));
        REQUIRE_CLOSE(
            testing::all_close(narrow(padded, 0, 1, 1), narrow(beside, 0, 1, 1), tolerance(Compare::forward_f64)));
      }
}

TEST_CASE("lra transformer: pixel embedding is x·w + b of the normalised intensity", "[lra][model]") {
  manual_seed(801);
  models::LraConfig c = tiny("softmax", "mean", "pixels");
  c.depth = 1;
  c.pixel_mean = 0.48, c.pixel_std = 0.24;
  c.pos = "none";
  models::LraTransformer m(c);
  m.to(DType::f64);
  m.eval();
  NoGradGuard ng;
  // With the blocks' output projections zeroed, every block is the identity and encode() is LayerNorm(x·w + b).
  for (const std::string n :
       {"blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias", "blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias"})
    testing::find_param(m, n).fill_(0.0);
  const std::vector<double> px = {200.0, 13.0};
  const Tensor got = m.encode(from_vector<double>(px, {2, 1}), lens({1, 1}));
  const std::vector<double> w = testing::host_values(testing::find_param(m, "pixel_embed.weight")),
                            b = testing::host_values(testing::find_param(m, "pixel_embed.bias"));
  std::vector<double> e;
  for (double v : px)
    for (size_t k = 0; k < 8; ++k) e.push_back((v / 255.0 - 0.48) / 0.24 * w[k] + b[k]);
  const Tensor want = layer_norm(from_vector<double>(e, {2, 8}), {8}, testing::find_param(m, "norm.weight"),
                                 testing::find_param(m, "norm.bias"), c.ln_eps);
  REQUIRE_CLOSE(testing::all_close(got, want, tolerance(Compare::forward_f64)));
}

TEST_CASE("lra transformer: the dual encoder's head reads [u, v, u*v, u-v] of one shared encoder", "[lra][model]") {
  for (const std::string dual : {"nli", "concat"}) {
    INFO("dual " << dual);
    manual_seed(802);
    models::LraConfig c = tiny("softmax", "cls");
    c.dual = dual;
    models::LraTransformer m(c);
    m.to(DType::f64);
    m.eval();
    NoGradGuard ng;
    const Tensor a = ids(pattern(2, 7, {7, 3}, 0), 2, 7), b = ids(pattern(2, 9, {4, 9}, 1), 2, 9);
    const Tensor u = m.encode(a, lens({7, 3})), v = m.encode(b, lens({4, 9}));
    const Tensor feats = dual == "nli" ? cat({u, v, mul(u, v), sub(u, v)}, 1) : cat({u, v}, 1);
    Tensor h = feats;
    for (const std::string l : {"head.0", "head.2", "head.4"}) {
      h = linear(h, testing::find_param(m, l + ".weight"), testing::find_param(m, l + ".bias"));
      if (l != "head.4") h = relu(h);
    }
    REQUIRE_CLOSE(testing::all_close(m.forward(a, lens({7, 3}), b, lens({4, 9})), h, tolerance(Compare::forward_f64)));
    CHECK_THROWS_WITH(m.forward(a, lens({7, 3})), Contains("needs two documents"));
  }
}

TEST_CASE("lra transformer: config metadata round trip, validation and input errors", "[lra][model]") {
  models::LraConfig c = tiny("csp", "cls");
  c.mixer_options = {{"csp_k", "4"}};
  const auto meta = c.to_metadata();
  CHECK(meta.at("arch") == "lra-transformer");
  CHECK(meta.at("csp_k") == "4");
  CHECK(meta.at("csp_schedule") == "constant");
  const models::LraConfig r = models::LraConfig::from_metadata(meta);
  CHECK(r.to_metadata() == meta);
  CHECK(r.seq_len() == 17);
  auto bad = meta;
  bad["depth"] = "two";
  CHECK_THROWS_WITH(models::LraConfig::from_metadata(bad), Contains("LraConfig::from_metadata: key \"depth\""));
  bad = meta;
  bad.erase("pool");
  CHECK_THROWS_WITH(models::LraConfig::from_metadata(bad), Contains("missing key \"pool\""));
  auto invalid = [&](auto edit) {
    models::LraConfig x = tiny("softmax", "cls");
    edit(x);
    return x;
  };
  CHECK_THROWS_WITH(invalid([](auto& x) { x.num_heads = 4; }).validate(), Contains("divide the qkv width (6)"));
  CHECK_THROWS_WITH(invalid([](auto& x) { x.pool = "max"; }).validate(), Contains("pool must be cls or mean"));
  CHECK_THROWS_WITH(invalid([](auto& x) { x.dual = "sum"; }).validate(), Contains("dual must be"));
  CHECK_THROWS_WITH(invalid([](auto& x) { x.input = "bytes"; }).validate(), Contains("input must be tokens or pixels"));
  CHECK_THROWS_WITH(invalid([](auto& x) { x.grid_h = 3, x.grid_w = 3; }).validate(), Contains("grid 3x3"));
  CHECK_THROWS_WITH(invalid([](auto& x) {
                      x.mixer_options = {{"csp_k", "2"}};
                    }).validate(),
                    Contains("belongs to mixer csp"));
  models::LraTransformer m(tiny("softmax", "cls"));
  CHECK_THROWS_WITH(m.forward(ids(pattern(1, 17, {17}, 0), 1, 17), lens({17})), Contains("max_len = 16"));
  CHECK_THROWS_WITH(m.forward(ids(pattern(1, 4, {4}, 0), 1, 4), lens({5})), Contains("lengths[0] = 5"));
  CHECK_THROWS_WITH(m.forward(ids(pattern(1, 4, {4}, 0), 1, 4), lens({0})), Contains("lengths[0] = 0"));
  CHECK_THROWS_WITH(m.forward(ids(pattern(1, 4, {4}, 0), 1, 4).to(DType::f32), lens({4})), Contains("int64"));
}

TEST_CASE("lra transformer: gradients of every parameter match finite differences (float64)", "[lra][model]") {
  for (const std::string pool : {"cls", "mean"}) {
    INFO("pool " << pool);
    manual_seed(803);
    models::LraConfig c = tiny("softmax", pool);
    c.depth = 1, c.embed_dim = 4, c.qkv_dim = 4, c.mlp_dim = 4, c.max_len = 6;
    c.dual = pool == "cls" ? "nli" : "none";
    models::LraTransformer m(c);
    m.to(DType::f64);
    m.eval();
    const Tensor a = ids(pattern(2, 5, {5, 3}, 0), 2, 5), b = ids(pattern(2, 4, {2, 4}, 2), 2, 4);
    std::vector<Tensor> inputs;
    for (Tensor p : m.parameters()) inputs.push_back(p);
    REQUIRE_CLOSE(testing::gradcheck(
        [&](const std::vector<Tensor>&) {
          return c.dual == "none" ? m.forward(a, lens({5, 3})) : m.forward(a, lens({5, 3}), b, lens({2, 4}));
        },
        inputs));
  }
}

TEST_CASE("lra transformer: every mixer's tiny model overfits one padded batch", "[lra][model]") {
  for (const std::string& mixer : nn::mixer_names()) {
    INFO("mixer " << mixer);
    manual_seed(804);
    // A grid mixer gets the same batch as pixel intensities on a 4×4 grid (it cannot take token input).
    const bool pixels = needs_grid(mixer);
    models::LraConfig c = tiny(mixer, "cls", pixels ? "pixels" : "tokens");
    c.dropout = c.attn_dropout = 0;
    models::LraTransformer m(c);
    const std::vector<int32_t> l = {16, 9, 4, 11};
    const Tensor ids_x = ids(pattern(4, 16, l, 0), 4, 16), labels = from_vector<int64_t>({0, 1, 2, 1}, {4});
    const Tensor x = pixels ? mul_scalar(ids_x.to(DType::f32), 40.0) : ids_x;
    nn::AdamW opt(m.parameters(), AdamWHyper{1e-2, 0.9, 0.999, 1e-8, 0.0});
    double loss = 1e9;
    int steps = 0;
    for (; steps < 300 && loss >= 0.05; ++steps) {
      opt.zero_grad();
      Tensor lo = cross_entropy(m.forward(x, lens(l)), labels);
      lo.backward();
      if (steps == 0)
        for (const auto& [n, p] : m.named_parameters()) {
          INFO("parameter " << n);
          REQUIRE(p.grad().defined());
        }
      opt.step();
      loss = lo.item();
    }
    INFO("loss " << loss << " after " << steps << " steps");
    REQUIRE(loss < 0.05);
  }
}
