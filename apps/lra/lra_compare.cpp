// `lra compare`: models × mixers on one task with the same preset, data and recipe over several seeds, through the
// shared comparison (apps/common/compare.h); and the LRA models' parameter and FLOP counts.
#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "apps/common/flops.h"
#include "apps/lra/lra_app.h"
#include "apps/lra/lra_tasks.h"
#include "nn/mixer.h"

namespace mixgrad::app::lra {

namespace fs = std::filesystem;

namespace {

bool registry_mixer(const std::string& mixer) {
  const std::vector<std::string> names = nn::mixer_names();
  return std::find(names.begin(), names.end(), mixer) != names.end();
}

// The families other than the transformer: every Linear outside the head acts on each token, the modules that
// multiply tokens themselves (the LSTM's gates, MEGA's EMA and attention, FLASH's gated attention) by their own
// formulas (nn::Module::own_forward_flops), the head on the pooled vector(s).
ModelCost family_cost(const models::LraConfig& cfg, const nn::Module& model) {
  const double encodes = cfg.dual != "none" ? 2.0 : 1.0;
  ModelCost c;
  c.params = model.num_parameters();
  for (const auto& [name, child] : model.named_children()) {
    if (name == "head") {
      c.flops += nn::linear_flops_per_row(*child);
      continue;
    }
    const FlopCount f = token_flops(*child, cfg.max_len);
    c.flops += encodes * f.flops;
    c.flops_complete = c.flops_complete && f.complete;
  }
  return c;
}

}  // namespace

ModelCost lra_cost(const models::LraConfig& cfg) {
  const std::unique_ptr<models::LraModel> built = models::make_lra_model(cfg);
  if (cfg.model != "transformer") return family_cost(cfg, *built);
  const models::LraModel& model = *built;
  const int64_t n = cfg.seq_len();
  const double encodes = cfg.dual != "none" ? 2.0 : 1.0;  // Retrieval encodes both documents
  ModelCost c;
  c.params = model.num_parameters();
  // Embeddings are look-ups (tokens) or element-wise (pixels); the blocks act on each of the n tokens (their mixers
  // by their own formulas), the head on the pooled vector(s).
  const FlopCount blocks = token_flops(child_module(model, "blocks"), n);
  c.flops = encodes * blocks.flops + nn::linear_flops_per_row(child_module(model, "head"));
  c.flops_complete = blocks.complete;
  return c;
}

namespace {

Json settings_json(const CompareOptions& o) {
  const TrainOptions& b = o.base;
  Json s{{"task", b.task}, {"preset", b.preset}, {"seeds", o.seeds}, {"device", b.device}};
  auto put = [&s](const char* k, const auto& v) {
    if (v) s[k] = *v;
  };
  put("epochs", b.epochs), put("updates", b.updates), put("batch_size", b.batch_size), put("lr", b.lr);
  put("weight_decay", b.weight_decay), put("warmup", b.warmup), put("embed_dim", b.model_flags.embed_dim);
  put("depth", b.model_flags.depth), put("heads", b.model_flags.num_heads), put("mlp_dim", b.model_flags.mlp_dim);
  put("samples", b.data.samples);
  if (!b.data.data_dir.empty()) s["data"] = b.data.data_dir;
  if (b.train_limit) s["train_limit"] = b.train_limit;
  if (b.val_limit) s["val_limit"] = b.val_limit;
  if (b.test_limit) s["test_limit"] = b.test_limit;
  if (!b.mixer_options.empty()) s["mixer_options"] = b.mixer_options;
  return s;
}

}  // namespace

CompareResult run_compare(const CompareOptions& o) {
  CompareSpec spec;
  spec.app = "lra";
  std::vector<std::string> built;
  for (const models::LraFamily& f : models::lra_families())
    if (f.unavailable.empty()) built.push_back(f.name);
  spec.models = o.models == "all" ? built : parse_name_list(o.models, models::lra_model_names(), "--models");
  spec.mixers = parse_name_list(o.mixers, models::lra_all_mixer_names(), "--mixers");
  std::vector<std::string> registry_mixers;
  for (const std::string& m : spec.mixers)
    if (registry_mixer(m)) registry_mixers.push_back(m);
  if (!o.base.mixer_options.empty()) check_mixer_options_declared(registry_mixers, o.base.mixer_options);
  const bool grid = task_info(o.base.task).pixels;
  spec.skip_reason = [grid, &o](const std::string& model, const std::string& mixer) -> std::string {
    const models::LraFamily& f = models::lra_family(model, false);
    if (!f.unavailable.empty()) return f.unavailable;
    const std::string mismatch = models::lra_mixer_mismatch(model, mixer);
    if (!mismatch.empty()) return mismatch;
    if (!grid && registry_mixer(mixer) && nn::mixer_info(mixer).needs_grid)
      return fmt::format("mixer {} needs a token grid, which task {} has not (only the pixel tasks)", mixer,
                         o.base.task);
    return "";
  };
  spec.seeds = seed_list(o.seeds);
  spec.model_in_folder_name = true;
  spec.unit = "tokens", spec.per_sample = "sample";
  spec.out_dir = o.out_dir.empty() ? fs::path("runs") / fmt::format("lra-compare-{}-{}", o.base.task, o.base.preset)
                                   : fs::path(o.out_dir);
  spec.title = fmt::format("lra compare: task {}, preset {}, {} seed(s)", o.base.task, o.base.preset, o.seeds);
  spec.settings = settings_json(o);
  spec.command = o.command;
  spec.quiet = o.base.quiet;
  spec.train = [&o](const CompareRun& run, bool resume) {
    TrainOptions t = o.base;
    t.model = run.model;
    t.mixer = run.mixer;
    t.mixer_options = registry_mixer(run.mixer) ? mixer_options_for(run.mixer, o.base.mixer_options)
                                                : std::map<std::string, std::string>{};
    t.seed = run.seed;
    t.out_dir = run.dir.string();
    t.resume = resume;
    t.overwrite = !resume;
    t.max_steps = 0;
    return run_training(t);
  };
  spec.cost = [](const CompareRun& run) {
    std::ifstream f(run.dir / "config.json", std::ios::binary);
    MIXGRAD_CHECK(f.good(), "lra compare: {} has no config.json", run.dir.string());
    const Json cfg = Json::parse(f);
    return lra_cost(models::LraConfig::from_metadata(cfg.at("model").get<std::map<std::string, std::string>>()));
  };
  return run_comparison(spec);
}

}  // namespace mixgrad::app::lra
