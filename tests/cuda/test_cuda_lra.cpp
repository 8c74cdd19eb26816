// The LRA models on CUDA against the CPU: one training step (loss and every parameter gradient, dropout on) of the
// Transformer with every mixer (token and pixel inputs, class-token and masked-mean pooling, padded batches, the dual
// encoder), and of MEGA (post-norm softmax, pre-norm chunked laplace on pixels, the dual encoder) and CSP-MEGA.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "models/lra_model.h"
#include "nn/mixer.h"
#include "tests/common/check.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

const Device kCuda{DeviceType::cuda, 0};

struct Variant {
  std::string pool, input, dual;
};

// One row: a family and mixer, a variant of inputs, and the family's own settings on top of config().
struct Row {
  std::string model, mixer;
  Variant v;
  std::string norm = "layernorm", attn_fn = "softmax";
  bool prenorm = false;
  int64_t chunk = -1;
};

models::LraConfig config(const Row& row) {
  const Variant& v = row.v;
  models::LraConfig c;
  c.model = row.model;
  c.input = v.input;
  c.vocab_size = 9;
  c.max_len = 24;
  c.embed_dim = 16, c.depth = 2, c.num_heads = 2, c.qkv_dim = 8, c.mlp_dim = 24;
  c.pool = v.pool;
  c.pos = v.pool == "cls" ? "sinusoidal" : "learned";
  c.mixer = row.mixer;
  c.num_classes = 4;
  c.dual = v.dual;
  if (v.input == "pixels") c.grid_h = 4, c.grid_w = 6;  // as the app sets it: grid-aware mixers read it
  if (row.model == "mega") {
    c.pool = "mean", c.pos = "none", c.attn_dropout = 0, c.hidden_dropout = 0.1, c.num_heads = 1;
    c.zdim = 8, c.hdim = 12, c.ema_ndim = 4, c.ln_eps = 1e-5;
    c.norm = row.norm, c.prenorm = row.prenorm, c.attn_fn = row.attn_fn, c.chunk = row.chunk;
    if (row.mixer == "csp") c.mixer_options = {{"csp_schedule", "exponential"}};
  }
  return c;
}

std::vector<Row> rows() {
  const std::vector<Variant> variants = {
      {"cls", "tokens", "none"}, {"mean", "pixels", "none"}, {"cls", "tokens", "nli"}};
  std::vector<Row> r;
  for (const std::string& mixer : nn::mixer_names())
    for (const Variant& v : variants) r.push_back({"transformer", mixer, v});
  r.push_back({"mega", "gated", {"mean", "tokens", "none"}});
  r.push_back({"mega", "gated", {"mean", "pixels", "none"}, "layernorm", "laplace", true, 5});
  r.push_back({"mega", "gated", {"mean", "tokens", "nli"}, "layernorm", "relu2"});
  r.push_back({"mega", "csp", {"mean", "tokens", "none"}});
  r.push_back({"mega", "csp", {"mean", "pixels", "concat"}, "layernorm", "softmax", true});
  return r;
}

// [b, l] inputs with zeros past each length: ids 1..8, or intensities 0..255 for pixels.
Tensor inputs(const std::vector<int32_t>& lengths, int64_t l, bool pixels, int64_t salt) {
  const int64_t b = int64_t(lengths.size());
  std::vector<int64_t> v(size_t(b * l), 0);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < lengths[size_t(i)]; ++j)
      v[size_t(i * l + j)] = pixels ? (i * 37 + j * 11 + salt) % 256 : 1 + (i * 5 + j * 3 + salt) % 8;
  const Tensor t = from_vector(v, {b, l});
  return pixels ? t.to(DType::f32) : t;
}

}  // namespace

TEST_CASE("cuda: one LRA training step gives the CPU's loss and gradients", "[cuda][lra]") {
  const std::vector<int32_t> len = {24, 17, 5}, len2 = {9, 20, 13};
  for (const Row& row : rows()) {
    const Variant& v = row.v;
    const std::string& mixer = row.mixer;
    INFO("model " << row.model << ", mixer " << mixer << ", pool " << v.pool << ", input " << v.input << ", dual "
                  << v.dual << ", norm " << row.norm << ", attention " << row.attn_fn << ", chunk " << row.chunk);
    if (row.model == "transformer" && v.input == "tokens" && nn::mixer_info(mixer).needs_grid) {
      WARN("mixer " << mixer << " needs a token grid: token-input variant skipped, pixel input tested");
      continue;
    }
    const models::LraConfig cfg = config(row);
    manual_seed(900);
    const std::unique_ptr<models::LraModel> cpu_model = models::make_lra_model(cfg);
    manual_seed(901);
    const std::unique_ptr<models::LraModel> gpu_model = models::make_lra_model(cfg);
    models::LraModel &cpu = *cpu_model, &gpu = *gpu_model;
    gpu.load_state_dict(cpu.state_dict());
    gpu.to(kCuda);
    const bool px = v.input == "pixels", dual = v.dual != "none";
    const Tensor x = inputs(len, 24, px, 0), x2 = dual ? inputs(len2, 20, px, 3) : Tensor();
    const Tensor l = from_vector(len, {3}), l2 = dual ? from_vector(len2, {3}) : Tensor();
    const Tensor labels = from_vector<int64_t>({3, 0, 2}, {3});
    manual_seed(5);  // the same dropout masks on both devices (Philox)
    const Tensor loss = cross_entropy(cpu.forward(x, l, x2, l2), labels);
    loss.backward();
    manual_seed(5);
    const Tensor loss_c = cross_entropy(
        gpu.forward(x.to(kCuda), l.to(kCuda), dual ? x2.to(kCuda) : Tensor(), dual ? l2.to(kCuda) : Tensor()),
        labels.to(kCuda));
    loss_c.backward();
    REQUIRE(loss_c.device() == kCuda);
    REQUIRE_CLOSE(testing::all_close(loss_c, loss, tolerance(Compare::cpu_vs_cuda)));
    const auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
    REQUIRE(pc.size() == pg.size());
    for (size_t i = 0; i < pc.size(); ++i) {
      INFO("gradient of " << pc[i].first);
      REQUIRE(pc[i].second.grad().defined());
      REQUIRE_CLOSE(testing::all_close(pg[i].second.grad(), pc[i].second.grad(), tolerance(Compare::cpu_vs_cuda)));
    }
  }
}

TEST_CASE("cuda: one FLASH (GAU) training step gives the CPU's loss and gradients", "[cuda][lra][flash]") {
  struct FlashVariant {
    std::string input, norm, dual;
    int64_t chunk;
  };
  const std::vector<FlashVariant> variants = {{"tokens", "scalenorm", "none", -1},
                                              {"pixels", "batchnorm", "none", 5},
                                              {"tokens", "layernorm", "nli", 7}};
  const std::vector<int32_t> len = {24, 17, 5}, len2 = {9, 20, 13};
  for (const FlashVariant& v : variants) {
    INFO("input " << v.input << ", norm " << v.norm << ", dual " << v.dual << ", chunk " << v.chunk);
    models::LraConfig cfg = config(Row{"transformer", "softmax", Variant{"mean", v.input, v.dual}});
    cfg.model = "flash", cfg.mixer = "gated", cfg.pos = "none", cfg.attn_dropout = 0.0, cfg.dropout = 0.1;
    cfg.zdim = 8, cfg.hdim = 24, cfg.head_dim = 16, cfg.norm = v.norm, cfg.chunk = v.chunk, cfg.attn_fn = "relu2";
    cfg.validate();
    manual_seed(910);
    const auto cpu = models::make_lra_model(cfg);
    manual_seed(911);
    const auto gpu = models::make_lra_model(cfg);
    gpu->load_state_dict(cpu->state_dict());
    gpu->to(kCuda);
    const bool px = v.input == "pixels", dual = v.dual != "none";
    const std::vector<int32_t> lengths = px ? std::vector<int32_t>{24, 24, 24} : len;  // pixel images are whole
    const Tensor x = inputs(lengths, 24, px, 0), x2 = dual ? inputs(len2, 20, px, 3) : Tensor();
    const Tensor l = from_vector(lengths, {3}), l2 = dual ? from_vector(len2, {3}) : Tensor();
    const Tensor labels = from_vector<int64_t>({3, 0, 2}, {3});
    manual_seed(6);  // the same dropout masks on both devices (Philox)
    const Tensor loss = cross_entropy(cpu->forward(x, l, x2, l2), labels);
    loss.backward();
    manual_seed(6);
    const Tensor loss_c = cross_entropy(
        gpu->forward(x.to(kCuda), l.to(kCuda), dual ? x2.to(kCuda) : Tensor(), dual ? l2.to(kCuda) : Tensor()),
        labels.to(kCuda));
    loss_c.backward();
    REQUIRE(loss_c.device() == kCuda);
    REQUIRE_CLOSE(testing::all_close(loss_c, loss, tolerance(Compare::cpu_vs_cuda)));
    const auto pc = cpu->named_parameters(), pg = gpu->named_parameters();
    REQUIRE(pc.size() == pg.size());
    for (size_t i = 0; i < pc.size(); ++i) {
      INFO("gradient of " << pc[i].first);
      REQUIRE(pc[i].second.grad().defined());
      REQUIRE_CLOSE(testing::all_close(pg[i].second.grad(), pc[i].second.grad(), tolerance(Compare::cpu_vs_cuda)));
    }
  }
}
