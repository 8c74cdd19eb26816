// `vit compare`: the same preset, data and recipe trained with every listed mixer over several seeds, through the
// shared comparison (apps/common/compare.h); and the ViT's parameter and FLOP count.
#include <fmt/format.h>

#include <fstream>

#include "apps/common/flops.h"
#include "apps/vit/vit_app.h"
#include "nn/mixer.h"

namespace mixgrad::app {

namespace fs = std::filesystem;

ModelCost vit_cost(const models::ViTConfig& cfg) {
  models::VisionTransformer model(cfg);
  const bool cls = cfg.pool == "token" || cfg.csp_layout;
  const int64_t patches = cfg.num_patches(), n = patches + (cls ? 1 : 0);
  const nn::Module& blocks = child_module(model, "blocks");
  ModelCost c;
  c.params = model.num_parameters();
  // Patch projection: [N_p, C·p²] · [C·p², D]; the blocks on each token (mixers by their own formulas); the head on
  // one vector.
  c.flops = 2.0 * double(patches) * double(cfg.in_chans * cfg.patch_size * cfg.patch_size) * double(cfg.embed_dim);
  const FlopCount in_blocks = token_flops(blocks, n);
  c.flops += in_blocks.flops + nn::linear_flops_per_row(child_module(model, "head"));
  c.flops_complete = in_blocks.complete;
  return c;
}

namespace {

Json read_config(const fs::path& dir) {
  std::ifstream f(dir / "config.json", std::ios::binary);
  MIXGRAD_CHECK(f.good(), "vit compare: {} has no config.json", dir.string());
  return Json::parse(f);
}

// The flags every run shares, for compare.json.
Json settings_json(const CompareOptions& o, const std::string& dataset) {
  const TrainOptions& b = o.base;
  Json s{{"preset", b.preset}, {"dataset", dataset}, {"data", b.data_dir}, {"seeds", o.seeds}, {"device", b.device}};
  auto put = [&s](const char* k, const auto& v) {
    if (v) s[k] = *v;
  };
  put("epochs", b.epochs), put("updates", b.updates), put("batch_size", b.batch_size), put("lr", b.lr);
  put("weight_decay", b.weight_decay), put("warmup", b.warmup), put("embed_dim", b.model.embed_dim);
  put("depth", b.model.depth), put("heads", b.model.num_heads), put("mlp_dim", b.model.mlp_hidden);
  if (b.train_limit) s["train_limit"] = b.train_limit;
  if (b.val_limit) s["val_limit"] = b.val_limit;
  if (b.full_train) s["full_train"] = true;
  if (b.test_limit) s["test_limit"] = b.test_limit;
  if (!b.mixer_options.empty()) s["mixer_options"] = b.mixer_options;
  return s;
}

}  // namespace

CompareResult run_compare(const CompareOptions& o) {
  CompareSpec spec;
  spec.app = "vit";
  spec.mixers = parse_name_list(o.mixers, nn::mixer_names(), "--mixers");
  check_mixer_options_declared(spec.mixers, o.base.mixer_options);
  spec.models = {"vit"};
  spec.seeds = seed_list(o.seeds);
  spec.out_dir = o.out_dir.empty() ? fs::path("runs") / ("compare-" + o.base.preset) : fs::path(o.out_dir);
  const std::string dataset = o.base.dataset.empty() ? preset_dataset_name(o.base.preset) : o.base.dataset;
  spec.title = fmt::format("vit compare: preset {}, {}, {} seed(s)", o.base.preset, dataset, o.seeds);
  spec.settings = settings_json(o, dataset);
  spec.quiet = o.base.quiet;
  spec.command = o.command;
  if (o.base.full_train) spec.selection = "final weights (--full-train: no validation split)";
  spec.train = [&o](const CompareRun& run, bool resume) {
    TrainOptions t = o.base;
    t.mixer = run.mixer;
    t.mixer_options = mixer_options_for(run.mixer, o.base.mixer_options);
    t.seed = run.seed;
    t.out_dir = run.dir.string();
    t.resume = resume;
    t.overwrite = !resume;
    t.max_steps = 0;
    return run_training(t);
  };
  spec.cost = [](const CompareRun& run) {
    const Json cfg = read_config(run.dir);
    return vit_cost(models::ViTConfig::from_metadata(cfg.at("model").get<std::map<std::string, std::string>>()));
  };
  return run_comparison(spec);
}

}  // namespace mixgrad::app
