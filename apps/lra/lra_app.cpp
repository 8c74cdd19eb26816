// The `lra` app: data resolution (release folders or the generated cache), the training task handed to the shared
// trainer, and eval / predict / info / generate.
#include "apps/lra/lra_app.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <exception>

#include "apps/common/distributed.h"
#include "apps/common/options.h"
#include "apps/data/loader.h"
#include "apps/data/sequence_batches.h"
#include "engine/attention.h"
#include "engine/file_io.h"
#include "engine/mixgrad.h"
#include "nn/mixer.h"
#include "nn/serialize.h"

namespace mixgrad::app::lra {

namespace fs = std::filesystem;
using nn::Metadata;

void ModelFlags::apply(models::LraConfig& m) const {
  if (embed_dim) m.embed_dim = *embed_dim;
  if (depth) m.depth = *depth;
  if (num_heads) m.num_heads = *num_heads;
  if (qkv_dim) m.qkv_dim = *qkv_dim;
  if (mlp_dim) m.mlp_dim = *mlp_dim;
  if (max_len) m.max_len = *max_len;
  if (dropout) m.dropout = *dropout;
  if (attn_dropout) m.attn_dropout = *attn_dropout;
  if (!pool.empty()) m.pool = pool;
  if (!pos.empty()) m.pos = pos;
  if (!embedding.empty()) m.input = embedding;
  if (!dual.empty()) m.dual = dual;
  if (causal) m.causal = true;
  if (head_dim) m.head_dim = *head_dim;
  if (hidden_dropout) m.hidden_dropout = *hidden_dropout;
  if (zdim) m.zdim = *zdim;
  if (hdim) m.hdim = *hdim;
  if (ema_ndim) m.ema_ndim = *ema_ndim;
  if (truncation) m.truncation = *truncation;
  if (chunk) m.chunk = *chunk;
  if (lstm_hidden) m.lstm_hidden = *lstm_hidden;
  if (prenorm) m.prenorm = *prenorm;
  if (!norm.empty()) m.norm = norm;
  if (!attn_fn.empty()) m.attn_fn = attn_fn;
  if (!lstm_pool.empty()) m.lstm_pool = lstm_pool;
}

// The LRA app's default for the CSP mixer on sequences (spec csp.md §4.2): the exponential cross-layer schedule.
const std::map<std::string, std::string>& app_mixer_defaults() {
  static const std::map<std::string, std::string> d = {{"csp_schedule", "exponential"}};
  return d;
}

std::string resolve_mixer(const std::string& model, const std::string& mixer) {
  return mixer.empty() ? models::lra_family(model, false).default_mixer : mixer;
}

std::map<std::string, std::string> run_mixer_options(const std::string& mixer,
                                                     const std::map<std::string, std::string>& given) {
  const std::vector<std::string> registry = nn::mixer_names();
  if (std::find(registry.begin(), registry.end(), mixer) == registry.end()) {
    MIXGRAD_CHECK(given.empty(), "--mixer-opt {}: mixer {} takes no options", given.begin()->first, mixer);
    return {};
  }
  // Every option written out (the app's defaults included), so the checkpoint names them all.
  return nn::resolve_mixer_options(mixer, given, app_mixer_defaults()).values();
}

GeneratorConfig generator_config(const std::string& task, const std::string& preset, const DataFlags& data,
                                 const GenerateOptions* flags) {
  LraPreset p = lra_preset(task, preset);
  GeneratorConfig g = p.generator;
  const TaskInfo& info = task_info(task);
  if (!data.difficulty.empty() && info.pixels && info.generated) {
    const int64_t n = g.pathfinder.num_images;
    g.pathfinder = data::pathfinder_preset(int(info.image_size), data.difficulty);
    g.pathfinder.num_images = n;
  }
  if (data.samples) {
    MIXGRAD_CHECK(*data.samples >= 10, "--samples {} is too small (at least 10)", *data.samples);
    // ListOps: the train count; validation and test keep their ratio to it. Pathfinder: images in the folder.
    const double scale = double(*data.samples) / double(g.listops.train);
    g.listops.val = std::max<int64_t>(1, int64_t(double(g.listops.val) * scale));
    g.listops.test = std::max<int64_t>(1, int64_t(double(g.listops.test) * scale));
    g.listops.train = *data.samples;
    g.pathfinder.num_images = *data.samples;
  }
  if (flags) {
    if (flags->seed) g.listops.seed = g.pathfinder.seed = *flags->seed;
    if (flags->min_length) g.listops.min_length = *flags->min_length;
    if (flags->max_length) g.listops.max_length = *flags->max_length;
    if (flags->max_depth) g.listops.max_depth = int(*flags->max_depth);
    if (flags->max_args) g.listops.max_args = int(*flags->max_args);
  }
  return g;
}

namespace {

AttentionBackend attention_backend_named(const std::string& name) {
  if (name == "fused") return AttentionBackend::fused;
  if (name == "composite") return AttentionBackend::composite;
  return AttentionBackend::automatic;
}

// The folder to read: --data, or the generated data set in the cache (made on first use).
fs::path resolve_data_dir(const TaskInfo& t, const DataFlags& d, const GeneratorConfig& g, bool quiet) {
  if (!d.data_dir.empty()) return fs::absolute(d.data_dir);
  MIXGRAD_CHECK(t.generated, "task {} needs --data: {} (the project cannot generate this data set)", t.name,
                t.data_layout);
  const fs::path cache = d.cache_dir.empty() ? default_cache_dir() : fs::path(d.cache_dir);
  const auto generate = [&] {
    return fs::absolute(ensure_generated(t.name, g, cache, [&](const std::string& s) {
      if (!quiet) std::printf("%s\n", s.c_str()), std::fflush(stdout);
    }));
  };
  // Data-parallel runs: rank 0 generates the cache, the other ranks then find it (the ranks share the cache folder).
  dist::Communicator& comm = dist::current();
  if (comm.is_root()) {
    fs::path dir;
    std::exception_ptr error;  // the other ranks wait at the barrier even when generating fails
    try {
      dir = generate();
    } catch (...) {
      error = std::current_exception();
    }
    comm.barrier();
    if (error) std::rethrow_exception(error);
    return dir;
  }
  comm.barrier();
  quiet = true;
  return generate();
}

// A batch on the device: token ids as int64 (or intensities as float32 for a pixel embedding), lengths int32.
struct DeviceBatch {
  Tensor tokens, lengths, tokens2, lengths2;
};
DeviceBatch to_device(const data::Batch& b, Device dev, bool pixels) {
  auto tokens = [&](const std::vector<int32_t>& t, int64_t len) {
    const Tensor x = from_vector(t, {b.size, len}).to(dev);
    return x.to(pixels ? DType::f32 : DType::i64);
  };
  DeviceBatch d;
  d.tokens = tokens(b.tokens, b.seq_len);
  d.lengths = from_vector(b.lengths, {b.size}).to(dev);
  if (!b.tokens2.empty()) {
    d.tokens2 = tokens(b.tokens2, b.seq_len2);
    d.lengths2 = from_vector(b.lengths2, {b.size}).to(dev);
  }
  return d;
}

LogitsFn logits_fn(models::LraModel& m, Device dev) {
  const bool pixels = m.config().input == "pixels";
  return [&m, dev, pixels](const data::Batch& b) {
    const DeviceBatch d = to_device(b, dev, pixels);
    return m.forward(d.tokens, d.lengths, d.tokens2, d.lengths2);
  };
}

int64_t valid_tokens(const data::Batch& b) {
  int64_t n = 0;
  for (int32_t l : b.lengths) n += l;
  for (int32_t l : b.lengths2) n += l;
  return n;
}

// The data a checkpoint records beside its model config ("data.*"), so eval and predict find them again.
Metadata data_metadata(const fs::path& dir, const std::string& difficulty, uint64_t split_seed) {
  return {{"app", "lra"},
          {"data.dir", dir.string()},
          {"data.difficulty", difficulty},
          {"data.split_seed", std::to_string(split_seed)}};
}

// Everything a run needs before the trainer starts.
struct LraRun {
  models::LraConfig cfg;
  Recipe recipe;
  std::string preset;
  fs::path data_dir;
  std::string difficulty;
  uint64_t split_seed = 42;
  std::optional<ResumeState> resume;
  TaskData data;
};

Metadata recipe_metadata(const LraRun& r) {
  Metadata m = r.recipe.to_metadata();
  m["recipe.preset"] = r.preset;
  m["recipe.task"] = r.cfg.task;
  return m;
}

void fresh_run(const TrainOptions& o, LraRun& r) {
  const std::string mixer = resolve_mixer(o.model, o.mixer);
  if (const std::string why = models::lra_mixer_mismatch(o.model, mixer); !why.empty())
    throw Error(fmt::format("--mixer {}: {}", mixer, why));
  const LraPreset p = lra_preset(o.task, o.preset, o.model, mixer);
  r.preset = o.preset;
  r.cfg = p.model;
  r.cfg.mixer_options = run_mixer_options(r.cfg.mixer, o.mixer_options);
  o.model_flags.apply(r.cfg);
  Recipe& rc = r.recipe;
  rc = p.recipe;
  if (o.epochs) rc.epochs = *o.epochs, rc.updates = 0;
  if (o.updates) rc.updates = *o.updates;
  if (o.batch_size) rc.batch_size = *o.batch_size;
  if (o.lr) rc.lr = *o.lr;
  if (o.weight_decay) rc.weight_decay = *o.weight_decay;
  if (o.clip_norm) rc.clip_norm = *o.clip_norm;
  if (o.label_smoothing) rc.label_smoothing = *o.label_smoothing;
  if (o.eval_every) rc.eval_every = *o.eval_every;
  if (!o.schedule.empty()) rc.schedule = o.schedule;
  rc.seed = o.seed;
  if (o.train_limit) rc.train_limit = o.train_limit;
  if (o.val_limit) rc.val_limit = o.val_limit;
  r.difficulty = o.data.difficulty.empty() ? p.difficulty : o.data.difficulty;
  r.split_seed = o.data.split_seed ? *o.data.split_seed : p.split_seed;
  const GeneratorConfig g = o.generator ? *o.generator : generator_config(o.task, o.preset, o.data);
  r.data_dir = resolve_data_dir(task_info(o.task), o.data, g, o.quiet);
  r.data = load_task_data(task_info(o.task), r.data_dir, r.cfg.max_len, r.difficulty, r.split_seed);
  const int64_t n_train = rc.train_limit > 0 ? std::min<int64_t>(rc.train_limit, r.data.train_idx.size())
                                             : int64_t(r.data.train_idx.size());
  if (o.warmup) {
    rc.warmup_steps = *o.warmup;
  } else if (p.warmup_epochs > 0) {
    rc.warmup_steps =
        checked_count_product(p.warmup_epochs, (n_train + rc.batch_size - 1) / rc.batch_size, "warm-up steps");
  }
}

void resumed_run(const TrainOptions& o, const fs::path& out, LraRun& r) {
  r.resume = read_resume_state(out);
  const ResumeState& rs = *r.resume;
  const std::string wf = rs.weights_path.string(), sf = rs.state_path.string();
  r.recipe = Recipe::from_metadata(rs.state_meta, sf);
  r.preset = meta_get(rs.state_meta, "recipe.preset", sf);
  try {
    r.cfg = models::LraConfig::from_metadata(rs.weights_meta);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: not an lra checkpoint: {}", wf, e.what()));
  }
  r.data_dir =
      o.data.data_dir.empty() ? fs::path(meta_get(rs.weights_meta, "data.dir", wf)) : fs::path(o.data.data_dir);
  r.difficulty = meta_get(rs.weights_meta, "data.difficulty", wf);
  r.split_seed = meta_u64(rs.weights_meta, "data.split_seed", wf);
  r.data = load_task_data(task_info(r.cfg.task), r.data_dir, r.cfg.max_len, r.difficulty, r.split_seed);
}

std::vector<int64_t> first_n(const std::vector<int64_t>& v, int64_t n) {
  if (n <= 0 || n >= int64_t(v.size())) return v;
  return {v.begin(), v.begin() + n};
}

// The padding of a task's batches: pixel tasks are fixed length; text batches pad to their longest sample.
data::SequencePadding padding_for(const models::LraConfig& cfg) {
  return data::SequencePadding{task_info(cfg.task).pixels ? cfg.max_len : 0, 1};
}

Json read_report_json(const TaskData& d) {
  return Json{{"records", d.report.records},
              {"skipped", d.report.skipped},
              {"problems", d.report.problems},
              {"truncated", d.truncated},
              {"split", d.split}};
}

TrainTask make_task(const LraRun& r, models::LraModel& model, Device dev, const data::Dataset& train_data,
                    const data::Dataset& test_data, const TrainOptions& o) {
  const TaskInfo& info = task_info(r.cfg.task);
  TrainTask t;
  t.app = "lra";
  t.model = &model;
  t.logits = logits_fn(model, dev);
  t.num_classes = r.cfg.num_classes;
  t.class_names = info.class_names;
  t.weights_metadata = r.cfg.to_metadata();
  for (const auto& [k, v] : data_metadata(r.data_dir, r.difficulty, r.split_seed)) t.weights_metadata[k] = v;
  t.recipe_metadata = recipe_metadata(r);
  t.train_data = &train_data, t.test_data = &test_data;
  t.train_idx = first_n(r.data.train_idx, r.recipe.train_limit);
  t.val_idx = first_n(r.data.val_idx, r.recipe.val_limit);
  t.test_idx = first_n(r.data.test_idx, o.test_limit);
  t.unit = "tokens", t.unit_short = "tok";
  t.units = valid_tokens;
  t.eval_batch_size = 64;
  Json recipe;
  for (const auto& [k, v] : recipe_metadata(r)) recipe[k.substr(7)] = v;
  t.config = Json{{"task", r.cfg.task},
                  {"model", r.cfg.to_metadata()},
                  {"recipe", recipe},
                  {"preset", r.preset},
                  {"mixer", r.cfg.mixer},
                  {"data", data_metadata(r.data_dir, r.difficulty, r.split_seed)},
                  {"data_read", read_report_json(r.data)}};
  t.summary = Json{{"title", fmt::format("LRA {} / {} / {} / {}", r.cfg.task, r.preset, r.cfg.model, r.cfg.mixer)},
                   {"task", r.cfg.task},
                   {"model", r.cfg.model},
                   {"preset", r.preset},
                   {"mixer", r.cfg.mixer},
                   {"split", r.data.split},
                   {"data_dir", r.data_dir.string()},
                   {"skipped_records", r.data.report.skipped}};
  t.describe = fmt::format(
      "lra: {} / {} / {} / {}: {} parameters, device {}, data {} ({} train, {} val, {} "
      "test samples{}{})",
      r.cfg.task, r.preset, r.cfg.model, r.cfg.mixer, model.num_parameters(), dev.str(), r.data_dir.string(),
      t.train_idx.size(), t.val_idx.size(), t.test_idx.size(),
      r.data.report.skipped ? fmt::format(", {} records skipped", r.data.report.skipped) : "",
      r.data.truncated ? fmt::format(", {} cut to {} tokens", r.data.truncated, r.cfg.max_len) : "");
  return t;
}

}  // namespace

TrainSummary run_training(const TrainOptions& o) {
  (void)models::lra_family(o.model, true);  // unknown or not built yet: the error lists the families
  const fs::path out = o.out_dir.empty() ? fs::path("runs") / fmt::format("lra-{}-{}-{}-{}", o.task, o.preset, o.model,
                                                                          resolve_mixer(o.model, o.mixer))
                                         : fs::path(o.out_dir);
  const Device dev = resolve_device(o.device);
  set_matmul_precision(precision_from_flags(o.precision, o.tf32));
  const AttentionBackendGuard attention_backend(attention_backend_named(o.attention));
  LraRun r;
  if (o.resume) {
    resumed_run(o, out, r);
  } else {
    check_fresh_run_dir(out, o.overwrite);
    fresh_run(o, r);
  }
  r.cfg.validate();
  r.recipe.validate();
  manual_seed(r.recipe.seed);
  const std::unique_ptr<models::LraModel> model = models::make_lra_model(r.cfg);
  model->to(dev);
  const data::SequenceBatches train_data(r.data.train_set, padding_for(r.cfg));
  const data::SequenceBatches separate_test(r.data.test_in_train_set ? r.data.train_set : r.data.test_set,
                                            padding_for(r.cfg));
  const TrainTask t = make_task(r, *model, dev, train_data, separate_test, o);
  RunOptions run;
  run.out_dir = out;
  run.device = dev;
  run.log_every = o.log_every;
  run.max_steps = o.max_steps;
  run.quiet = o.quiet;
  run.adaptive_threads = true;
  run.save_hook = o.save_hook;
  return train(t, r.recipe, run, r.resume ? &*r.resume : nullptr);
}

// ---- eval / predict -------------------------------------------------------------------------------------------
namespace {

struct Loaded {
  std::unique_ptr<models::LraModel> model;
  Metadata meta;
  TaskData data;
  std::vector<int64_t> indices;
  const data::SequenceSet* set = nullptr;
};

Loaded load_for_eval(const EvalOptions& o, Device dev) {
  MIXGRAD_CHECK(!o.checkpoint.empty(), "--checkpoint FILE is required");
  MIXGRAD_CHECK(fs::exists(o.checkpoint), "checkpoint {} does not exist", o.checkpoint);
  Loaded l;
  nn::NamedTensors tensors;
  try {
    tensors = nn::load_tensors(o.checkpoint, &l.meta);
  } catch (const std::exception& e) {
    throw Error(fmt::format("cannot read checkpoint {}: {}", o.checkpoint, e.what()));
  }
  if (const auto bad = first_non_finite(tensors))
    throw Error(
        fmt::format("checkpoint {}: {}; non-finite weights give no meaningful predictions", o.checkpoint, *bad));
  models::LraConfig cfg;
  try {
    cfg = models::LraConfig::from_metadata(l.meta);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: not an lra checkpoint: {}", o.checkpoint, e.what()));
  }
  l.model = models::make_lra_model(cfg);
  try {
    l.model->load_state_dict(tensors, true);
  } catch (const std::exception& e) {
    throw Error(fmt::format("checkpoint {} does not fit its own config: {}", o.checkpoint, e.what()));
  }
  l.model->to(dev);
  l.model->eval();
  const fs::path dir =
      o.data.data_dir.empty() ? fs::path(meta_get(l.meta, "data.dir", o.checkpoint)) : fs::path(o.data.data_dir);
  const std::string difficulty =
      o.data.difficulty.empty() ? meta_get(l.meta, "data.difficulty", o.checkpoint) : o.data.difficulty;
  const uint64_t seed = o.data.split_seed ? *o.data.split_seed : meta_u64(l.meta, "data.split_seed", o.checkpoint);
  l.data = load_task_data(task_info(cfg.task), dir, cfg.max_len, difficulty, seed);
  MIXGRAD_CHECK(o.split == "train" || o.split == "val" || o.split == "test", "--split {}: expected train, val or test",
                o.split);
  l.indices = o.split == "train" ? l.data.train_idx : o.split == "val" ? l.data.val_idx : l.data.test_idx;
  l.set = o.split == "test" && !l.data.test_in_train_set ? &l.data.test_set : &l.data.train_set;
  l.indices = first_n(l.indices, o.limit);
  return l;
}

}  // namespace

EvalResult run_eval(const EvalOptions& o) {
  const Device dev = resolve_device(o.device);
  Loaded l = load_for_eval(o, dev);
  const data::SequenceBatches batches(*l.set, padding_for(l.model->config()));
  const EvalResult r =
      evaluate(*l.model, logits_fn(*l.model, dev), l.model->config().num_classes, batches, l.indices, o.batch_size);
  if (!o.quiet) {
    std::printf("%s accuracy: %.4f (%lld/%lld, task %s, loss %.4f)\n", o.split.c_str(), r.accuracy,
                (long long)r.correct, (long long)r.n, l.model->config().task.c_str(), r.loss);
    const auto& names = task_info(l.model->config().task).class_names;
    for (size_t c = 0; c < r.per_class_accuracy.size(); ++c)
      std::printf("  class %zu %-16s %.2f%%\n", c, names[c].c_str(), 100.0 * r.per_class_accuracy[c]);
  }
  return r;
}

int64_t run_predict(const PredictOptions& o) {
  MIXGRAD_CHECK(!o.out.empty(), "--out FILE is required");
  io::require_replaceable(o.out);  // before any work: --out must be a regular file or nothing (not /dev/full)
  const Device dev = resolve_device(o.eval.device);
  Loaded l = load_for_eval(o.eval, dev);
  const data::SequenceBatches batches(*l.set, padding_for(l.model->config()));
  data::LoaderConfig lc;
  lc.batch_size = o.eval.batch_size;
  lc.shuffle = false;
  lc.augment = false;
  NoGradGuard ng;
  data::BatchLoader loader(batches, l.indices, lc);
  const LogitsFn logits = logits_fn(*l.model, dev);
  std::vector<Tensor> parts;
  std::vector<int64_t> labels, indices;
  while (auto b = loader.next()) {
    parts.push_back(logits(*b).to(kCPU));
    labels.insert(labels.end(), b->labels.begin(), b->labels.end());
    indices.insert(indices.end(), b->indices.begin(), b->indices.end());
  }
  MIXGRAD_CHECK(!parts.empty(), "predict: the {} split holds no samples", o.eval.split);
  const int64_t n = int64_t(labels.size());
  nn::save_tensors(o.out,
                   {{"logits", parts.size() == 1 ? parts[0] : cat(parts, 0)},
                    {"labels", from_vector(labels, {n})},
                    {"indices", from_vector(indices, {n})}},
                   {{"checkpoint", o.eval.checkpoint}, {"split", o.eval.split}, {"task", l.model->config().task}});
  return n;
}

// ---- info / generate ------------------------------------------------------------------------------------------
namespace {

std::string recipe_line(const LraPreset& p) {
  return fmt::format(
      "  recipe: batch {}, lr {} ({}), warm-up {}, weight decay {}, {}\n", p.recipe.batch_size, p.recipe.lr,
      p.recipe.schedule,
      p.warmup_epochs > 0 ? fmt::format("{} epoch", p.warmup_epochs) : fmt::format("{} steps", p.recipe.warmup_steps),
      p.recipe.weight_decay,
      p.recipe.updates > 0 ? fmt::format("{} updates", p.recipe.updates) : fmt::format("{} epochs", p.recipe.epochs));
}

std::string transformer_lines(const models::LraConfig& cfg) {
  std::string s =
      fmt::format("  transformer: {} {} of length <= {}{}, dim {}, depth {}, heads {}, qkv {}, MLP {}, {} classes\n",
                  cfg.input == "pixels" ? "real-valued pixels" : "tokens",
                  cfg.input == "pixels" ? "" : fmt::format("(vocab {})", cfg.vocab_size), cfg.max_len,
                  cfg.pool == "cls" ? " + class token" : "", cfg.embed_dim, cfg.depth, cfg.num_heads,
                  cfg.qkv_dim > 0 ? cfg.qkv_dim : cfg.embed_dim, cfg.mlp_dim, cfg.num_classes);
  s += fmt::format("  pool {}, positions {}, dropout {} (attention {}), LayerNorm eps {}{}\n", cfg.pool, cfg.pos,
                   cfg.dropout, cfg.attn_dropout, cfg.ln_eps,
                   cfg.dual != "none" ? fmt::format(", dual encoder ({})", cfg.dual) : "");
  return s;
}

}  // namespace

std::string model_info(const std::string& task, const std::string& preset, const std::string& mixer,
                       const ModelFlags& flags, const std::map<std::string, std::string>& mixer_options,
                       const std::string& model) {
  const std::string resolved = resolve_mixer(model, mixer);
  if (const std::string why = models::lra_mixer_mismatch(model, resolved); !why.empty())
    throw Error(fmt::format("--mixer {}: {}", resolved, why));
  const LraPreset p = lra_preset(task, preset, model, resolved);
  models::LraConfig cfg = p.model;
  cfg.mixer_options = run_mixer_options(cfg.mixer, mixer_options);
  flags.apply(cfg);
  cfg.validate();
  const std::unique_ptr<models::LraModel> built = models::make_lra_model(cfg);
  const TaskInfo& t = task_info(task);
  std::string s = fmt::format("LRA task {} ({}), preset {}: {}\n", task, t.description, preset, p.note);
  s += cfg.model == "transformer" ? transformer_lines(cfg) : built->describe();
  s += recipe_line(p);
  for (const auto& [k, v] : cfg.resolved_mixer_options()) s += fmt::format("  mixer option {} = {}\n", k, v);
  if (cfg.model == "transformer") s += describe_mixer(cfg.mixer);
  return s + parameter_listing(*built);
}

fs::path run_generate(const GenerateOptions& o) {
  const GeneratorConfig g = generator_config(o.task, o.preset, o.data, &o);
  auto say = [&](const std::string& s) {
    if (!o.quiet) std::printf("%s\n", s.c_str()), std::fflush(stdout);
  };
  if (!o.out_dir.empty()) {
    generate_task_data(o.task, g, o.out_dir, say);
    return o.out_dir;
  }
  const fs::path cache = o.data.cache_dir.empty() ? default_cache_dir() : fs::path(o.data.cache_dir);
  const fs::path dir = ensure_generated(o.task, g, cache, say);
  say(fmt::format("lra: {} data in {}", o.task, dir.string()));
  return dir;
}

}  // namespace mixgrad::app::lra
