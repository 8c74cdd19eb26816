// The paper and mini presets of every LRA task.
#include "apps/lra/lra_presets.h"

#include <fmt/format.h>

#include <cmath>

#include "apps/lra/lra_family_presets.h"
#include "engine/error.h"

namespace mixgrad::app::lra {

namespace {

// Model sizes: layers, width, heads, qkv width, MLP width, pooling, positions, dropout, attention dropout.
struct Sizes {
  int64_t depth, dim, heads, qkv, mlp;
  const char* pool;
  const char* pos;
  double dropout, attn_dropout;
};

void set_sizes(models::LraConfig& m, const Sizes& s) {
  m.depth = s.depth, m.embed_dim = s.dim, m.num_heads = s.heads, m.qkv_dim = s.qkv == s.dim ? 0 : s.qkv;
  m.mlp_dim = s.mlp, m.pool = s.pool, m.pos = s.pos, m.dropout = s.dropout, m.attn_dropout = s.attn_dropout;
}

// LRA's optimiser: Adam β (0.9, 0.98), eps 1e-9, decoupled weight decay (spec §7.1).
Recipe lra_recipe(int64_t batch, double lr, const char* schedule, int64_t warmup, double wd) {
  Recipe r;
  r.batch_size = batch, r.lr = lr, r.schedule = schedule, r.warmup_steps = warmup, r.weight_decay = wd;
  r.beta1 = 0.9, r.beta2 = 0.98, r.eps = 1e-9;
  return r;
}

// LRA's rsqrt schedule is const·rsqrt(max(step, warmup)); its peak, what --lr means here, is const/√warmup.
double rsqrt_peak(double constant, int64_t warmup) { return constant / std::sqrt(double(warmup)); }

LraPreset paper_preset(const TaskInfo& t) {
  LraPreset p;
  models::LraConfig& m = p.model;
  Recipe& r = p.recipe;
  if (t.name == "listops") {
    set_sizes(m, {4, 512, 8, 512, 1024, "cls", "sinusoidal", 0.1, 0.1});
    m.max_len = 2000;
    r = lra_recipe(32, rsqrt_peak(0.05, 1000), "rsqrt", 1000, 0.1);
    r.updates = 5000;
  } else if (t.name == "text") {
    set_sizes(m, {4, 256, 4, 256, 1024, "cls", "sinusoidal", 0.1, 0.1});
    m.max_len = 4000;
    r = lra_recipe(32, rsqrt_peak(0.05, 8000), "rsqrt", 8000, 0.1);
    r.updates = 20000;
  } else if (t.name == "retrieval") {
    set_sizes(m, {4, 128, 4, 128, 512, "cls", "sinusoidal", 0.1, 0.1});
    m.max_len = 4000;
    m.dual = "nli";
    r = lra_recipe(32, rsqrt_peak(0.05, 8000), "rsqrt", 8000, 0.1);
    r.updates = 5000;
  } else if (t.name == "image") {
    set_sizes(m, {1, 128, 8, 64, 128, "cls", "learned", 0.3, 0.2});
    r = lra_recipe(256, 5e-4, "cosine", 0, 0.0);
    r.epochs = 200, p.warmup_epochs = 1;
  } else if (t.name == "pathfinder") {
    set_sizes(m, {4, 32, 4, 16, 32, "mean", "sinusoidal", 0.2, 0.1});
    r = lra_recipe(512, 1e-3, "cosine", 0, 0.0);
    r.epochs = 200, p.warmup_epochs = 1;
  } else {  // pathx
    set_sizes(m, {1, 32, 2, 16, 32, "mean", "learned", 0.1, 0.1});
    r = lra_recipe(64, 1e-3, "cosine", 0, 0.0);
    r.epochs = 200, p.warmup_epochs = 1, r.clip_norm = 1.0;
  }
  p.generator.pathfinder.num_images = 200000;
  p.note = "the LRA Transformer configuration of the task (specs/lra.md §7.1)";
  return p;
}

// Project-defined: the same tasks at sizes this 2-core CPU trains in minutes (docs/benchmarks/lra-cpu.md).
LraPreset mini_preset(const TaskInfo& t) {
  LraPreset p;
  models::LraConfig& m = p.model;
  Recipe& r = p.recipe;
  if (t.name == "listops") {
    // Masked-mean pooling (CSP-MEGA's, csp.md §10.2) and lr 3e-3: with a class token or lr 1e-3, CSP under its
    // default exponential schedule stays at the majority class on this data (docs/benchmarks/lra-cpu.md).
    set_sizes(m, {2, 64, 4, 64, 128, "mean", "sinusoidal", 0.1, 0.1});
    m.max_len = 250;
    r = lra_recipe(32, 3e-3, "cosine", 300, 0.01);
    r.epochs = 4;
    data::ListOpsConfig& g = p.generator.listops;
    g.min_length = 50, g.max_length = 250, g.train = 20000, g.val = 1000, g.test = 1000;
    p.note =
        "ListOps with 51-249 tokens, 20,000 / 1,000 / 1,000 generated samples, a 2-layer D 64 encoder with "
        "masked-mean pooling, 4 epochs at lr 3e-3";
  } else if (t.name == "text" || t.name == "retrieval") {
    set_sizes(m, {2, 64, 4, 64, 128, "cls", "sinusoidal", 0.1, 0.1});
    m.max_len = 1000;  // the length of LRA's released text configuration
    m.dual = t.name == "retrieval" ? "nli" : "none";
    r = lra_recipe(32, 1e-3, "cosine", 500, 0.01);
    r.epochs = 2;
    p.note = "the first 1,000 bytes of each document, a 2-layer D 64 encoder, 2 epochs";
  } else if (t.name == "image") {
    set_sizes(m, {1, 64, 4, 64, 128, "cls", "learned", 0.1, 0.1});
    r = lra_recipe(64, 1e-3, "cosine", 0, 0.0);
    r.epochs = 3, r.train_limit = 10000, p.warmup_epochs = 1;
    p.note = "10,000 training images, a 1-layer D 64 encoder, 3 epochs";
  } else if (t.name == "pathfinder") {
    set_sizes(m, {2, 32, 4, 32, 64, "mean", "sinusoidal", 0.1, 0.0});
    r = lra_recipe(64, 1e-3, "cosine", 0, 0.0);
    r.epochs = 4, p.warmup_epochs = 1;
    p.generator.pathfinder.num_images = 12000;
    p.note = "12,000 generated Pathfinder-32 (hard) images, a 2-layer D 32 encoder, 4 epochs";
  } else {  // pathx
    set_sizes(m, {1, 32, 2, 16, 32, "mean", "learned", 0.1, 0.0});
    r = lra_recipe(8, 1e-3, "cosine", 0, 0.0);
    r.epochs = 1, p.warmup_epochs = 1, r.clip_norm = 1.0;
    p.generator.pathfinder.num_images = 1200;
    p.note = "1,200 generated Path-X (hard) images, a 1-layer D 32 encoder, 1 epoch: a smoke run, not a result";
  }
  return p;
}

// The presets of the families other than the transformer (apps/lra/lra_family_presets.h), by family.
FamilyPreset family_preset(const std::string& model) {
  if (model == "mega") return mega_preset;
  if (model == "lstm") return lstm_preset;
  if (model == "flash") return flash_preset;
  return nullptr;
}

}  // namespace

std::vector<std::string> lra_preset_names() { return {"paper", "mini"}; }

LraPreset lra_preset(const std::string& task, const std::string& preset, const std::string& model,
                     const std::string& mixer) {
  const TaskInfo& t = task_info(task);
  MIXGRAD_CHECK(preset == "paper" || preset == "mini", "unknown LRA preset \"{}\" (known: paper, mini)", preset);
  const models::LraFamily& family = models::lra_family(model, true);
  LraPreset p;
  p = preset == "paper" ? paper_preset(t) : mini_preset(t);
  if (model != "transformer") {
    const FamilyPreset make = family_preset(model);
    MIXGRAD_CHECK(make != nullptr, "lra_preset: the LRA model family {} has no presets", model);
    p = make(t, preset, mixer.empty() ? family.default_mixer : mixer, p);
  }
  models::LraConfig& m = p.model;
  m.model = model;
  m.mixer = mixer.empty() ? family.default_mixer : mixer;
  m.task = t.name;
  // The transformer reads pixel tasks as tokens (LRA's); the other families through a real-number embedding (MEGA's).
  m.input = model != "transformer" && t.pixels ? "pixels" : "tokens";
  m.vocab_size = t.vocab_size;
  m.num_classes = t.num_classes;
  if (t.pixels) m.max_len = t.image_size * t.image_size, m.grid_h = m.grid_w = t.image_size;
  if (t.paired && m.dual == "none") m.dual = "nli";
  if (t.name == "pathfinder" || t.name == "pathx")
    p.generator.pathfinder = [&] {
      data::PathfinderConfig c = data::pathfinder_preset(int(t.image_size), p.difficulty);
      c.num_images = p.generator.pathfinder.num_images;
      return c;
    }();
  p.recipe.validate();
  return p;
}

}  // namespace mixgrad::app::lra
