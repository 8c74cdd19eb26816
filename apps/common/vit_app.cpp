// The `vit` app: training with checkpoints, exact resume, metrics and report; evaluation, prediction and info.
#include "apps/common/vit_app.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "apps/common/report.h"
#include "apps/data/cifar.h"
#include "apps/data/loader.h"
#include "apps/data/split.h"
#include "engine/attention.h"
#include "engine/mixgrad.h"
#include "nn/mixer.h"
#include "nn/optim/optimizer.h"
#include "nn/serialize.h"

namespace mixgrad::app {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nn::Metadata;
using nn::NamedTensors;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

Device resolve_device(const std::string& spec) { return spec == "auto" ? default_device() : Device::parse(spec); }

std::string join_floats(const std::vector<float>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ",";
    s += fmt::format("{}", v[i]);
  }
  return s;
}
std::vector<float> parse_floats(const std::string& s, const std::string& what) {
  std::vector<float> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t pos = 0;
      out.push_back(std::stof(item, &pos));
      MIXGRAD_CHECK(pos == item.size(), "bad number");
    } catch (const std::exception&) {
      throw Error(fmt::format("{}: '{}' is not a comma-separated list of numbers", what, s));
    }
  }
  MIXGRAD_CHECK(!out.empty(), "{} is empty", what);
  return out;
}
const std::string& meta_get(const Metadata& m, const std::string& key, const std::string& file) {
  auto it = m.find(key);
  MIXGRAD_CHECK(it != m.end(), "{}: metadata key '{}' is missing (not a vit checkpoint?)", file, key);
  return it->second;
}
double meta_double(const Metadata& m, const std::string& key, const std::string& file) {
  const std::string& s = meta_get(m, key, file);
  try {
    size_t pos = 0;
    const double v = std::stod(s, &pos);
    if (pos == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(fmt::format("{}: metadata key '{}' = '{}' is not a number", file, key, s));
}
int64_t meta_int(const Metadata& m, const std::string& key, const std::string& file) {
  const std::string& s = meta_get(m, key, file);
  try {
    size_t pos = 0;
    const long long v = std::stoll(s, &pos);
    if (pos == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(fmt::format("{}: metadata key '{}' = '{}' is not an integer", file, key, s));
}
uint64_t meta_u64(const Metadata& m, const std::string& key, const std::string& file) {
  const std::string& s = meta_get(m, key, file);
  try {
    size_t pos = 0;
    const unsigned long long v = std::stoull(s, &pos);
    if (pos == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(fmt::format("{}: metadata key '{}' = '{}' is not an unsigned integer", file, key, s));
}

// The resolved training recipe (preset defaults + flags); recorded in last_state.safetensors and config.json.
struct Recipe {
  std::string preset, dataset;
  int64_t epochs = 3, batch_size = 128, warmup_steps = 0, warmup_epochs = 0;
  double lr = 1e-3, min_lr = 0, weight_decay = 0.05, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, label_smoothing = 0;
  bool per_epoch_schedule = false;  // CSP: CosineAnnealingLR stepped once per epoch
  int64_t crop_padding = 2;
  bool flip = true;
  // Weight decay on every parameter (PyTorch's AdamW over one group, as the s-chh and CSP references train), or
  // not on biases, norm weights, pos_embed and cls_token (timm's exemptions).
  bool decay_1d = true;
  std::vector<float> mean{0.2860f}, stddev{0.3530f};
  uint64_t seed = 0;
  int64_t train_limit = 0, val_limit = 0;

  Metadata to_metadata() const {
    return {{"recipe.preset", preset},
            {"recipe.dataset", dataset},
            {"recipe.epochs", std::to_string(epochs)},
            {"recipe.batch_size", std::to_string(batch_size)},
            {"recipe.warmup_steps", std::to_string(warmup_steps)},
            {"recipe.lr", fmt::format("{}", lr)},
            {"recipe.min_lr", fmt::format("{}", min_lr)},
            {"recipe.weight_decay", fmt::format("{}", weight_decay)},
            {"recipe.decay_1d", decay_1d ? "1" : "0"},
            {"recipe.beta1", fmt::format("{}", beta1)},
            {"recipe.beta2", fmt::format("{}", beta2)},
            {"recipe.eps", fmt::format("{}", eps)},
            {"recipe.label_smoothing", fmt::format("{}", label_smoothing)},
            {"recipe.per_epoch_schedule", per_epoch_schedule ? "1" : "0"},
            {"recipe.crop_padding", std::to_string(crop_padding)},
            {"recipe.flip", flip ? "1" : "0"},
            {"recipe.mean", join_floats(mean)},
            {"recipe.std", join_floats(stddev)},
            {"recipe.seed", std::to_string(seed)},
            {"recipe.train_limit", std::to_string(train_limit)},
            {"recipe.val_limit", std::to_string(val_limit)}};
  }
  static Recipe from_metadata(const Metadata& m, const std::string& f) {
    Recipe r;
    r.preset = meta_get(m, "recipe.preset", f);
    r.dataset = meta_get(m, "recipe.dataset", f);
    r.epochs = meta_int(m, "recipe.epochs", f);
    r.batch_size = meta_int(m, "recipe.batch_size", f);
    r.warmup_steps = meta_int(m, "recipe.warmup_steps", f);
    r.lr = meta_double(m, "recipe.lr", f);
    r.min_lr = meta_double(m, "recipe.min_lr", f);
    r.weight_decay = meta_double(m, "recipe.weight_decay", f);
    // Checkpoints from before the key existed decayed every parameter.
    r.decay_1d = m.find("recipe.decay_1d") == m.end() || meta_int(m, "recipe.decay_1d", f) != 0;
    r.beta1 = meta_double(m, "recipe.beta1", f);
    r.beta2 = meta_double(m, "recipe.beta2", f);
    r.eps = meta_double(m, "recipe.eps", f);
    r.label_smoothing = meta_double(m, "recipe.label_smoothing", f);
    r.per_epoch_schedule = meta_int(m, "recipe.per_epoch_schedule", f) != 0;
    r.crop_padding = meta_int(m, "recipe.crop_padding", f);
    r.flip = meta_int(m, "recipe.flip", f) != 0;
    r.mean = parse_floats(meta_get(m, "recipe.mean", f), "recipe.mean");
    r.stddev = parse_floats(meta_get(m, "recipe.std", f), "recipe.std");
    r.seed = meta_u64(m, "recipe.seed", f);
    r.train_limit = meta_int(m, "recipe.train_limit", f);
    r.val_limit = meta_int(m, "recipe.val_limit", f);
    return r;
  }
  Json to_json() const {
    Json j;
    for (const auto& [k, v] : to_metadata()) j[k.substr(7)] = v;
    return j;
  }
};

std::string preset_dataset(const std::string& preset) {
  if (preset == "cifar10-paper") return "cifar10";
  if (preset == "cifar100-paper") return "cifar100";
  return "fashion-mnist";
}

data::ChannelStats dataset_stats(const std::string& ds) {
  if (ds == "mnist") return data::mnist_stats();
  if (ds == "cifar10") return data::cifar10_stats();
  if (ds == "cifar100") return data::cifar100_stats();
  return data::fashion_mnist_stats();
}

Recipe default_recipe(const std::string& preset, const std::string& dataset) {
  Recipe r;
  r.preset = preset;
  r.dataset = dataset;
  const data::ChannelStats st = dataset_stats(dataset);
  r.mean = st.mean, r.stddev = st.stddev;
  if (preset == "fmnist-small") {  // s-chh recipe (vit.md §5.4)
    r.epochs = 200, r.batch_size = 128, r.lr = 5e-4, r.weight_decay = 1e-3, r.min_lr = 1e-5, r.warmup_epochs = 10;
    r.crop_padding = 2;
    if (dataset == "fashion-mnist") r.mean = {0.5f}, r.stddev = {0.5f};
  } else if (preset == "cifar10-paper" || preset == "cifar100-paper") {  // CSP recipe (vit.md §3.2)
    r.epochs = 100, r.batch_size = 64, r.lr = 1e-4, r.weight_decay = 0, r.min_lr = 0, r.per_epoch_schedule = true;
    r.crop_padding = 4;
  } else {  // fmnist-tiny: vit.md §8's starting point, tuned to the 15-minute CPU budget (docs/benchmarks/vit-cpu.md):
           // 26 epochs at lr 2e-3 with flip and a 1-pixel random crop (without the crop the model overfits and
           // more epochs stop helping; a 2-pixel crop learns too slowly for this budget), no weight decay on
           // biases, norm weights and the position embedding / class token
    r.epochs = 26, r.batch_size = 128, r.lr = 2e-3, r.weight_decay = 0.05, r.warmup_steps = 200;
    r.decay_1d = false;
    r.crop_padding = 1;
  }
  r.flip = dataset != "mnist";  // never flip digits
  return r;
}

data::ChannelStats stats_of(const Recipe& r) { return {r.mean, r.stddev}; }

Metadata checkpoint_metadata(const models::ViTConfig& cfg, const Recipe& r) {
  Metadata m = cfg.to_metadata();
  m["normalize.mean"] = join_floats(r.mean);
  m["normalize.std"] = join_floats(r.stddev);
  m["dataset"] = r.dataset;
  return m;
}

Tensor images_tensor(const data::Batch& b, const data::ImageDataset& ds, Device dev) {
  return from_vector(b.images, {b.size, ds.channels, ds.height, ds.width}).to(dev);
}

EvalResult evaluate(models::VisionTransformer& model, const data::ImageDataset& ds, std::vector<int64_t> idx,
                    const data::ChannelStats& stats, Device dev, int64_t batch_size) {
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  const int64_t k = model.config().num_classes;
  EvalResult r;
  r.confusion.assign(size_t(k), std::vector<int64_t>(size_t(k), 0));
  data::LoaderConfig cfg;
  cfg.batch_size = batch_size;
  cfg.shuffle = false;
  cfg.augment = false;
  cfg.augmentation.stats = stats;
  data::BatchLoader loader(ds, std::move(idx), cfg);
  double loss_sum = 0;
  while (auto b = loader.next()) {
    Tensor logits = model.forward(images_tensor(*b, ds, dev));
    loss_sum += cross_entropy(logits, from_vector(b->labels, {b->size}).to(dev), -100, 0.0, "sum").item();
    const std::vector<int64_t> pred = argmax(logits, 1).to(kCPU).to_vector<int64_t>();
    for (int64_t i = 0; i < b->size; ++i) {
      const int64_t t = b->labels[size_t(i)], p = pred[size_t(i)];
      MIXGRAD_CHECK(t >= 0 && t < k, "label {} out of range for a {}-class model", t, k);
      ++r.confusion[size_t(t)][size_t(p)];
      r.correct += t == p;
      ++r.n;
    }
  }
  if (was_training) model.train();
  r.accuracy = r.n ? double(r.correct) / double(r.n) : 0.0;
  r.loss = r.n ? loss_sum / double(r.n) : 0.0;
  for (int64_t c = 0; c < k; ++c) {
    int64_t tot = 0;
    for (int64_t v : r.confusion[size_t(c)]) tot += v;
    r.per_class_accuracy.push_back(tot ? double(r.confusion[size_t(c)][size_t(c)]) / double(tot) : 0.0);
  }
  return r;
}

std::vector<int64_t> first_n(const std::vector<int64_t>& v, int64_t n) {
  if (n <= 0 || n >= int64_t(v.size())) return v;
  return {v.begin(), v.begin() + n};
}
std::vector<int64_t> iota_n(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = i;
  return v;
}

void check_model_matches(const models::ViTConfig& cfg, const data::ImageDataset& ds, const std::string& what) {
  MIXGRAD_CHECK(cfg.img_size == ds.height && cfg.img_size == ds.width && cfg.in_chans == ds.channels,
                "{}: the model takes {}x{}x{} images (channels x height x width) but the data set has {}x{}x{}", what,
                cfg.in_chans, cfg.img_size, cfg.img_size, ds.channels, ds.height, ds.width);
  MIXGRAD_CHECK(cfg.num_classes == ds.num_classes, "{}: the model has {} classes but the data set has {}", what,
                cfg.num_classes, ds.num_classes);
}


// The model config of a checkpoint (with a clear error naming the file).
models::ViTConfig config_from_checkpoint(const Metadata& m, const std::string& file) {
  try {
    return models::ViTConfig::from_metadata(m);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: not a vit checkpoint: {}", file, e.what()));
  }
}

}  // namespace

// ---- data sets ------------------------------------------------------------------------------------------------
data::ImageDataset load_dataset(const std::string& name, const std::string& dir, bool train) {
  if (name == "fashion-mnist")
    return data::load_mnist_like(dir.empty() ? data::default_fashion_mnist_dir() : fs::path(dir), train);
  MIXGRAD_CHECK(!dir.empty(), "--data DIR is required for --dataset {}", name);
  if (name == "mnist") return data::load_mnist_like(dir, train);
  if (name == "cifar10") return data::load_cifar10(dir, train);
  if (name == "cifar100") return data::load_cifar100(dir, train);
  throw Error(fmt::format("unknown data set '{}' (known: fashion-mnist, mnist, cifar10, cifar100)", name));
}

std::vector<std::string> class_names(const std::string& dataset, int64_t k) {
  std::vector<std::string> n;
  if (dataset == "fashion-mnist" && k == 10)
    n = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  else if (dataset == "cifar10" && k == 10)
    n = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  else
    for (int64_t i = 0; i < k; ++i) n.push_back(std::to_string(i));
  return n;
}

// ---- training -------------------------------------------------------------------------------------------------
namespace {
// Losses and predictions of the steps since the last flush, kept on the training device: reading them back each step
// would make the host wait for the GPU every step. flush() reads them in two copies, checks every loss (a non-finite
// one is an error naming its step; flushes happen before every checkpoint, so nothing diverged is ever saved) and
// returns the interval's sums.
class PendingSteps {
 public:
  struct Totals {
    double loss_sum = 0;  // Σ loss · batch size
    int64_t correct = 0, n = 0;
  };
  void add(Tensor loss, Tensor pred, const std::vector<int64_t>& labels, int64_t batch, int64_t global_step) {
    losses_.push_back(reshape(loss, {1}));
    preds_.push_back(std::move(pred));
    labels_.insert(labels_.end(), labels.begin(), labels.end());
    sizes_.push_back(batch);
    steps_.push_back(global_step);
  }
  Totals flush(int64_t epoch, int64_t steps_per_epoch, const std::string& last_checkpoint) {
    Totals t;
    if (losses_.empty()) return t;
    const std::vector<float> loss = cat(losses_, 0).to(kCPU).to_vector<float>();
    const std::vector<int64_t> pred = cat(preds_, 0).to(kCPU).to_vector<int64_t>();
    for (size_t i = 0; i < loss.size(); ++i) {
      if (!std::isfinite(loss[i]))
        throw Error(fmt::format(
            "training diverged: the loss is {} at epoch {}, global step {} ({} steps per epoch); nothing was saved "
            "after it; the last good checkpoint is {} (try a lower --lr)",
            loss[i], epoch, steps_[i] + 1, steps_per_epoch, last_checkpoint));
      t.loss_sum += double(loss[i]) * double(sizes_[i]);
      t.n += sizes_[i];
    }
    for (size_t i = 0; i < pred.size(); ++i) t.correct += pred[i] == labels_[i];
    losses_.clear(), preds_.clear(), labels_.clear(), sizes_.clear(), steps_.clear();
    return t;
  }

 private:
  std::vector<Tensor> losses_, preds_;
  std::vector<int64_t> labels_, sizes_, steps_;
};
}  // namespace

TrainSummary run_training(const TrainOptions& o) {
  const auto t_start = Clock::now();
  const fs::path out = o.out_dir.empty() ? fs::path("runs") / (o.preset + "-" + o.mixer) : fs::path(o.out_dir);
  const fs::path last_path = out / "last.safetensors", state_path = out / "last_state.safetensors",
                 best_path = out / "best.safetensors";
  auto say = [&](const std::string& s) {
    if (!o.quiet) std::printf("%s\n", s.c_str()), std::fflush(stdout);
  };
  MIXGRAD_CHECK(o.log_every >= 1, "--log-every must be at least 1");
  const Device dev = resolve_device(o.device);
  set_allow_tf32(o.tf32);
  const AttentionBackendGuard attention_backend(o.attention == "fused"       ? AttentionBackend::fused
                                                : o.attention == "composite" ? AttentionBackend::composite
                                                                             : AttentionBackend::automatic);

  // Model config and recipe: from the checkpoint when resuming, else preset + flags.
  models::ViTConfig cfg;
  Recipe rc;
  Metadata state_meta;
  NamedTensors state_tensors;
  if (o.resume) {
    MIXGRAD_CHECK(fs::exists(last_path) && fs::exists(state_path),
                  "--resume: {} has no last.safetensors + last_state.safetensors to resume from", out.string());
    state_tensors = nn::load_tensors(state_path, &state_meta);
    rc = Recipe::from_metadata(state_meta, state_path.string());
    Metadata last_meta;
    (void)nn::load_tensors(last_path, &last_meta);
    cfg = config_from_checkpoint(last_meta, last_path.string());
    MIXGRAD_CHECK(meta_get(last_meta, "train.global_step", last_path.string()) ==
                      meta_get(state_meta, "train.global_step", state_path.string()),
                  "--resume: {} (step {}) and {} (step {}) disagree; the run was interrupted while saving",
                  last_path.string(), last_meta["train.global_step"], state_path.string(),
                  state_meta["train.global_step"]);
  } else {
    MIXGRAD_CHECK(o.overwrite || !fs::exists(last_path),
                  "{} already holds a run; pass --resume to continue it, --overwrite to start again, or another --out",
                  out.string());
    cfg = o.model_override ? *o.model_override : models::vit_preset(o.preset);
    cfg.mixer = o.mixer;
    o.model.apply(cfg);
    const std::string ds = o.dataset.empty() ? preset_dataset(o.preset) : o.dataset;
    rc = default_recipe(o.preset, ds);
    if (o.epochs) rc.epochs = *o.epochs;
    if (o.batch_size) rc.batch_size = *o.batch_size;
    if (o.lr) rc.lr = *o.lr;
    if (o.weight_decay) rc.weight_decay = *o.weight_decay;
    if (o.label_smoothing) rc.label_smoothing = *o.label_smoothing;
    if (o.warmup) rc.warmup_steps = *o.warmup, rc.warmup_epochs = 0;
    if (o.crop_padding) rc.crop_padding = *o.crop_padding;
    if (o.flip) rc.flip = *o.flip && rc.dataset != "mnist";  // MNIST digits are never flipped
    if (o.decay_1d) rc.decay_1d = *o.decay_1d;
    rc.seed = o.seed;
    rc.train_limit = o.train_limit;
    rc.val_limit = o.val_limit;
  }
  MIXGRAD_CHECK(rc.epochs >= 1 && rc.batch_size >= 1, "epochs and batch size must be at least 1");

  // Data: validation split held out of training; the test set only for the final report.
  const data::ImageDataset train_ds = load_dataset(rc.dataset, o.data_dir, true);
  const data::ImageDataset test_ds = load_dataset(rc.dataset, o.data_dir, false);
  if (!o.resume) cfg.num_classes = train_ds.num_classes;
  cfg.validate();
  check_model_matches(cfg, train_ds, "--preset " + rc.preset);
  const data::TrainValSplit split = (rc.dataset == "cifar10" || rc.dataset == "cifar100")
                                        ? data::split_cifar(train_ds.n)
                                        : data::split_last_per_class(train_ds.labels, train_ds.num_classes, 500);
  const std::vector<int64_t> train_idx = first_n(split.train, rc.train_limit);
  const std::vector<int64_t> val_idx = first_n(split.val, rc.val_limit);
  const std::vector<int64_t> test_idx = first_n(iota_n(test_ds.n), o.test_limit);
  const int64_t steps_per_epoch = (int64_t(train_idx.size()) + rc.batch_size - 1) / rc.batch_size;
  const int64_t total_steps = steps_per_epoch * rc.epochs;
  if (rc.warmup_epochs > 0) rc.warmup_steps = rc.warmup_epochs * steps_per_epoch, rc.warmup_epochs = 0;

  // Model and optimiser (the seed fixes the initial weights; a resumed run then overwrites them).
  manual_seed(rc.seed);
  models::VisionTransformer model(cfg);
  model.to(dev);
  model.train();
  std::vector<bool> decay;
  if (!rc.decay_1d)
    for (const auto& [name, prm] : model.named_parameters())
      decay.push_back(!(prm.dim() <= 1 || name == "pos_embed" || name == "cls_token"));
  nn::AdamW opt(model.parameters(), {rc.lr, rc.beta1, rc.beta2, rc.eps, rc.weight_decay}, decay);
  const int64_t params = model.num_parameters();

  int64_t epoch = 0, step_in_epoch = 0, global_step = 0;
  double best_val = -1;
  if (o.resume) {
    nn::load_state_dict(model, last_path);
    NamedTensors optim_state;
    for (auto& [name, t] : state_tensors)
      if (name.rfind("optim.", 0) == 0) optim_state.emplace_back(name.substr(6), t);
    opt.load_state(optim_state);
    const std::string f = state_path.string();
    epoch = meta_int(state_meta, "train.epoch", f);
    step_in_epoch = meta_int(state_meta, "train.step_in_epoch", f);
    global_step = meta_int(state_meta, "train.global_step", f);
    best_val = meta_double(state_meta, "train.best_val_accuracy", f);
    set_generator_state({meta_u64(state_meta, "train.rng_seed", f), meta_u64(state_meta, "train.rng_offset", f)});
    MIXGRAD_CHECK(step_in_epoch >= 0 && step_in_epoch <= steps_per_epoch && epoch >= 0,
                  "{}: position epoch {} step {} does not fit {} steps per epoch", f, epoch, step_in_epoch,
                  steps_per_epoch);
  }
  fs::create_directories(out);

  // Metrics: on resume keep only the records up to the checkpoint's step.
  const fs::path metrics_path = out / "metrics.jsonl";
  Curves curves;
  auto add_curve = [&](const Json& r) {
    const double s = r.value("step", 0.0);
    const std::string kind = r.value("kind", "");
    if (kind == "train") {
      curves.train_loss.push_back({s, r.value("loss", 0.0)});
      curves.train_acc.push_back({s, r.value("accuracy", 0.0)});
    } else if (kind == "val") {
      curves.val_loss.push_back({s, r.value("loss", 0.0)});
      curves.val_acc.push_back({s, r.value("accuracy", 0.0)});
    }
  };
  if (o.resume) {
    std::string kept;
    for (const Json& r : read_metrics(metrics_path))
      if (r.value("step", int64_t(0)) <= global_step) kept += r.dump() + "\n", add_curve(r);
    write_text_atomic(metrics_path, kept);
  }
  MetricsLog metrics(metrics_path, o.resume);

  Json config_json{{"model", cfg.to_metadata()},
                   {"recipe", rc.to_json()},
                   {"preset", rc.preset},
                   {"mixer", cfg.mixer},
                   {"device", dev.str()},
                   {"params", params},
                   {"steps_per_epoch", steps_per_epoch},
                   {"total_steps", total_steps},
                   {"train_images", train_idx.size()},
                   {"val_images", val_idx.size()},
                   {"test_images", test_idx.size()},
                   {"checkpoint_layout",
                    "last/best.safetensors: weights + model metadata; last_state.safetensors: optim.* tensors, "
                    "recipe.* and train.* metadata"}};
  if (!o.resume) write_json_atomic(out / "config.json", config_json);

  say(fmt::format("vit: {} / {}: {} parameters, device {}, data {} ({} train, {} val, {} test images)", rc.preset,
                  cfg.mixer, params, dev.str(), rc.dataset, train_idx.size(), val_idx.size(), test_idx.size()));
  say(fmt::format("vit: {} epochs x {} steps (batch {}), AdamW lr {} wd {} warm-up {} steps, out {}{}", rc.epochs,
                  steps_per_epoch, rc.batch_size, rc.lr, rc.weight_decay, rc.warmup_steps, out.string(),
                  o.resume ? fmt::format(", resuming at epoch {} step {}", epoch + 1, step_in_epoch) : ""));

  const nn::WarmupCosine step_schedule{rc.lr, rc.min_lr, rc.warmup_steps, std::max<int64_t>(total_steps, 1)};
  const nn::WarmupCosine epoch_schedule{rc.lr, rc.min_lr, 0, rc.epochs};
  auto lr_at = [&](int64_t gstep) {
    return rc.per_epoch_schedule ? epoch_schedule(gstep / std::max<int64_t>(steps_per_epoch, 1)) : step_schedule(gstep);
  };

  auto save_weights = [&](const fs::path& path, Metadata extra) {
    Metadata m = checkpoint_metadata(cfg, rc);
    for (auto& [k, v] : extra) m[k] = v;
    nn::save_state_dict(model, path, m);
  };
  auto save_last = [&]() {
    const GeneratorState g = generator_state();
    Metadata m = rc.to_metadata();
    m["train.epoch"] = std::to_string(epoch);
    m["train.step_in_epoch"] = std::to_string(step_in_epoch);
    m["train.global_step"] = std::to_string(global_step);
    m["train.best_val_accuracy"] = fmt::format("{}", best_val);
    m["train.rng_seed"] = std::to_string(g.seed);
    m["train.rng_offset"] = std::to_string(g.offset);
    NamedTensors st;
    for (auto& [name, t] : opt.state()) st.emplace_back("optim." + name, t);
    nn::save_tensors(state_path, st, m);
    save_weights(last_path, {{"train.global_step", std::to_string(global_step)}});
  };

  data::LoaderConfig lcfg;
  lcfg.batch_size = rc.batch_size;
  lcfg.shuffle = true;
  lcfg.augment = true;
  lcfg.augmentation.crop_padding = rc.crop_padding;
  lcfg.augmentation.horizontal_flip = rc.flip;
  lcfg.augmentation.stats = stats_of(rc);
  lcfg.seed = rc.seed;

  reset_peak_memory(dev);
  const int64_t start_step = global_step;
  double train_time = 0;
  int64_t train_images = 0;
  bool stopped = false;
  const auto t_train0 = Clock::now();
  PendingSteps pending;
  for (; epoch < rc.epochs && !stopped; ++epoch) {
    lcfg.epoch = uint64_t(epoch);
    lcfg.start_batch = step_in_epoch;
    data::BatchLoader loader(train_ds, train_idx, lcfg);
    double ep_loss = 0, iv_loss = 0;
    int64_t ep_correct = 0, ep_n = 0, iv_correct = 0, iv_n = 0, ep_steps = 0;
    auto t_iv = Clock::now(), t_ep = Clock::now();
    double ep_time = 0;
    for (;;) {
      if (o.max_steps > 0 && global_step >= o.max_steps && step_in_epoch < steps_per_epoch) {
        stopped = true;
        break;
      }
      const auto t_step = Clock::now();
      std::optional<data::Batch> b = loader.next();
      if (!b) break;
      Tensor logits = model.forward(images_tensor(*b, train_ds, dev));
      Tensor loss = cross_entropy(logits, from_vector(b->labels, {b->size}).to(dev), -100, rc.label_smoothing);
      opt.zero_grad();
      loss.backward();
      opt.set_lr(lr_at(global_step));
      opt.step();
      // The loss and the predictions stay on the device until the next flush, so the host never waits for the GPU
      // inside an interval and keeps queueing the next steps' kernels.
      pending.add(loss.detach(), argmax(logits.detach(), 1), b->labels, b->size, global_step);
      ++global_step, ++step_in_epoch, ++ep_steps;
      const double dt = seconds_since(t_step);
      train_time += dt, ep_time += dt;
      train_images += b->size;
      const bool log_now = global_step % o.log_every == 0 || step_in_epoch == steps_per_epoch;
      if (log_now || (o.max_steps > 0 && global_step >= o.max_steps)) {
        const auto t_flush = Clock::now();
        const PendingSteps::Totals f = pending.flush(epoch + 1, steps_per_epoch, last_path.string());
        const double flush_s = seconds_since(t_flush);
        train_time += flush_s, ep_time += flush_s;
        ep_loss += f.loss_sum, iv_loss += f.loss_sum;
        ep_correct += f.correct, iv_correct += f.correct, ep_n += f.n, iv_n += f.n;
      }
      if (log_now) {
        const double iv_s = seconds_since(t_iv);
        const MemoryStats ms = memory_stats(dev);
        const double ips = iv_s > 0 ? double(iv_n) / iv_s : 0;
        const double per_step = train_time / double(std::max<int64_t>(global_step - start_step, 1));
        const double eta = per_step * double(total_steps - global_step);
        say(fmt::format("epoch {}/{} step {}/{} | loss {:.4f} acc {:.2f}% | {:.0f} img/s | ETA {} | mem {} peak {}",
                        epoch + 1, rc.epochs, step_in_epoch, steps_per_epoch, iv_loss / double(iv_n),
                        100.0 * double(iv_correct) / double(iv_n), ips, format_duration(eta),
                        format_bytes(ms.bytes_in_use), format_bytes(ms.peak_bytes)));
        Json rec{{"kind", "train"},          {"epoch", epoch + 1},
                 {"step", global_step},      {"step_in_epoch", step_in_epoch},
                 {"loss", iv_loss / double(iv_n)}, {"accuracy", double(iv_correct) / double(iv_n)},
                 {"lr", opt.lr()},           {"images_per_s", ips},
                 {"eta_s", eta},             {"memory_bytes", ms.bytes_in_use},
                 {"peak_memory_bytes", ms.peak_bytes}, {"wall_s", seconds_since(t_start)}};
        metrics.write(rec);
        add_curve(rec);
        iv_loss = 0, iv_correct = 0, iv_n = 0;
        t_iv = Clock::now();
      }
    }
    if (stopped) break;
    // End of epoch: validate, keep the best, save the last.
    const EvalResult val = evaluate(model, train_ds, val_idx, stats_of(rc), dev, std::max<int64_t>(rc.batch_size, 256));
    const bool improved = val.accuracy > best_val;
    if (improved) {
      best_val = val.accuracy;
      save_weights(best_path, {{"val_accuracy", fmt::format("{}", val.accuracy)},
                               {"train.epoch", std::to_string(epoch + 1)},
                               {"train.global_step", std::to_string(global_step)}});
    }
    Json vrec{{"kind", "val"}, {"epoch", epoch + 1}, {"step", global_step}, {"loss", val.loss},
              {"accuracy", val.accuracy}, {"best_accuracy", best_val}, {"wall_s", seconds_since(t_start)}};
    metrics.write(vrec);
    add_curve(vrec);
    if (ep_n > 0)
      say(fmt::format("epoch {}/{} done: train loss {:.4f} acc {:.2f}% | val loss {:.4f} acc {:.2f}%{} | {:.0f} img/s, "
                      "{:.1f} ms/step, epoch {}",
                      epoch + 1, rc.epochs, ep_loss / double(ep_n), 100.0 * double(ep_correct) / double(ep_n),
                      val.loss, 100.0 * val.accuracy, improved ? " (best)" : "",
                      ep_time > 0 ? double(ep_n) / ep_time : 0.0, 1000.0 * ep_time / double(std::max<int64_t>(ep_steps, 1)),
                      format_duration(seconds_since(t_ep))));
    step_in_epoch = 0;
    const int64_t done_epoch = epoch;
    epoch = done_epoch + 1;  // the checkpoint names the next position
    save_last();
    epoch = done_epoch;
  }
  if (stopped) save_last();

  TrainSummary s;
  s.out_dir = out;
  s.global_step = global_step;
  s.total_steps = total_steps;
  s.params = params;
  s.epochs = rc.epochs;
  s.best_val_accuracy = std::max(best_val, 0.0);
  s.train_images_per_s = train_time > 0 ? double(train_images) / train_time : 0;
  s.peak_memory_bytes = memory_stats(dev).peak_bytes;
  (void)t_train0;
  if (stopped) {
    s.wall_s = seconds_since(t_start);
    say(fmt::format("vit: stopped at global step {} of {} (--max-steps); resume with --resume --out {}", global_step,
                    total_steps, out.string()));
    return s;
  }

  // Final report: test accuracy of the best-validation checkpoint.
  if (fs::exists(best_path)) nn::load_state_dict(model, best_path);
  s.test = evaluate(model, test_ds, test_idx, stats_of(rc), dev, std::max<int64_t>(rc.batch_size, 256));
  s.test_accuracy = s.test.accuracy;
  s.finished = true;
  s.wall_s = seconds_since(t_start);
  Json summary{{"test_accuracy", s.test_accuracy},
               {"test_loss", s.test.loss},
               {"test_images", s.test.n},
               {"best_val_accuracy", s.best_val_accuracy},
               {"params", params},
               {"preset", rc.preset},
               {"mixer", cfg.mixer},
               {"dataset", rc.dataset},
               {"device", dev.str()},
               {"epochs", rc.epochs},
               {"global_step", global_step},
               {"batch_size", rc.batch_size},
               {"lr", rc.lr},
               {"train_images_per_s", s.train_images_per_s},
               {"train_time_s_this_process", train_time},
               {"peak_memory_bytes", s.peak_memory_bytes},
               {"wall_s", s.wall_s},
               {"resumed", o.resume},
               {"selected_checkpoint", "best.safetensors (best validation accuracy)"},
               {"per_class_accuracy", s.test.per_class_accuracy},
               {"confusion_matrix", s.test.confusion}};
  write_json_atomic(out / "summary.json", summary);
  const std::vector<uint8_t> png = render_curves_png(curves);
  write_file(out / "curves.png", png);
  write_text_atomic(out / "report.html", render_report_html(summary, png, class_names(rc.dataset, cfg.num_classes)));
  say(fmt::format("test accuracy: {:.4f} ({} test images, best-validation checkpoint, val acc {:.4f}, {} params, "
                  "{:.0f} train img/s, wall {}); report: {}",
                  s.test_accuracy, s.test.n, s.best_val_accuracy, params, s.train_images_per_s,
                  format_duration(s.wall_s), (out / "report.html").string()));
  return s;
}

// ---- eval / predict / info ------------------------------------------------------------------------------------
namespace {
struct LoadedModel {
  std::unique_ptr<models::VisionTransformer> model;
  Metadata meta;
  data::ChannelStats stats;
};
LoadedModel load_checkpoint(const std::string& file, Device dev) {
  MIXGRAD_CHECK(!file.empty(), "--checkpoint FILE is required");
  MIXGRAD_CHECK(fs::exists(file), "checkpoint {} does not exist", file);
  LoadedModel lm;
  NamedTensors tensors;
  try {
    tensors = nn::load_tensors(file, &lm.meta);
  } catch (const std::exception& e) {
    throw Error(fmt::format("cannot read checkpoint {}: {}", file, e.what()));
  }
  const models::ViTConfig cfg = config_from_checkpoint(lm.meta, file);
  lm.stats.mean = parse_floats(meta_get(lm.meta, "normalize.mean", file), file + ": normalize.mean");
  lm.stats.stddev = parse_floats(meta_get(lm.meta, "normalize.std", file), file + ": normalize.std");
  lm.model = std::make_unique<models::VisionTransformer>(cfg);
  try {
    lm.model->load_state_dict(tensors, true);
  } catch (const std::exception& e) {
    throw Error(fmt::format("checkpoint {} does not fit its own config: {}", file, e.what()));
  }
  lm.model->to(dev);
  lm.model->eval();
  return lm;
}
}  // namespace

EvalResult run_eval(const EvalOptions& o) {
  const Device dev = resolve_device(o.device);
  LoadedModel lm = load_checkpoint(o.checkpoint, dev);
  const std::string ds_name = !o.dataset.empty()     ? o.dataset
                              : lm.meta.count("dataset") ? lm.meta.at("dataset")
                                                         : std::string("fashion-mnist");
  const data::ImageDataset test = load_dataset(ds_name, o.data_dir, false);
  check_model_matches(lm.model->config(), test, o.checkpoint);
  EvalResult r = evaluate(*lm.model, test, first_n(iota_n(test.n), o.test_limit), lm.stats, dev, o.batch_size);
  if (!o.quiet) {
    std::printf("test accuracy: %.4f (%lld/%lld, %s, loss %.4f)\n", r.accuracy, (long long)r.correct, (long long)r.n,
                ds_name.c_str(), r.loss);
    const auto names = class_names(ds_name, lm.model->config().num_classes);
    for (size_t c = 0; c < r.per_class_accuracy.size(); ++c)
      std::printf("  class %zu %-12s %.2f%%\n", c, names[c].c_str(), 100.0 * r.per_class_accuracy[c]);
  }
  return r;
}

int64_t run_predict(const PredictOptions& o) {
  MIXGRAD_CHECK(!o.images.empty() && !o.out.empty(), "--images and --out are required");
  const Device dev = resolve_device(o.device);
  LoadedModel lm = load_checkpoint(o.checkpoint, dev);
  const models::ViTConfig& cfg = lm.model->config();
  const data::IdxArray arr = data::read_idx(o.images);
  data::ImageDataset ds;
  if (arr.dims.size() == 3) {
    ds.n = arr.dims[0], ds.channels = 1, ds.height = arr.dims[1], ds.width = arr.dims[2];
  } else if (arr.dims.size() == 4) {
    ds.n = arr.dims[0], ds.channels = arr.dims[1], ds.height = arr.dims[2], ds.width = arr.dims[3];
  } else {
    throw Error(fmt::format("{}: expected images [N, H, W] or [N, C, H, W], got {} dimensions", o.images,
                            arr.dims.size()));
  }
  ds.num_classes = cfg.num_classes;
  ds.pixels = arr.data;
  ds.labels.assign(size_t(ds.n), 0);
  MIXGRAD_CHECK(ds.channels == cfg.in_chans && ds.height == cfg.img_size && ds.width == cfg.img_size,
                "{}: images are {}x{}x{} but the model takes {}x{}x{}", o.images, ds.channels, ds.height, ds.width,
                cfg.in_chans, cfg.img_size, cfg.img_size);
  MIXGRAD_CHECK(ds.n > 0, "{} holds no images", o.images);
  NoGradGuard ng;
  data::LoaderConfig lc;
  lc.batch_size = o.batch_size;
  lc.shuffle = false;
  lc.augment = false;
  lc.augmentation.stats = lm.stats;
  data::BatchLoader loader(ds, iota_n(ds.n), lc);
  std::vector<Tensor> parts;
  while (auto b = loader.next()) parts.push_back(lm.model->forward(images_tensor(*b, ds, dev)).to(kCPU));
  Tensor logits = parts.size() == 1 ? parts[0] : cat(parts, 0);
  nn::save_tensors(o.out, {{"logits", logits}},
                   {{"checkpoint", o.checkpoint}, {"images", o.images}, {"num_classes", std::to_string(cfg.num_classes)}});
  return ds.n;
}

void ModelOverrides::apply(models::ViTConfig& cfg) const {
  if (embed_dim) cfg.embed_dim = *embed_dim;
  if (depth) cfg.depth = *depth;
  if (num_heads) cfg.num_heads = *num_heads;
  if (mlp_hidden) cfg.mlp_hidden = *mlp_hidden;
  if (!pool.empty() && pool != cfg.pool) {
    const bool had_cls = cfg.pool == "token" || cfg.csp_layout;
    cfg.pool = pool;
    cfg.csp_layout = pool == "avg" && had_cls;  // keep the class token (and N) when switching to avg
  }
}

std::string model_info(const std::string& preset, const std::string& mixer, const ModelOverrides& overrides) {
  models::ViTConfig cfg = models::vit_preset(preset);
  cfg.mixer = mixer;
  overrides.apply(cfg);
  cfg.validate();
  models::VisionTransformer model(cfg);
  std::string s = fmt::format("ViT preset {} with mixer {}\n", preset, mixer);
  s += fmt::format("  image {}x{}x{}, patch {} ({}x{} = {} tokens{}), dim {}, depth {}, heads {}, MLP {}, {} classes\n",
                   cfg.in_chans, cfg.img_size, cfg.img_size, cfg.patch_size, cfg.grid(), cfg.grid(), cfg.num_patches(),
                   cfg.pool == "token" ? " + class token" : "", cfg.embed_dim, cfg.depth, cfg.num_heads,
                   cfg.mlp_hidden, cfg.num_classes);
  s += fmt::format("  pool {}, qkv bias {}, LayerNorm eps {}, dropout {} (attn {}, pos {}), init {}\n", cfg.pool,
                   cfg.qkv_bias, cfg.ln_eps, cfg.drop_rate, cfg.attn_drop_rate, cfg.pos_drop_rate, cfg.init);
  s += "parameters:\n";
  for (const auto& [name, t] : model.named_parameters())
    s += fmt::format("  {:<40} {:<18} {}\n", name, shape_str(t.shape()), t.numel());
  s += fmt::format("total parameters: {}\n", model.num_parameters());
  return s;
}

// ---- command line ---------------------------------------------------------------------------------------------
namespace {
CLI::Validator finite_number(bool positive) {
  return CLI::Validator(
      [positive](std::string& s) -> std::string {
        double v = 0;
        try {
          size_t pos = 0;
          v = std::stod(s, &pos);
          if (pos != s.size()) return "not a number: " + s;
        } catch (const std::exception&) {
          return "not a number: " + s;
        }
        if (!std::isfinite(v)) return "must be finite, got " + s;
        if (positive ? v <= 0 : v < 0) return std::string("must be ") + (positive ? "> 0" : ">= 0") + ", got " + s;
        return {};
      },
      positive ? "POSITIVE" : "NONNEGATIVE");
}
CLI::Validator device_spec() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (s == "auto") return {};
        try {
          (void)Device::parse(s);
          return {};
        } catch (const std::exception& e) {
          return std::string("bad device '") + s + "' (auto, cpu, cuda or cuda:N): " + e.what();
        }
      },
      "DEVICE");
}
const std::vector<std::string> kDatasets{"fashion-mnist", "mnist", "cifar10", "cifar100"};

// The model-shape flags of `train` and `info`; the values are copied into `m` after parsing (finish()).
struct ModelFlags {
  int64_t dim = 0, depth = 0, heads = 0, mlp = 0;
  CLI::Option *o_dim = nullptr, *o_depth = nullptr, *o_heads = nullptr, *o_mlp = nullptr;
  void add(CLI::App* sc, ModelOverrides& m) {
    sc->add_option("--pool", m.pool,
                   "Classifier input: token (the class token) or avg (mean of the patch tokens; a preset with a class "
                   "token keeps it in the sequence) (default: the preset's)")
        ->check(CLI::IsMember({"token", "avg"}));
    const auto range = CLI::Range(int64_t(1), int64_t(1) << 20);
    o_dim = sc->add_option("--embed-dim", dim, "Model width D (default: the preset's; must be a multiple of the heads)")
                ->check(range);
    o_depth = sc->add_option("--depth", depth, "Number of encoder blocks (default: the preset's)")->check(range);
    o_heads = sc->add_option("--heads", heads, "Attention heads (default: the preset's; must divide the width)")
                  ->check(range);
    o_mlp = sc->add_option("--mlp-dim", mlp, "MLP hidden width M (default: the preset's)")->check(range);
  }
  void finish(ModelOverrides& m) const {
    if (o_dim->count()) m.embed_dim = dim;
    if (o_depth->count()) m.depth = depth;
    if (o_heads->count()) m.num_heads = heads;
    if (o_mlp->count()) m.mlp_hidden = mlp;
  }
};
}  // namespace

CliCommand parse_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CliCommand c;
  CLI::App app{"mixgrad vit: train, evaluate and run Vision Transformers with pluggable token mixers"};
  app.require_subcommand(1);
  const std::vector<std::string> presets = models::vit_preset_names(), mixers = nn::mixer_names();

  // train
  TrainOptions& t = c.train;
  CLI::App* tr = app.add_subcommand("train", "Train a ViT; writes checkpoints, metrics.jsonl and a report to --out");
  tr->add_option("--dataset", t.dataset, "Data set: fashion-mnist, mnist, cifar10, cifar100 (default: the preset's, "
                                         "fashion-mnist for fmnist-*)")
      ->check(CLI::IsMember(kDatasets));
  tr->add_option("--data", t.data_dir, "Data folder (default for fashion-mnist: $MIXGRAD_FASHION_MNIST_DIR or "
                                       "/usr/share/datasets/fashion-mnist; required for the others)");
  tr->add_option("--preset", t.preset, "Model + recipe preset")->check(CLI::IsMember(presets))->capture_default_str();
  tr->add_option("--mixer", t.mixer, "Token mixer")->check(CLI::IsMember(mixers))->capture_default_str();
  ModelFlags train_model, info_model;
  train_model.add(tr, t.model);
  int64_t epochs = 0, batch = 0, warmup = 0;
  double lr = 0, wd = 0, ls = 0;
  auto* o_epochs = tr->add_option("--epochs", epochs, "Training epochs (default: the preset's)")->check(CLI::Range(int64_t(1), int64_t(1000000)));
  auto* o_batch = tr->add_option("--batch-size", batch, "Batch size (default: the preset's)")->check(CLI::Range(int64_t(1), int64_t(65536)));
  auto* o_lr = tr->add_option("--lr", lr, "Peak learning rate (default: the preset's)")->check(finite_number(true));
  auto* o_wd = tr->add_option("--weight-decay", wd, "AdamW decoupled weight decay (default: the preset's)")
                   ->check(finite_number(false));
  auto* o_warm = tr->add_option("--warmup", warmup, "Linear warm-up steps (default: the preset's)")
                     ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  auto* o_ls = tr->add_option("--label-smoothing", ls, "Label smoothing in [0, 1) (default 0)")
                   ->check(CLI::Range(0.0, 0.999999));
  int64_t crop = 0;
  bool no_flip = false, flip = false;
  auto* o_crop = tr->add_option("--crop-padding", crop, "Random-crop zero padding in pixels, 0 = no crop (default: the preset's)")
                     ->check(CLI::Range(int64_t(0), int64_t(64)));
  auto* o_noflip = tr->add_flag("--no-flip", no_flip, "No random horizontal flip (MNIST is never flipped)");
  auto* o_flip = tr->add_flag("--flip", flip, "Random horizontal flip (default: on, except for MNIST)")
                     ->excludes(o_noflip);
  bool no_decay_1d = false, decay_1d = false;
  auto* o_nodecay = tr->add_flag("--no-decay-1d", no_decay_1d,
                                 "No weight decay on biases, norm weights, pos_embed and cls_token (timm's "
                                 "exemptions; the default for fmnist-tiny)");
  auto* o_decay = tr->add_flag("--decay-1d", decay_1d,
                               "Weight decay on every parameter (PyTorch AdamW over one group; the default for the "
                               "other presets)")
                      ->excludes(o_nodecay);
  tr->add_option("--seed", t.seed, "Seed of the weights, data order, augmentation and dropout")->capture_default_str();
  tr->add_option("--device", t.device, "auto, cpu, cuda or cuda:N")->check(device_spec())->capture_default_str();
  tr->add_flag("--tf32", t.tf32, "Allow TF32 tensor cores for CUDA matrix products");
  tr->add_option("--attention", t.attention, "Softmax attention kernels: automatic (fused where it can run), fused "
                                             "(flash-style, O(N) memory) or composite (matmul + softmax + matmul)")
      ->check(CLI::IsMember({"automatic", "fused", "composite"}))->capture_default_str();
  tr->add_option("--out", t.out_dir, "Run folder (default runs/<preset>-<mixer>)");
  tr->add_flag("--resume", t.resume, "Continue the run in --out exactly where last.safetensors left off (its recorded "
                                     "model and recipe are used; training flags other than --max-steps, --log-every, "
                                     "--device, --data and --tf32 are ignored)");
  tr->add_flag("--overwrite", t.overwrite, "Start a fresh run even if --out already holds one");
  tr->add_option("--log-every", t.log_every, "Progress line and metrics record every N steps")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40))->capture_default_str();
  tr->add_option("--max-steps", t.max_steps, "Stop after N optimiser steps in total, saving last.safetensors (the "
                                             "schedule is unchanged; 0 = run to the end)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  tr->add_option("--train-limit", t.train_limit, "Use only the first N training images (0 = all)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  tr->add_option("--val-limit", t.val_limit, "Validate on the first N validation images (0 = all)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  tr->add_option("--test-limit", t.test_limit, "Test on the first N test images (0 = all)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  tr->add_flag("--quiet", t.quiet, "No progress lines");

  // eval
  EvalOptions& e = c.eval;
  CLI::App* ev = app.add_subcommand("eval", "Test accuracy of a checkpoint (config from its metadata)");
  ev->add_option("--checkpoint", e.checkpoint, "A best/last.safetensors file")->required();
  ev->add_option("--dataset", e.dataset, "Data set (default: the one recorded in the checkpoint)")
      ->check(CLI::IsMember(kDatasets));
  ev->add_option("--data", e.data_dir, "Data folder (default for fashion-mnist: the Debian package's)");
  ev->add_option("--device", e.device, "auto, cpu, cuda or cuda:N")->check(device_spec())->capture_default_str();
  ev->add_option("--batch-size", e.batch_size, "Evaluation batch size")->check(CLI::Range(int64_t(1), int64_t(65536)))
      ->capture_default_str();
  ev->add_option("--test-limit", e.test_limit, "Evaluate on the first N test images (0 = all)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));

  // predict
  PredictOptions& p = c.predict;
  CLI::App* pr = app.add_subcommand("predict", "Logits for the images of an IDX file, saved as tensor 'logits'");
  pr->add_option("--checkpoint", p.checkpoint, "A best/last.safetensors file")->required();
  pr->add_option("--images", p.images, "IDX file of uint8 images [N,H,W] or [N,C,H,W] (.gz or plain)")->required();
  pr->add_option("--out", p.out, "Output .safetensors file (tensor 'logits' [N, classes])")->required();
  pr->add_option("--device", p.device, "auto, cpu, cuda or cuda:N")->check(device_spec())->capture_default_str();
  pr->add_option("--batch-size", p.batch_size, "Batch size")->check(CLI::Range(int64_t(1), int64_t(65536)))
      ->capture_default_str();

  // info
  CLI::App* in = app.add_subcommand("info", "Architecture, parameter names and shapes, and the parameter count");
  in->add_option("--preset", c.info_preset, "Preset")->check(CLI::IsMember(presets))->capture_default_str();
  in->add_option("--mixer", c.info_mixer, "Token mixer")->check(CLI::IsMember(mixers))->capture_default_str();
  info_model.add(in, c.info_model);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& ex) {
    c.exit_code = app.exit(ex, out, err);
    if (c.exit_code == 0 && ex.get_exit_code() != 0) c.exit_code = ex.get_exit_code();
    return c;
  }
  if (o_epochs->count()) t.epochs = epochs;
  if (o_batch->count()) t.batch_size = batch;
  if (o_lr->count()) t.lr = lr;
  if (o_wd->count()) t.weight_decay = wd;
  if (o_warm->count()) t.warmup = warmup;
  if (o_ls->count()) t.label_smoothing = ls;
  if (o_crop->count()) t.crop_padding = crop;
  if (o_noflip->count()) t.flip = !no_flip;
  if (o_flip->count()) t.flip = flip;
  if (o_nodecay->count()) t.decay_1d = false;
  if (o_decay->count()) t.decay_1d = true;
  train_model.finish(t.model);
  info_model.finish(c.info_model);
  for (CLI::App* sc : {tr, ev, pr, in})
    if (sc->parsed()) c.command = sc->get_name();
  return c;
}

int vit_main(int argc, const char* const* argv) {
  CliCommand c = parse_cli(argc, argv, std::cout, std::cerr);
  if (c.exit_code >= 0) return c.exit_code;
  try {
    if (c.command == "train") {
      (void)run_training(c.train);
    } else if (c.command == "eval") {
      (void)run_eval(c.eval);
    } else if (c.command == "predict") {
      const int64_t n = run_predict(c.predict);
      std::printf("predict: wrote logits for %lld images to %s\n", (long long)n, c.predict.out.c_str());
    } else if (c.command == "info") {
      std::fputs(model_info(c.info_preset, c.info_mixer, c.info_model).c_str(), stdout);
    }
    return 0;
  } catch (const std::exception& ex) {
    std::fflush(stdout);
    std::fprintf(stderr, "vit: error: %s\n", ex.what());
    return 1;
  }
}

}  // namespace mixgrad::app
