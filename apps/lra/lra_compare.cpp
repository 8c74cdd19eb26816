// `lra compare`: models × mixers on one task with the same preset, data and recipe over several seeds, through the
// shared comparison (apps/common/compare.h); and the LRA Transformer's parameter and FLOP count.
#include <fmt/format.h>

#include <fstream>

#include "apps/common/flops.h"
#include "apps/lra/lra_app.h"
#include "nn/mixer.h"

namespace mixgrad::app::lra {

namespace fs = std::filesystem;

ModelCost lra_cost(const models::LraConfig& cfg) {
  models::LraTransformer model(cfg);
  const int64_t n = cfg.seq_len(), inner = cfg.qkv_dim > 0 ? cfg.qkv_dim : cfg.embed_dim;
  const double encodes = cfg.dual != "none" ? 2.0 : 1.0;  // Retrieval encodes both documents
  ModelCost c;
  c.params = model.num_parameters();
  // Embeddings are look-ups (tokens) or element-wise (pixels); every Linear of the blocks acts on each token, the
  // head on the pooled vector(s).
  c.flops = encodes * double(n) * linear_flops_per_row(child_module(model, "blocks")) +
            linear_flops_per_row(child_module(model, "head"));
  const std::optional<double> mixing = mixer_mixing_flops(cfg.mixer, n, inner, cfg.causal);
  c.flops += encodes * double(cfg.depth) * mixing.value_or(0.0);
  c.flops_complete = mixing.has_value();
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
  spec.models = parse_name_list(o.models, {"transformer"}, "--models");
  spec.mixers = parse_name_list(o.mixers, nn::mixer_names(), "--mixers");
  check_mixer_options_declared(spec.mixers, o.base.mixer_options);
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
    t.mixer_options = mixer_options_for(run.mixer, o.base.mixer_options);
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
