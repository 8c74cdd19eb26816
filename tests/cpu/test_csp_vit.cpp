// The CSP token mixer and CSP-ViT on the CPU (specs/csp.md §9, §11 items 11–12): parameter counts of the paper
// presets, checkpoint names, the mixer against a hand computation (Linear -> brute-force permutation -> Linear),
// padding, option errors, every preset and `vit info`. What every mixer must do (gradients, padding, overfitting,
// checkpoints): tests/cpu/test_mixers.cpp.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "apps/vit/vit_app.h"
#include "engine/mixgrad.h"
#include "models/vit.h"
#include "nn/init.h"
#include "nn/mixer.h"
#include "nn/mixers/csp_mixer.h"
#include "nn/optim/optimizer.h"
#include "nn/serialize.h"
#include "nn/transformer.h"
#include "tests/common/check.h"
#include "tests/common/vit_helpers.h"

using namespace mixgrad;
using Catch::Contains;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

using testing::find_param;
using testing::host_values;

// Block `layer` of `layers` with the given options (checked and completed by resolve_mixer_options).
nn::MixerContext csp_ctx(int64_t dim, int64_t seq, const std::map<std::string, std::string>& options = {},
                         int64_t layer = 0, int64_t layers = 1) {
  nn::MixerContext c;
  c.dim = dim;
  c.num_heads = 2;
  c.seq_len = seq;
  c.layer_index = layer;
  c.num_layers = layers;
  c.options = nn::resolve_mixer_options("csp", options);
  return c;
}

Tensor lengths_of(const std::vector<int32_t>& n) { return from_vector<int32_t>(n, {int64_t(n.size())}); }

// y[r, o] = b[o] + Σ_i x[r, i]·w[o, i] over rows r of a [rows, in] matrix.
std::vector<double> linear_ref(const std::vector<double>& x, const std::vector<double>& w,
                               const std::vector<double>* bias, int64_t rows, int64_t in, int64_t out) {
  std::vector<double> y(size_t(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = bias ? (*bias)[size_t(o)] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += x[size_t(r * in + i)] * w[size_t(o * in + i)];
      y[size_t(r * out + o)] = s;
    }
  return y;
}

// Brute-force CSP of spec §11.1 (no NaN in these inputs): per (b, c) rotate the valid prefix by shifts[c] mod n_b,
// sort each K-group (a partial last group among its members) by (value, shifted position), zero the padded rows.
std::vector<double> csp_ref(const std::vector<double>& v, const std::vector<int32_t>& shifts, int k,
                            const std::vector<int64_t>& lengths, int64_t B, int64_t N, int64_t D) {
  std::vector<double> y(v.size(), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < D; ++c) {
      const int64_t n = lengths[size_t(b)], s = shifts[size_t(c)] % n;
      std::vector<int64_t> src(static_cast<size_t>(n)), pi(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) src[size_t(j)] = ((j - s) % n + n) % n;
      for (int64_t g = 0; g < n; g += k) {
        std::vector<std::pair<double, int64_t>> members;
        for (int64_t j = g; j < std::min<int64_t>(g + k, n); ++j)
          members.push_back({v[size_t((b * N + src[size_t(j)]) * D + c)], j});
        std::sort(members.begin(), members.end());
        for (size_t m = 0; m < members.size(); ++m) pi[size_t(g) + m] = src[size_t(members[m].second)];
      }
      std::vector<int64_t> seen(pi);
      std::sort(seen.begin(), seen.end());
      for (int64_t j = 0; j < n; ++j) REQUIRE(seen[size_t(j)] == j);  // π is a bijection of [0, n)
      for (int64_t j = 0; j < n; ++j) y[size_t((b * N + j) * D + c)] = v[size_t((b * N + pi[size_t(j)]) * D + c)];
    }
  return y;
}

// The mixer by hand from its own weights: v Linear -> csp_ref -> proj Linear.
std::vector<double> mixer_ref(const nn::CspMixer& m, const Tensor& x, const std::vector<int64_t>& lengths) {
  const int64_t B = x.size(0), N = x.size(1), D = m.dim;
  const std::vector<double> wp = host_values(m.proj->weight), bp = host_values(m.proj->bias);
  const std::vector<double> v = linear_ref(host_values(x), host_values(m.v->weight), nullptr, B * N, D, D);
  return linear_ref(csp_ref(v, m.shifts, m.k, lengths, B, N, D), wp, &bp, B * N, D, D);
}

std::shared_ptr<nn::Module> child(const nn::Module& m, const std::string& name) {
  for (const auto& [n, c] : m.named_children())
    if (n == name) return c;
  return nullptr;
}

// blocks.{i}.attn of a ViT, or null.
const nn::CspMixer* find_csp_mixer(const nn::Module& vit, int i) {
  auto blocks = child(vit, "blocks");
  auto block = blocks ? child(*blocks, std::to_string(i)) : nullptr;
  auto attn = block ? child(*block, "attn") : nullptr;
  return dynamic_cast<const nn::CspMixer*>(attn.get());
}

models::ViTConfig preset_csp(const std::string& name) {
  models::ViTConfig c = models::vit_preset(name);
  c.mixer = "csp";
  return c;
}

}  // namespace

TEST_CASE("CSP-ViT parameter counts match specs/csp.md §9.3", "[csp-vit]") {
  struct Expect {
    std::string preset, mixer;
    int64_t params;
  };
  for (const Expect& e : std::vector<Expect>{{"cifar10-paper", "softmax", 9523722},
                                             {"cifar10-paper", "csp", 6377994},
                                             {"cifar100-paper", "softmax", 9649764},
                                             {"cifar100-paper", "csp", 6504036}}) {
    INFO(e.preset << " with mixer " << e.mixer);
    models::ViTConfig c = models::vit_preset(e.preset);
    c.mixer = e.mixer;
    models::VisionTransformer m(c);
    CHECK(m.num_parameters() == e.params);
  }
}

TEST_CASE("CSP-ViT checkpoint keys and shapes (specs/vit.md §2)", "[csp-vit]") {
  models::VisionTransformer m(preset_csp("cifar10-paper"));
  std::vector<std::string> attn_keys;
  for (const auto& [n, t] : m.state_dict())
    if (n.find(".attn.") != std::string::npos) attn_keys.push_back(n);
  std::vector<std::string> want;
  for (int i = 0; i < 6; ++i)
    for (const char* s : {"v.weight", "proj.weight", "proj.bias"}) want.push_back(fmt::format("blocks.{}.attn.{}", i, s));
  CHECK(attn_keys == want);  // no qkv, no v.bias, no shift tensor
  for (int i = 0; i < 6; ++i) {
    CHECK(find_param(m, fmt::format("blocks.{}.attn.v.weight", i)).shape() == Shape({512, 512}));
    CHECK(find_param(m, fmt::format("blocks.{}.attn.proj.weight", i)).shape() == Shape({512, 512}));
    CHECK(find_param(m, fmt::format("blocks.{}.attn.proj.bias", i)).shape() == Shape({512}));
  }
  CHECK(find_param(m, "pos_embed").shape() == Shape({1, 65, 512}));
  CHECK(find_param(m, "cls_token").shape() == Shape({1, 1, 512}));
  CHECK(find_param(m, "fc_norm.weight").shape() == Shape({512}));
  CHECK(find_param(m, "head.weight").shape() == Shape({10, 512}));
  // The mixer of the paper preset: K = 2, constant schedule over N = 64 tokens, 32 distinct shifts.
  const nn::CspMixer* mixer = find_csp_mixer(m, 0);
  REQUIRE(mixer != nullptr);
  CHECK(mixer->k == 2);
  CHECK(mixer->schedule == "constant");
  CHECK(mixer->seq_len == 64);
  CHECK(mixer->shifts == csp_shifts_constant(512, 64, 2));
}

TEST_CASE("csp mixer equals Linear -> brute-force permutation -> Linear", "[csp-vit]") {
  struct Case {
    int64_t B, N, D;
    std::map<std::string, std::string> options;
    std::vector<int64_t> lengths;  // empty: no padding
    int64_t layer = 0, layers = 1;
  };
  const std::vector<Case> cases = {
      {2, 8, 6, {}, {}},
      {2, 8, 5, {{"csp_k", "4"}}, {}},
      {1, 16, 7, {{"csp_k", "8"}}, {}},
      {2, 12, 9, {{"csp_schedule", "exponential"}}, {}, 1, 3},
      {3, 8, 6, {}, {8, 5, 1}},
      {2, 12, 5, {{"csp_k", "4"}, {"csp_schedule", "exponential"}}, {7, 12}, 2, 3},
  };
  for (const Case& c : cases) {
    INFO("B " << c.B << " N " << c.N << " D " << c.D << " options " << c.options.size() << " masked "
              << !c.lengths.empty());
    manual_seed(70);
    nn::CspMixer m(csp_ctx(c.D, c.N, c.options, c.layer, c.layers));
    m.to(DType::f64);
    nn::init::uniform_(m.proj->bias, -0.5, 0.5);
    m.eval();
    Tensor x = randn({c.B, c.N, c.D}, TensorOptions(DType::f64));
    std::vector<int64_t> lengths = c.lengths.empty() ? std::vector<int64_t>(size_t(c.B), c.N) : c.lengths;
    Tensor len;
    if (!c.lengths.empty()) len = lengths_of(std::vector<int32_t>(lengths.begin(), lengths.end()));
    Tensor y = m.forward(x, len);
    Tensor want = from_vector<double>(mixer_ref(m, x, lengths), {c.B, c.N, c.D});
    REQUIRE_CLOSE(testing::all_close(y, want, tolerance(Compare::forward_f64)));
  }
}

TEST_CASE("csp mixer: padding equals the truncated sequence; padded outputs are proj(0)", "[csp-vit]") {
  manual_seed(71);
  nn::CspMixer m(csp_ctx(6, 8));
  m.to(DType::f64);
  Tensor x = randn({1, 8, 6}, TensorOptions(DType::f64));
  const Tensor four = lengths_of({4});
  Tensor full = m.forward(x, four);
  REQUIRE_CLOSE(testing::all_close(narrow(full, 1, 0, 4), m.forward(narrow(x, 1, 0, 4)),
                                   tolerance(Compare::forward_f64)));
  // NaN and infinities in the padded rows change nothing (csp.md §6.2); padded outputs are proj(0) = proj.bias.
  Tensor x2 = x.clone();
  for (int64_t i = 4 * 6; i < 8 * 6; ++i)
    x2.data<double>()[i] = i % 3 == 0 ? std::nan("") : (i % 3 == 1 ? 1.0 : -1.0) * HUGE_VAL;
  REQUIRE_CLOSE(testing::bit_equal(m.forward(x2, four), full));
  REQUIRE_CLOSE(testing::all_close(narrow(full, 1, 4, 4).reshape({4, 6}), expand(m.proj->bias.reshape({1, 6}), {4, 6}),
                                   tolerance(Compare::forward_f64)));
  // Full lengths are the unpadded forward.
  REQUIRE_CLOSE(testing::bit_equal(m.forward(x, lengths_of({8})), m.forward(x)));
  // Errors: a length of 0 or past N, wrong shape or dtype, wrong width, N not a multiple of K.
  CHECK_THROWS_WITH(m.forward(x, lengths_of({0})), Contains("lengths[0] = 0") && Contains("[1, N] = [1, 8]"));
  CHECK_THROWS_WITH(m.forward(x, lengths_of({9})), Contains("lengths[0] = 9"));
  CHECK_THROWS_WITH(m.forward(x, lengths_of({4, 4})), Contains("lengths has shape [2]"));
  CHECK_THROWS_WITH(m.forward(x, from_vector<float>({4.f}, {1})), Contains("lengths has dtype"));
  CHECK_THROWS_WITH(m.forward(randn({1, 8, 5}, TensorOptions(DType::f64))), Contains("[B, N, 6]"));
  CHECK_THROWS_WITH(m.forward(randn({1, 7, 6}, TensorOptions(DType::f64))), Contains("N = 7") && Contains("K = 2"));
}

TEST_CASE("csp mixer options and errors", "[csp-vit]") {
  const auto names = nn::mixer_names();
  REQUIRE(std::find(names.begin(), names.end(), "csp") != names.end());
  CHECK(dynamic_cast<nn::CspMixer*>(nn::make_mixer("csp", csp_ctx(8, 8)).get()) != nullptr);
  nn::CspMixer def(csp_ctx(8, 16));
  CHECK(def.k == 2);
  CHECK(def.schedule == "constant");
  CHECK(def.shifts == std::vector<int32_t>{0, 0, 2, 4, 6, 8, 10, 12});
  nn::CspMixer expo(csp_ctx(8, 16, {{"csp_schedule", "exponential"}}, 1, 2));
  CHECK(expo.shifts == csp_shifts_exponential(1, 2, 8, 16));
  nn::MixerContext bad_layer = csp_ctx(8, 16, {{"csp_schedule", "exponential"}}, 2, 2);
  CHECK_THROWS_WITH(nn::CspMixer(bad_layer), Contains("layer_index = 2"));
  nn::MixerContext causal = csp_ctx(8, 16);
  causal.causal = true;
  CHECK_THROWS_WITH(nn::CspMixer(causal), Contains("causal"));
  nn::CspMixer k4(csp_ctx(8, 10, {{"csp_k", "4"}}));  // N_s = 10 is only the schedule length: sequences pad to K
  CHECK(k4.sequence_multiple() == 4);
  CHECK_THROWS_WITH(k4.forward(randn({1, 10, 8})), Contains("N = 10") && Contains("K = 4"));
}

TEST_CASE("every ViT preset builds and runs with mixer csp; K that does not divide N is a clear error",
          "[csp-vit]") {
  for (const std::string& preset : models::vit_preset_names()) {
    INFO("preset " << preset);
    manual_seed(73);
    models::ViTConfig c = preset_csp(preset);
    models::VisionTransformer m(c);
    m.eval();
    NoGradGuard ng;
    const int64_t b = preset == "cifar100-paper" ? 1 : 2;
    Tensor y = m.forward(randn({b, c.in_chans, c.img_size, c.img_size}));
    CHECK(y.shape() == Shape({b, c.num_classes}));
    for (double v : host_values(y)) REQUIRE(std::isfinite(v));
  }
  // fmnist presets: 49 patches + class token = 50 tokens: K = 2 works, K = 4 and 8 are rejected at construction.
  for (const char* k : {"4", "8"}) {
    models::ViTConfig c = preset_csp("fmnist-tiny");
    c.mixer_options["csp_k"] = k;
    CHECK_THROWS_WITH(models::VisionTransformer(c), Contains("N = 50") && Contains(fmt::format("K = {}", k)));
  }
  // CIFAR-10 paper preset: N = 64 works for every K.
  for (const char* k : {"4", "8"}) {
    models::ViTConfig c = preset_csp("cifar10-paper");
    c.depth = 1;
    c.mixer_options["csp_k"] = k;
    models::VisionTransformer m(c);
    NoGradGuard ng;
    CHECK(m.forward(randn({1, 3, 32, 32})).shape() == Shape({1, 10}));
  }
}

TEST_CASE("vit info with mixer csp reports the paper's parameter count", "[csp-vit]") {
  const std::string info = app::model_info("cifar10-paper", "csp");
  REQUIRE_THAT(info, Contains("total parameters: 6377994"));
  REQUIRE_THAT(info, Contains("blocks.5.attn.v.weight") && Contains("[512, 512]") && Contains("blocks.0.attn.proj.bias"));
  REQUIRE_THAT(info, !Contains("attn.qkv"));
  REQUIRE_THAT(app::model_info("cifar100-paper", "csp"), Contains("total parameters: 6504036"));
}
