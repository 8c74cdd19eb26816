// The FLASH / GAU presets of `lra --model flash` (specs/lra.md §6.4, §7.3): GAU with full (Path-X: chunked) quadratic
// relu² attention, not the mixed-chunk FLASH.
#include "apps/lra/lra_family_presets.h"

namespace mixgrad::app::lra {

namespace {

struct FlashSizes {
  int64_t depth, dim, zdim, expansion, cls_out;
  const char* norm;
};

void set_flash_sizes(models::LraConfig& m, const FlashSizes& s) {
  m.depth = s.depth, m.embed_dim = s.dim, m.zdim = s.zdim, m.hdim = s.expansion, m.head_dim = s.cls_out;
  m.mlp_dim = s.cls_out;  // unused by the GAU; kept equal to the head width
  m.norm = s.norm, m.attn_fn = "relu2", m.chunk = -1, m.prenorm = true;
  m.pool = "mean", m.pos = "none", m.attn_dropout = 0.0, m.ln_eps = 1e-5;
}

// MEGA's LRA recipe of the task (§7.2: Adam β (0.9, 0.98), eps 1e-8, clip 1.0, linear warm-up then linear decay):
// the registered FLASH architectures come without one (§7.3).
void mega_recipe(Recipe& r, int64_t batch, double lr, double wd, int64_t updates, int64_t warmup) {
  r.batch_size = batch, r.lr = lr, r.weight_decay = wd, r.updates = updates, r.warmup_steps = warmup;
  r.schedule = "linear", r.beta1 = 0.9, r.beta2 = 0.98, r.eps = 1e-8, r.clip_norm = 1.0;
}

LraPreset flash_paper(const TaskInfo& t, LraPreset p) {
  models::LraConfig& m = p.model;
  Recipe& r = p.recipe;
  const FlashSizes imdb{4, 128, 64, 256, 256, "scalenorm"};  // flash_lra_imdb
  const FlashSizes cifar{8, 192, 128, 512, 512, "batchnorm"};  // flash_lra_cifar10
  const FlashSizes pf32{6, 128, 64, 384, 384, "batchnorm"};  // flash_lra_pf32
  if (t.name == "listops") {
    set_flash_sizes(m, {4, 128, 64, 256, 256, "layernorm"});  // ours: imdb's sizes with MEGA's ListOps norm
    m.max_len = 2000, m.dropout = 0.1;
    mega_recipe(r, 64, 1e-3, 0.01, 90000, 3000);
    p.note = "ours: flash_lra_imdb's sizes (4 GAU layers, d 128, s 64, e 256) with LayerNorm, full relu² attention, "
             "MEGA's ListOps recipe (specs/lra.md §7.2-7.3)";
  } else if (t.name == "text") {
    set_flash_sizes(m, imdb);
    m.max_len = 4000, m.dropout = 0.1;
    mega_recipe(r, 50, 4e-3, 0.01, 25000, 10000);
    p.note = "flash_lra_imdb (specs/lra.md §7.3), full relu² attention, MEGA's Text recipe (batch 25x2 as 50)";
  } else if (t.name == "retrieval") {
    set_flash_sizes(m, imdb);
    m.max_len = 4000, m.dropout = 0.1;
    mega_recipe(r, 64, 3e-3, 0.04, 91960, 10000);
    p.note = "ours: flash_lra_imdb's sizes with ScaleNorm, full relu² attention, MEGA's Retrieval recipe (8x8 as 64)";
  } else if (t.name == "image") {
    set_flash_sizes(m, cifar);
    m.dropout = 0.0, m.pixel_mean = 0.48, m.pixel_std = 0.24;
    mega_recipe(r, 50, 1e-2, 0.02, 180000, 9000);
    p.note = "flash_lra_cifar10 (specs/lra.md §7.3), full relu² attention, MEGA's Image recipe and pixel normalisation";
  } else if (t.name == "pathfinder") {
    set_flash_sizes(m, pf32);
    m.dropout = 0.0;
    mega_recipe(r, 128, 1e-2, 0.01, 250000, 50000);
    p.note = "flash_lra_pf32 (specs/lra.md §7.3), full relu² attention, MEGA's Pathfinder recipe";
  } else {  // pathx
    set_flash_sizes(m, pf32);
    m.chunk = 4096, m.dropout = 0.0;
    mega_recipe(r, 128, 1e-2, 0.01, 125000, 25000);
    p.note = "ours: flash_lra_pf32's sizes, relu² attention within chunks of 4,096 (MEGA-chunk's Path-X chunk), "
             "MEGA's Path-X recipe (2x8 per GPU on 8 GPUs as 128)";
  }
  p.warmup_epochs = 0, r.epochs = 1;  // the updates set the epochs
  return p;
}

// The transformer's mini data, epochs and batch; a 2-layer d 64 GAU stack.
LraPreset flash_mini(const TaskInfo& t, LraPreset p) {
  set_flash_sizes(p.model, {2, 64, 32, 128, 128, "layernorm"});
  p.model.dropout = t.pixels ? 0.0 : 0.1;
  p.note += "; flash: 2 GAU layers, d 64, s 32, e 128, LayerNorm, full relu² attention";
  return p;
}

}  // namespace

LraPreset flash_preset(const TaskInfo& task, const std::string& preset, const std::string& mixer, LraPreset base) {
  (void)mixer;  // the family takes one mixer, "gated"
  return preset == "paper" ? flash_paper(task, std::move(base)) : flash_mini(task, std::move(base));
}

}  // namespace mixgrad::app::lra
