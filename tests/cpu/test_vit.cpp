// The ViT side of the model stack on the CPU: the softmax attention mixer (head split/merge, padding, gradients), the
// mixer registry, patchify / patch embedding against loops, presets (parameter counts, keys, shapes, init), config
// metadata and shape errors. Overfitting and checkpoint round trips of every mixer's ViT: tests/cpu/test_mixers.cpp.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "models/vit.h"
#include "nn/init.h"
#include "nn/mixer.h"
#include "nn/mixers/softmax_attention.h"
#include "nn/optim/optimizer.h"
#include "nn/serialize.h"
#include "nn/transformer.h"
#include "tests/common/check.h"
#include "tests/common/vit_helpers.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

using testing::find_param;
using testing::host_values;

bool has_key(const nn::Module& m, const std::string& name) { return find_param(m, name).defined(); }

double std_of(const std::vector<double>& v) {
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= double(v.size());
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size()));
}

// Hand-written multi-head attention of specs/vit.md §1.4 from the mixer's own weights (float64 loops).
std::vector<double> reference_mixer(const nn::SoftmaxAttention& m, const Tensor& x_t,
                                    const std::vector<int>* pad = nullptr) {
  const int64_t b = x_t.size(0), n = x_t.size(1), d = m.dim, nh = m.num_heads, dh = m.head_dim;
  const std::vector<double> x = host_values(x_t), wq = host_values(m.qkv->weight),
                            wp = host_values(m.proj->weight), bp = host_values(m.proj->bias);
  const std::vector<double> bq =
      m.qkv->bias.defined() ? host_values(m.qkv->bias) : std::vector<double>(size_t(3 * d), 0.0);
  std::vector<double> qkv(size_t(b * n * 3 * d), 0.0);
  for (int64_t r = 0; r < b * n; ++r)
    for (int64_t o = 0; o < 3 * d; ++o) {
      double s = bq[size_t(o)];
      for (int64_t i = 0; i < d; ++i) s += x[size_t(r * d + i)] * wq[size_t(o * d + i)];
      qkv[size_t(r * 3 * d + o)] = s;
    }
  std::vector<double> merged(size_t(b * n * d), 0.0);
  for (int64_t bb = 0; bb < b; ++bb)
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t i = 0; i < n; ++i) {
        auto q = [&](int64_t e) { return qkv[size_t((bb * n + i) * 3 * d + h * dh + e)]; };
        auto k = [&](int64_t j, int64_t e) { return qkv[size_t((bb * n + j) * 3 * d + d + h * dh + e)]; };
        auto v = [&](int64_t j, int64_t e) { return qkv[size_t((bb * n + j) * 3 * d + 2 * d + h * dh + e)]; };
        std::vector<double> s(static_cast<size_t>(n), 0.0);
        double mx = -1e300, z = 0;
        for (int64_t j = 0; j < n; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < dh; ++e) dot += q(e) * k(j, e);
          s[size_t(j)] = dot / std::sqrt(double(dh));
          if (!pad || (*pad)[size_t(bb * n + j)]) mx = std::max(mx, s[size_t(j)]);
        }
        for (int64_t j = 0; j < n; ++j) {
          s[size_t(j)] = (!pad || (*pad)[size_t(bb * n + j)]) ? std::exp(s[size_t(j)] - mx) : 0.0;
          z += s[size_t(j)];
        }
        for (int64_t e = 0; e < dh; ++e) {
          double o = 0;
          for (int64_t j = 0; j < n; ++j) o += s[size_t(j)] / z * v(j, e);
          merged[size_t((bb * n + i) * d + h * dh + e)] = o;  // channel = h·Dh + e
        }
      }
  std::vector<double> out(size_t(b * n * d));
  for (int64_t r = 0; r < b * n; ++r)
    for (int64_t o = 0; o < d; ++o) {
      double s = bp[size_t(o)];
      for (int64_t i = 0; i < d; ++i) s += merged[size_t(r * d + i)] * wp[size_t(o * d + i)];
      out[size_t(r * d + o)] = s;
    }
  return out;
}

nn::MixerContext mixer_ctx(int64_t dim, int64_t heads, bool qkv_bias) {
  nn::MixerContext c;
  c.dim = dim;
  c.num_heads = heads;
  c.qkv_bias = qkv_bias;
  return c;
}

}  // namespace

TEST_CASE("softmax mixer splits and merges heads as specified", "[vit][mixer]") {
  manual_seed(21);
  for (bool bias : {true, false}) {
    nn::SoftmaxAttention m(mixer_ctx(12, 3, bias));
    m.to(DType::f64);
    // Non-zero biases so that their rows are checked too.
    if (bias) nn::init::uniform_(m.qkv->bias, -0.5, 0.5);
    nn::init::uniform_(m.proj->bias, -0.5, 0.5);
    CHECK(m.qkv->weight.shape() == Shape({36, 12}));
    CHECK(m.qkv->bias.defined() == bias);
    CHECK(m.head_dim == 4);
    Tensor x = randn({2, 5, 12}, TensorOptions(DType::f64));
    Tensor y = m.forward(x);
    CHECK(y.shape() == Shape({2, 5, 12}));
    REQUIRE_CLOSE(
        testing::all_close(y, from_vector(reference_mixer(m, x), {2, 5, 12}), tolerance(Compare::forward_f64)));
    // Key padding: padded keys are invisible to every query.
    const std::vector<int> pad = {1, 1, 1, 0, 0, /**/ 1, 1, 1, 1, 1};
    const Tensor lengths = from_vector<int32_t>({3, 5}, {2});
    REQUIRE_CLOSE(testing::all_close(m.forward(x, lengths), from_vector(reference_mixer(m, x, &pad), {2, 5, 12}),
                                     tolerance(Compare::forward_f64)));
  }
}

TEST_CASE("softmax mixer: trailing padding equals the truncated sequence", "[vit][mixer]") {
  manual_seed(22);
  nn::SoftmaxAttention m(mixer_ctx(8, 2, true));
  m.to(DType::f64);
  Tensor x = randn({1, 6, 8}, TensorOptions(DType::f64));
  Tensor full = m.forward(x, from_vector<int32_t>({4}, {1}));
  Tensor cut = m.forward(narrow(x, 1, 0, 4));
  REQUIRE_CLOSE(testing::all_close(narrow(full, 1, 0, 4), cut, tolerance(Compare::forward_f64)));
  CHECK_THROWS_WITH(m.forward(x, from_vector<int32_t>({4, 4}, {2})), Catch::Contains("lengths"));
  CHECK_THROWS_WITH(m.forward(x, from_vector<int32_t>({7}, {1})), Catch::Contains("lengths[0] = 7"));
  CHECK_THROWS_WITH(m.forward(randn({1, 6, 7}, TensorOptions(DType::f64))), Catch::Contains("[B, N, 8]"));
}

TEST_CASE("mixer registry and transformer block", "[vit][mixer]") {
  const auto names = nn::mixer_names();
  REQUIRE(std::find(names.begin(), names.end(), "softmax") != names.end());
  auto mixer = nn::make_mixer("softmax", mixer_ctx(8, 2, false));
  CHECK(dynamic_cast<nn::SoftmaxAttention*>(mixer.get()) != nullptr);
  CHECK_THROWS_WITH(nn::make_mixer("no-such-mixer", mixer_ctx(8, 2, false)),
                    Catch::Contains("no-such-mixer") && Catch::Contains("softmax"));
  CHECK_THROWS_WITH(nn::make_mixer("softmax", mixer_ctx(8, 3, false)), Catch::Contains("divide"));

  manual_seed(24);
  nn::TransformerBlock block("softmax", mixer_ctx(8, 2, true), 16, 0.0, 1e-6);
  std::vector<std::string> keys;
  for (const auto& [n, t] : block.named_parameters()) keys.push_back(n);
  CHECK(keys == std::vector<std::string>{"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                         "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                                         "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"});
  // Pre-norm residual structure, composed by hand.
  block.to(DType::f64);
  Tensor x = randn({2, 3, 8}, TensorOptions(DType::f64));
  Tensor h = add(x, block.attn->forward(block.norm1->forward(x)));
  Tensor want = add(h, block.mlp->fc2->forward(gelu(block.mlp->fc1->forward(block.norm2->forward(h)))));
  REQUIRE_CLOSE(testing::all_close(block.forward(x), want, tolerance(Compare::forward_f64)));
}

TEST_CASE("patchify matches a loop reference and its backward is the inverse scatter", "[vit]") {
  manual_seed(25);
  const int64_t b = 2, c = 3, h = 4, w = 6, p = 2, gw = w / p, n = (h / p) * gw;
  Tensor x = randn({b, c, h, w}, TensorOptions(DType::f64));
  Tensor got = models::patchify(x, p);
  REQUIRE(got.shape() == Shape({b, n, c * p * p}));
  const std::vector<double> xv = host_values(x), gv = host_values(got);
  for (int64_t bb = 0; bb < b; ++bb)
    for (int64_t gy = 0; gy < h / p; ++gy)
      for (int64_t gx = 0; gx < gw; ++gx)
        for (int64_t cc = 0; cc < c; ++cc)
          for (int64_t i = 0; i < p; ++i)
            for (int64_t j = 0; j < p; ++j) {
              const int64_t tok = gy * gw + gx, f = cc * p * p + i * p + j;
              REQUIRE(gv[size_t((bb * n + tok) * c * p * p + f)] ==
                      xv[size_t(((bb * c + cc) * h + gy * p + i) * w + gx * p + j)]);
            }
  Tensor xg = testing::rand_f64({1, 3, 4, 4});
  REQUIRE_CLOSE(testing::gradcheck([](const std::vector<Tensor>& in) { return models::patchify(in[0], 2); }, {xg}));
  CHECK_THROWS_WITH(models::patchify(x, 4), Catch::Contains("must divide"));
}

TEST_CASE("patch embedding equals Conv2d(kernel = stride = p) computed with loops", "[vit]") {
  manual_seed(26);
  const int64_t img = 8, p = 4, c = 3, d = 5, b = 2, g = img / p;
  models::PatchEmbed pe(img, p, c, d);
  pe.to(DType::f64);
  CHECK(pe.proj->weight.shape() == Shape({d, c, p, p}));
  CHECK(pe.proj->weight.reshape({d, c * p * p}).same_storage(pe.proj->weight));
  Tensor x = randn({b, c, img, img}, TensorOptions(DType::f64));
  Tensor y = pe.forward(x);
  REQUIRE(y.shape() == Shape({b, g * g, d}));
  const std::vector<double> xv = host_values(x), wv = host_values(pe.proj->weight), bv = host_values(pe.proj->bias);
  std::vector<double> want(size_t(b * g * g * d));
  for (int64_t bb = 0; bb < b; ++bb)
    for (int64_t oy = 0; oy < g; ++oy)
      for (int64_t ox = 0; ox < g; ++ox)
        for (int64_t o = 0; o < d; ++o) {
          double s = bv[size_t(o)];
          for (int64_t cc = 0; cc < c; ++cc)
            for (int64_t i = 0; i < p; ++i)
              for (int64_t j = 0; j < p; ++j)
                s += wv[size_t(((o * c + cc) * p + i) * p + j)] *
                     xv[size_t(((bb * c + cc) * img + oy * p + i) * img + ox * p + j)];
          want[size_t((bb * g * g + oy * g + ox) * d + o)] = s;  // Conv2d output flatten(2).transpose(1, 2)
        }
  REQUIRE_CLOSE(testing::all_close(y, from_vector(want, {b, g * g, d}), tolerance(Compare::forward_f64)));
  // The gradient lands on the 4-D parameter.
  sum(pe.forward(x)).backward();
  REQUIRE(pe.proj->weight.grad().defined());
  CHECK(pe.proj->weight.grad().shape() == Shape({d, c, p, p}));
}

TEST_CASE("ViT presets: parameter counts, keys, shapes and forward", "[vit]") {
  struct Expect {
    std::string name;
    int64_t params, c, img, classes, tokens;
  };
  const std::vector<Expect> presets = {{"fmnist-tiny", 139018, 1, 28, 10, 50},
                                       {"fmnist-small", 205962, 1, 28, 10, 50},
                                       {"cifar10-paper", 9523722, 3, 32, 10, 65},
                                       {"cifar100-paper", 9649764, 3, 32, 100, 257}};
  REQUIRE(models::vit_preset_names() ==
          std::vector<std::string>{"fmnist-tiny", "fmnist-small", "cifar10-paper", "cifar100-paper"});
  for (const Expect& e : presets) {
    INFO("preset " << e.name);
    manual_seed(27);
    const models::ViTConfig cfg = models::vit_preset(e.name);
    models::VisionTransformer m(cfg);
    CHECK(m.num_parameters() == e.params);
    const int64_t d = cfg.embed_dim, p = cfg.patch_size;
    CHECK(find_param(m, "patch_embed.proj.weight").shape() == Shape({d, e.c, p, p}));
    CHECK(find_param(m, "pos_embed").shape() == Shape({1, e.tokens, d}));
    CHECK(find_param(m, "cls_token").shape() == Shape({1, 1, d}));
    CHECK(find_param(m, "blocks.0.attn.qkv.weight").shape() == Shape({3 * d, d}));
    CHECK(find_param(m, "blocks." + std::to_string(cfg.depth - 1) + ".mlp.fc2.weight").shape() ==
          Shape({d, cfg.mlp_hidden}));
    CHECK(find_param(m, "head.weight").shape() == Shape({e.classes, d}));
    const bool cifar = e.name.rfind("cifar", 0) == 0;
    CHECK(has_key(m, "blocks.0.attn.qkv.bias") == !cifar);
    CHECK(has_key(m, "fc_norm.weight") == cifar);
    CHECK(has_key(m, "norm.weight") == !cifar);
    CHECK_FALSE(has_key(m, "blocks." + std::to_string(cfg.depth) + ".norm1.weight"));
    m.eval();
    NoGradGuard ng;
    const int64_t batch = cifar ? 1 : 2;
    Tensor logits = m.forward(randn({batch, e.c, e.img, e.img}));
    CHECK(logits.shape() == Shape({batch, e.classes}));
    for (double v : host_values(logits)) REQUIRE(std::isfinite(v));
  }
  CHECK_THROWS_WITH(models::vit_preset("imagenet"), Catch::Contains("imagenet") && Catch::Contains("fmnist-tiny"));
}

TEST_CASE("ViT initialisation follows the timm and CSP schemes", "[vit]") {
  manual_seed(28);
  models::VisionTransformer timm(models::vit_preset("fmnist-small"));
  const double pos_std = std_of(host_values(find_param(timm, "pos_embed")));
  CHECK(pos_std > 0.018);
  CHECK(pos_std < 0.022);
  const double qkv_std = std_of(host_values(find_param(timm, "blocks.0.attn.qkv.weight")));
  CHECK(qkv_std > 0.018);
  CHECK(qkv_std < 0.022);
  for (double v : host_values(find_param(timm, "cls_token"))) CHECK(std::abs(v) < 1e-5);
  for (const char* zero :
       {"blocks.0.attn.qkv.bias", "blocks.0.attn.proj.bias", "blocks.0.mlp.fc1.bias", "head.bias", "norm.bias"})
    for (double v : host_values(find_param(timm, zero))) REQUIRE(v == 0.0);
  for (double v : host_values(find_param(timm, "blocks.0.norm1.weight"))) REQUIRE(v == 1.0);
  // Patch projection keeps PyTorch's Conv2d default: U(±1/sqrt(C·p·p)) = U(±0.25) for C = 1, p = 4.
  double mx = 0;
  for (double v : host_values(find_param(timm, "patch_embed.proj.weight"))) mx = std::max(mx, std::abs(v));
  CHECK(mx <= 0.25);
  CHECK(mx > 0.2);

  models::ViTConfig c = testing::tiny_vit_config();
  c.pool = "avg";
  c.csp_layout = true;
  c.init = "csp";
  c.img_size = 32;
  models::VisionTransformer csp(c);
  const double csp_pos = std_of(host_values(find_param(csp, "pos_embed")));
  CHECK(csp_pos > 0.9);
  CHECK(csp_pos < 1.1);
  double fc1 = 0;  // PyTorch Linear default: U(±1/sqrt(16)), so not all zero bias
  for (double v : host_values(find_param(csp, "blocks.0.mlp.fc1.bias"))) fc1 = std::max(fc1, std::abs(v));
  CHECK(fc1 > 0);
  CHECK(fc1 <= 0.25);
}

TEST_CASE("ViT csp_layout adds pos_embed rows 0..N-1 and ignores the class token", "[vit]") {
  manual_seed(29);
  models::ViTConfig c = testing::tiny_vit_config();
  c.pool = "avg";
  c.csp_layout = true;
  models::VisionTransformer m(c);
  m.eval();
  NoGradGuard ng;
  const int64_t n = c.num_patches();
  Tensor x = randn({2, 3, 8, 8});
  Tensor base = m.forward(x);
  Tensor pos = find_param(m, "pos_embed"), cls = find_param(m, "cls_token");
  REQUIRE(pos.shape() == Shape({1, n + 1, 16}));
  // The last row (index N) and the class token are unused.
  Tensor last = pos.reshape({n + 1, 16}).slice0(n, 1);
  last.fill_(5.0);
  cls.fill_(7.0);
  REQUIRE_CLOSE(testing::bit_equal(m.forward(x), base));
  pos.reshape({n + 1, 16}).slice0(0, 1).fill_(5.0);
  CHECK_FALSE(testing::bit_equal(m.forward(x), base).ok);
  // csp_layout needs mean pooling.
  c.pool = "token";
  CHECK_THROWS_WITH(models::VisionTransformer(c), Catch::Contains("csp_layout"));
}

TEST_CASE("ViTConfig metadata round trip and validation errors", "[vit]") {
  for (const std::string& name : models::vit_preset_names()) {
    models::ViTConfig c = models::vit_preset(name);
    c.mixer = "csp";
    c.mixer_options = {{"csp_k", "2"}, {"csp_schedule", "constant"}};
    const auto meta = c.to_metadata();
    CHECK(meta.at("arch") == "vit");
    CHECK(meta.at("pool") == c.pool);
    CHECK(meta.at("csp_k") == "2");
    const models::ViTConfig r = models::ViTConfig::from_metadata(meta);
    CHECK(r.img_size == c.img_size);
    CHECK(r.in_chans == c.in_chans);
    CHECK(r.patch_size == c.patch_size);
    CHECK(r.embed_dim == c.embed_dim);
    CHECK(r.depth == c.depth);
    CHECK(r.num_heads == c.num_heads);
    CHECK(r.mlp_hidden == c.mlp_hidden);
    CHECK(r.num_classes == c.num_classes);
    CHECK(r.pool == c.pool);
    CHECK(r.qkv_bias == c.qkv_bias);
    CHECK(r.ln_eps == c.ln_eps);
    CHECK(r.drop_rate == c.drop_rate);
    CHECK(r.attn_drop_rate == c.attn_drop_rate);
    CHECK(r.pos_drop_rate == c.pos_drop_rate);
    CHECK(r.csp_layout == c.csp_layout);
    CHECK(r.init == c.init);
    CHECK(r.mixer == c.mixer);
    CHECK(r.mixer_options == c.mixer_options);
    CHECK(r.to_metadata() == meta);
  }
  auto meta = models::vit_preset("fmnist-tiny").to_metadata();
  auto missing = meta;
  missing.erase("embed_dim");
  CHECK_THROWS_WITH(models::ViTConfig::from_metadata(missing), Catch::Contains("embed_dim"));
  auto bad = meta;
  bad["depth"] = "four";
  CHECK_THROWS_WITH(models::ViTConfig::from_metadata(bad), Catch::Contains("depth") && Catch::Contains("four"));
  bad = meta;
  bad["arch"] = "resnet";
  CHECK_THROWS_WITH(models::ViTConfig::from_metadata(bad), Catch::Contains("arch"));

  auto invalid = [](auto edit) {
    models::ViTConfig c = models::vit_preset("fmnist-tiny");
    edit(c);
    return c;
  };
  CHECK_NOTHROW(models::vit_preset("fmnist-tiny").validate());
  CHECK_THROWS_WITH(invalid([](auto& c) { c.patch_size = 5; }).validate(),
                    Catch::Contains("patch_size 5 must divide img_size 28"));
  CHECK_THROWS_WITH(invalid([](auto& c) { c.num_heads = 3; }).validate(), Catch::Contains("divide embed_dim"));
  CHECK_THROWS_WITH(invalid([](auto& c) { c.pool = "max"; }).validate(), Catch::Contains("pool"));
  CHECK_THROWS_WITH(invalid([](auto& c) { c.init = "xavier"; }).validate(), Catch::Contains("init"));
  CHECK_THROWS_WITH(invalid([](auto& c) { c.drop_rate = 1.0; }).validate(), Catch::Contains("dropout"));
  CHECK_THROWS_WITH(invalid([](auto& c) { c.depth = 0; }).validate(), Catch::Contains("depth"));
  CHECK_THROWS_WITH(invalid([](auto& c) { c.ln_eps = 0; }).validate(), Catch::Contains("ln_eps"));
  CHECK_THROWS_WITH(invalid([](auto& c) { c.mixer = "nope"; }).validate(),
                    Catch::Contains("unknown mixer \"nope\"") && Catch::Contains("softmax"));
  CHECK_THROWS_WITH(models::VisionTransformer(invalid([](auto& c) { c.mixer = "nope"; })), Catch::Contains("nope"));
  CHECK_THROWS_WITH(invalid([](auto& c) { c.mixer_options = {{"demo_k", "2"}}; }).validate(),
                    Catch::Contains("unknown option \"demo_k\""));
  CHECK_THROWS_WITH(invalid([](auto& c) { c.mixer_options = {{"csp_k", "2"}}; }).validate(),
                    Catch::Contains("option csp_k belongs to mixer csp"));
}

TEST_CASE("ViT rejects images of the wrong shape", "[vit]") {
  models::VisionTransformer m(models::vit_preset("fmnist-tiny"));
  CHECK_THROWS_WITH(m.forward(randn({2, 1, 32, 32})),
                    Catch::Contains("[B, 1, 28, 28]") && Catch::Contains("[2, 1, 32, 32]"));
  CHECK_THROWS_WITH(m.forward(randn({2, 3, 28, 28})), Catch::Contains("[B, 1, 28, 28]"));
  CHECK_THROWS_WITH(m.forward(randn({1, 28, 28})), Catch::Contains("[B, 1, 28, 28]"));
}
