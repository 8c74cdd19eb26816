// Every LRA model family (models/lra_model.h) on every task, table-driven: the family's tiny configuration on top of
// its mini preset, a padded synthetic batch of the task's input (token ids, or pixel intensities on the task's image;
// two documents for Retrieval); two training steps give finite losses and gradients for every parameter, and one
// batch is overfitted (cross-entropy below kOverfitLoss). A family added later appends a row to families().
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "apps/lra/lra_presets.h"
#include "engine/mixgrad.h"
#include "models/lra_model.h"
#include "nn/optim/optimizer.h"

using namespace mixgrad;
using Catch::Contains;

namespace {

constexpr double kOverfitLoss = 0.1;  // mean cross-entropy one batch must fall below
constexpr int kMaxOverfitSteps = 200;

// One row: a family (and mixer) at tiny sizes. `tiny` shrinks the family's mini preset; it must leave dropout off.
struct FamilyRow {
  std::string model, mixer;
  std::function<void(models::LraConfig&)> tiny;
  double lr = 1e-2;
};

std::vector<FamilyRow> families() {
  std::vector<FamilyRow> rows;
  rows.push_back({"transformer", "softmax", [](models::LraConfig& c) {
                    c.embed_dim = 16, c.depth = 1, c.num_heads = 2, c.qkv_dim = 16, c.mlp_dim = 24, c.head_dim = 24;
                    c.dropout = c.attn_dropout = 0;
                  }});
  // MEGA and CSP-MEGA on their mini presets (post-norm LayerNorm softmax on text, pre-norm BatchNorm laplace on
  // pixels), shrunk; the pixel rows also run chunked attention.
  const auto mega_tiny = [](models::LraConfig& c) {
    c.embed_dim = 16, c.depth = 2, c.zdim = 8, c.hdim = 24, c.mlp_dim = 24, c.head_dim = 24, c.ema_ndim = 4;
    c.dropout = c.hidden_dropout = 0;
    if (c.input == "pixels" && c.mixer == "gated") c.chunk = 256;
  };
  rows.push_back({"mega", "gated", mega_tiny});
  rows.push_back({"mega", "csp", mega_tiny});
  // The LSTM (ours, §6.5) on its mini preset, shrunk: 2 layers (so the between-layer path runs), mean pooling; a
  // last-state row covers the other pooling.
  const auto lstm_tiny = [](models::LraConfig& c) {
    c.embed_dim = 16, c.depth = 2, c.lstm_hidden = 12, c.mlp_dim = 24, c.head_dim = 24;
    c.dropout = c.hidden_dropout = 0;
    if (c.input == "pixels") c.lstm_pool = "last";
  };
  // Pixel tasks pool the last states: the four synthetic images are intensity-shifted copies with nearly the same
  // mean over 1,024 steps, and the mean-pooled LSTM stopped at loss 0.48 (lr 1e-2), 1.04 (3e-2 and 3e-3) after the
  // 200 steps; mean pooling stays covered by the token tasks.
  rows.push_back({"lstm", "none", lstm_tiny});
  rows.push_back({"lstm", "none", [lstm_tiny](models::LraConfig& c) {
                    lstm_tiny(c);
                    c.lstm_pool = "last";
                  }});
  // Wider than the transformer's row and lr 3e-2: the pixel rows here are intensity-shifted copies of one another, and
  // a GAU stack has no absolute positions, so it must learn its relative bias to tell them apart in 200 steps.
  rows.push_back({"flash", "gated", [](models::LraConfig& c) {
                    c.embed_dim = 32, c.depth = 2, c.zdim = 16, c.hdim = 64, c.head_dim = 32;
                    c.dropout = 0;
                  },
                  3e-2});
  return rows;
}

const std::vector<std::string> kTasks = {"listops", "text", "retrieval", "image", "pathfinder"};

struct SyntheticBatch {
  Tensor x, lengths, x2, lengths2, labels;
};

// [b, l] inputs with zeros past each length: token ids in [1, vocab), or intensities 0..255 for pixels.
Tensor inputs(const std::vector<int32_t>& lengths, int64_t l, int64_t vocab, bool pixels, int64_t salt) {
  const int64_t b = int64_t(lengths.size());
  std::vector<int64_t> v(size_t(b * l), 0);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < lengths[size_t(i)]; ++j)
      v[size_t(i * l + j)] = pixels ? (i * 53 + j * 29 + salt * 7 + (j * j) % 13) % 256
                                    : 1 + (i * 7 + j * 3 + salt + (i * j) % 5) % (vocab - 1);
  const Tensor t = from_vector(v, {b, l});
  return pixels ? t.to(DType::f32) : t;
}

// Four samples with distinct inputs and labels 0, 1, 2 % classes, 1; text-like tasks are padded, pixel tasks full.
SyntheticBatch synthetic_batch(const models::LraConfig& c, bool paired) {
  const bool pixels = c.input == "pixels" || c.grid_h > 0;
  const int64_t l = pixels ? c.max_len : std::min<int64_t>(c.max_len, 24);
  std::vector<int32_t> len = {int32_t(l), int32_t(l * 2 / 3), 3, int32_t(l - 1)};
  if (pixels) len.assign(4, int32_t(l));
  SyntheticBatch s;
  s.x = inputs(len, l, c.vocab_size, c.input == "pixels", 0);
  s.lengths = from_vector(len, {4});
  if (paired) {
    const std::vector<int32_t> len2 = {5, int32_t(l), int32_t(l / 2), 2};
    s.x2 = inputs(len2, l, c.vocab_size, c.input == "pixels", 5);
    s.lengths2 = from_vector(len2, {4});
  }
  s.labels = from_vector<int64_t>({0, 1, 2 % c.num_classes, 1}, {4});
  return s;
}

models::LraConfig tiny_config(const FamilyRow& row, const std::string& task) {
  models::LraConfig c = app::lra::lra_preset(task, "mini", row.model).model;
  c.mixer = row.mixer;
  c.max_len = task == "image" || task == "pathfinder" ? c.max_len : 32;
  row.tiny(c);
  c.validate();
  return c;
}

Tensor loss_of(models::LraModel& m, const SyntheticBatch& b) {
  return cross_entropy(m.forward(b.x, b.lengths, b.x2, b.lengths2), b.labels);
}

}  // namespace

TEST_CASE("lra models: every family on every task takes two finite training steps", "[lra][models]") {
  for (const FamilyRow& row : families())
    for (const std::string& task : kTasks) {
      INFO("model " << row.model << ", mixer " << row.mixer << ", task " << task);
      manual_seed(31);
      const models::LraConfig c = tiny_config(row, task);
      const std::unique_ptr<models::LraModel> m = models::make_lra_model(c);
      REQUIRE(m->config().model == row.model);
      const SyntheticBatch b = synthetic_batch(c, c.dual != "none");
      nn::AdamW opt(m->parameters(), AdamWHyper{row.lr, 0.9, 0.98, 1e-8, 0.01});
      for (int step = 0; step < 2; ++step) {
        opt.zero_grad();
        const Tensor loss = loss_of(*m, b);
        INFO("step " << step << " loss " << loss.item());
        REQUIRE(std::isfinite(loss.item()));
        loss.backward();
        for (const auto& [name, p] : m->named_parameters()) {
          INFO("gradient of " << name);
          REQUIRE(p.grad().defined());
          REQUIRE(std::isfinite(sum(mul(p.grad(), p.grad())).item()));
        }
        opt.step();
      }
    }
}

TEST_CASE("lra models: every family on every task overfits one batch", "[lra][models]") {
  for (const FamilyRow& row : families())
    for (const std::string& task : kTasks) {
      INFO("model " << row.model << ", mixer " << row.mixer << ", task " << task);
      manual_seed(37);
      const models::LraConfig c = tiny_config(row, task);
      const std::unique_ptr<models::LraModel> m = models::make_lra_model(c);
      const SyntheticBatch b = synthetic_batch(c, c.dual != "none");
      nn::AdamW opt(m->parameters(), AdamWHyper{row.lr, 0.9, 0.98, 1e-8, 0.0});
      double first = 0, loss = 1e9;
      int steps = 0;
      for (; steps < kMaxOverfitSteps && loss >= kOverfitLoss; ++steps) {
        opt.zero_grad();
        const Tensor lo = loss_of(*m, b);
        lo.backward();
        opt.step();
        loss = lo.item();
        if (steps == 0) first = loss;
      }
      INFO("loss " << first << " -> " << loss << " after " << steps << " steps");
      REQUIRE(loss < kOverfitLoss);
    }
}

TEST_CASE("lra models: the factory names unknown families and families not built yet", "[lra][models]") {
  models::LraConfig c;
  c.model = "rnn";
  CHECK_THROWS_WITH(models::make_lra_model(c), Contains("unknown LRA model family \"rnn\"") && Contains("transformer"));
  for (const models::LraFamily& f : models::lra_families()) {
    INFO("family " << f.name);
    CHECK_FALSE(f.default_mixer.empty());
    CHECK(models::lra_mixer_mismatch(f.name, f.default_mixer).empty());
    if (f.unavailable.empty()) continue;
    c.model = f.name;
    c.mixer = f.default_mixer;
    CHECK_THROWS_WITH(models::make_lra_model(c), Contains(f.unavailable));
    CHECK_THROWS_WITH(app::lra::lra_preset("listops", "mini", f.name), Contains(f.unavailable));
  }
  // A mixer the family does not take is named with what it takes.
  c = models::LraConfig{};
  c.mixer = "gated";
  CHECK_THROWS_WITH(c.validate(), Contains("model transformer has no mixer \"gated\""));
}
