// The `vit` app: data sets, the recipe of each preset, the training task handed to the shared trainer, and eval /
// predict / info.
#include "apps/vit/vit_app.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

#include "apps/common/flops.h"
#include "apps/common/options.h"
#include "apps/data/cifar.h"
#include "apps/data/image_batches.h"
#include "apps/data/loader.h"
#include "apps/data/split.h"
#include "engine/attention.h"
#include "engine/file_io.h"
#include "engine/mixgrad.h"
#include "nn/mixer.h"
#include "nn/serialize.h"

namespace mixgrad::app {

namespace fs = std::filesystem;
using nn::Metadata;
using nn::NamedTensors;

namespace {

// The ViT recipe: the shared optimisation recipe plus the data and augmentation of a preset. Recorded in
// last_state.safetensors ("recipe.*") and config.json.
struct ViTRecipe {
  Recipe train;
  std::string preset, dataset;
  int64_t warmup_epochs = 0;  // resolved into train.warmup_steps once the steps per epoch are known
  int64_t crop_padding = 2;
  bool flip = true;
  // specs/vit.md §9 parity mode: train on the whole training set (no validation split) and test the final weights
  bool full_train = false;
  std::vector<float> mean{0.2860f}, stddev{0.3530f};

  Metadata to_metadata() const {
    Metadata m = train.to_metadata();
    m["recipe.preset"] = preset;
    m["recipe.dataset"] = dataset;
    m["recipe.crop_padding"] = std::to_string(crop_padding);
    m["recipe.flip"] = flip ? "1" : "0";
    m["recipe.full_train"] = full_train ? "1" : "0";
    m["recipe.mean"] = join_floats(mean);
    m["recipe.std"] = join_floats(stddev);
    return m;
  }
  static ViTRecipe from_metadata(const Metadata& m, const std::string& f) {
    ViTRecipe r;
    r.train = Recipe::from_metadata(m, f);
    r.preset = meta_get(m, "recipe.preset", f);
    r.dataset = meta_get(m, "recipe.dataset", f);
    r.crop_padding = meta_int(m, "recipe.crop_padding", f);
    r.flip = meta_bool(m, "recipe.flip", f);
    r.full_train = m.count("recipe.full_train") && meta_bool(m, "recipe.full_train", f);  // absent before parity mode
    r.mean = parse_floats(meta_get(m, "recipe.mean", f), f + ": metadata key 'recipe.mean'");
    r.stddev = parse_floats(meta_get(m, "recipe.std", f), f + ": metadata key 'recipe.std'");
    r.check_own_fields([&](const std::string& key) { return fmt::format("{}: metadata key 'recipe.{}'", f, key); });
    return r;
  }
  // The ranges of the keys beside the shared recipe (the command line's, where it sets them).
  void check_own_fields(const std::function<std::string(const std::string&)>& name) const {
    MIXGRAD_CHECK(dataset == "fashion-mnist" || dataset == "mnist" || dataset == "cifar10" || dataset == "cifar100",
                  "{} = '{}' (expected fashion-mnist, mnist, cifar10 or cifar100)", name("dataset"), dataset);
    MIXGRAD_CHECK(crop_padding >= 0 && crop_padding <= 64, "{} = {} (expected 0 .. 64)", name("crop_padding"),
                  crop_padding);
    MIXGRAD_CHECK(mean.size() == stddev.size() && (mean.size() == 1 || mean.size() == 3),
                  "{} has {} values and {} has {} (expected 1 or 3 each, one per channel)", name("mean"), mean.size(),
                  name("std"), stddev.size());
    for (size_t c = 0; c < mean.size(); ++c) {
      MIXGRAD_CHECK(std::isfinite(mean[c]), "{} = {} (expected finite values)", name("mean"), join_floats(mean));
      MIXGRAD_CHECK(std::isfinite(stddev[c]) && stddev[c] > 0, "{} = {} (expected finite values > 0)", name("std"),
                    join_floats(stddev));
    }
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

ViTRecipe default_recipe(const std::string& preset, const std::string& dataset) {
  ViTRecipe r;
  Recipe& t = r.train;
  r.preset = preset;
  r.dataset = dataset;
  const data::ChannelStats st = dataset_stats(dataset);
  r.mean = st.mean, r.stddev = st.stddev;
  if (preset == "fmnist-small") {  // s-chh recipe (vit.md §5.4)
    t.epochs = 200, t.batch_size = 128, t.lr = 5e-4, t.weight_decay = 1e-3, t.min_lr = 1e-5, r.warmup_epochs = 10;
    r.crop_padding = 2;
    if (dataset == "fashion-mnist") r.mean = {0.5f}, r.stddev = {0.5f};
  } else if (preset == "cifar10-paper" || preset == "cifar100-paper") {  // CSP recipe (vit.md §3.2)
    t.epochs = 100, t.batch_size = 64, t.lr = 1e-4, t.weight_decay = 0, t.min_lr = 0, t.per_epoch_schedule = true;
    r.crop_padding = 4;
  } else {  // fmnist-tiny: vit.md §8's starting point, tuned to the 15-minute CPU budget (docs/benchmarks/vit-cpu.md):
            // 26 epochs at lr 2e-3 with flip and a 1-pixel random crop (without the crop the model overfits and
            // more epochs stop helping; a 2-pixel crop learns too slowly for this budget), no weight decay on
            // biases, norm weights and the position embedding / class token
    t.epochs = 26, t.batch_size = 128, t.lr = 2e-3, t.weight_decay = 0.05, t.warmup_steps = 200;
    t.decay_1d = false;
    r.crop_padding = 1;
  }
  r.flip = dataset != "mnist";  // never flip digits
  return r;
}

// The preset's recipe with the command line's overrides.
ViTRecipe recipe_from_options(const TrainOptions& o) {
  ViTRecipe rc = default_recipe(o.preset, o.dataset.empty() ? preset_dataset(o.preset) : o.dataset);
  Recipe& t = rc.train;
  if (o.epochs) t.epochs = *o.epochs;
  if (o.batch_size) t.batch_size = *o.batch_size;
  if (o.lr) t.lr = *o.lr;
  if (o.weight_decay) t.weight_decay = *o.weight_decay;
  if (o.label_smoothing) t.label_smoothing = *o.label_smoothing;
  if (o.warmup) t.warmup_steps = *o.warmup, rc.warmup_epochs = 0;
  if (o.updates) t.updates = *o.updates;
  if (o.crop_padding) rc.crop_padding = *o.crop_padding;
  if (o.flip) rc.flip = *o.flip && rc.dataset != "mnist";  // MNIST digits are never flipped
  if (o.decay_1d) t.decay_1d = *o.decay_1d;
  rc.full_train = o.full_train;
  MIXGRAD_CHECK(!(o.full_train && o.val_limit > 0),
                "--val-limit {} limits a validation set, but --full-train trains on every training image and holds none "
                "out; expected one of the two",
                o.val_limit);
  t.seed = o.seed;
  t.train_limit = o.train_limit;
  t.val_limit = o.val_limit;
  return rc;
}

Metadata checkpoint_metadata(const models::ViTConfig& cfg, const ViTRecipe& r, const std::vector<std::string>& names) {
  Metadata m = cfg.to_metadata();
  m["normalize.mean"] = join_floats(r.mean);
  m["normalize.std"] = join_floats(r.stddev);
  m["dataset"] = r.dataset;
  m["class_names"] = Json(names).dump();
  return m;
}

Tensor images_tensor(const data::Batch& b, const data::ImageDataset& ds, Device dev) {
  return from_vector(b.images, {b.size, ds.channels, ds.height, ds.width}).to(dev);
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

AttentionBackend attention_backend_named(const std::string& name) {
  if (name == "fused") return AttentionBackend::fused;
  if (name == "composite") return AttentionBackend::composite;
  return AttentionBackend::automatic;
}

// What run_training needs before the trainer starts: the model config and recipe (from the checkpoint when
// resuming, else from the preset and flags), the data and the split.
struct ViTRun {
  models::ViTConfig cfg;
  ViTRecipe rc;
  std::optional<ResumeState> resume;
  data::ImageDataset train_ds, test_ds;
  std::vector<int64_t> train_idx, val_idx, test_idx;
  std::vector<std::string> class_names;
  Json data_read;  // image folders: files read and skipped per split
};

Json folder_report_json(const data::ImageFolderReport& r) {
  return Json{{"files", r.files}, {"skipped", r.skipped}, {"skipped_examples", r.skipped_examples}};
}

// The run's images: a named data set, or an image folder read at the model's channels and size (DIR/train for
// training and validation, DIR/val as the test set). A fresh folder run normalises with its training images'
// statistics; a resumed one must find the classes its checkpoint names.
void load_run_data(ViTRun& r, const TrainOptions& o) {
  if (r.rc.dataset != "folder") {
    r.train_ds = load_dataset(r.rc.dataset, o.data_dir, true);
    r.test_ds = load_dataset(r.rc.dataset, o.data_dir, false);
    r.class_names = class_names(r.rc.dataset, r.train_ds.num_classes);
    return;
  }
  const std::vector<std::string> expected =
      o.resume ? checkpoint_class_names(r.resume->weights_meta, r.cfg.num_classes) : std::vector<std::string>{};
  data::ImageFolder train = load_folder_split(o.data_dir, "train", r.cfg.in_chans, r.cfg.img_size, expected, o.quiet);
  data::ImageFolder val =
      load_folder_split(o.data_dir, "val", r.cfg.in_chans, r.cfg.img_size, train.class_names, o.quiet);
  r.class_names = train.class_names;
  r.data_read =
      Json{{"dir", o.data_dir}, {"train", folder_report_json(train.report)}, {"val", folder_report_json(val.report)}};
  r.train_ds = std::move(train.images);
  r.test_ds = std::move(val.images);
  if (!o.resume) {
    const data::ChannelStats st = data::channel_stats(r.train_ds);
    r.rc.mean = st.mean, r.rc.stddev = st.stddev;
  }
}

data::TrainValSplit train_val_split(const ViTRun& r) {
  if (r.rc.full_train) return data::split_index_range(r.train_ds.n, r.train_ds.n, r.train_ds.n);  // no validation
  if (r.rc.dataset == "cifar10" || r.rc.dataset == "cifar100") return data::split_cifar(r.train_ds.n);
  if (r.rc.dataset == "folder")  // a tenth of each class (at least one image) validates
    return data::split_fraction_per_class(r.train_ds.labels, r.train_ds.num_classes, 0.1, r.class_names);
  return data::split_last_per_class(r.train_ds.labels, r.train_ds.num_classes, 500);
}

ViTRun prepare_run(const TrainOptions& o, const fs::path& out) {
  ViTRun r;
  if (o.resume) {
    r.resume = read_resume_state(out);
    r.rc = ViTRecipe::from_metadata(r.resume->state_meta, r.resume->state_path.string());
    r.cfg = config_from_checkpoint(r.resume->weights_meta, r.resume->weights_path.string());
  } else {
    check_fresh_run_dir(out, o.overwrite);
    r.cfg = o.model_override ? *o.model_override : models::vit_preset(o.preset);
    r.cfg.mixer = o.mixer;
    r.cfg.mixer_options = o.mixer_options;
    o.model.apply(r.cfg);
    r.rc = recipe_from_options(o);
  }
  r.rc.train.validate();
  // Data: validation split held out of training; the test set only for the final report.
  load_run_data(r, o);
  if (!o.resume) r.cfg.num_classes = r.train_ds.num_classes;
  r.cfg.validate();
  check_model_matches(r.cfg, r.train_ds, "--preset " + r.rc.preset);
  const data::TrainValSplit split = train_val_split(r);
  r.train_idx = first_n(split.train, r.rc.train.train_limit);
  r.val_idx = first_n(split.val, r.rc.train.val_limit);
  r.test_idx = first_n(iota_n(r.test_ds.n), o.test_limit);
  const int64_t steps_per_epoch = (int64_t(r.train_idx.size()) + r.rc.train.batch_size - 1) / r.rc.train.batch_size;
  if (r.rc.warmup_epochs > 0) {
    r.rc.train.warmup_steps = checked_count_product(r.rc.warmup_epochs, steps_per_epoch, "warm-up steps");
    r.rc.warmup_epochs = 0;
  }
  return r;
}

}  // namespace

// ---- data sets ------------------------------------------------------------------------------------------------
data::ImageDataset load_dataset(const std::string& name, const std::string& dir, bool train) {
  MIXGRAD_CHECK(name != "folder", "load_dataset: image folders are read at a model's size (load_folder_split)");
  if (name == "fashion-mnist")
    return data::load_mnist_like(dir.empty() ? data::default_fashion_mnist_dir() : fs::path(dir), train);
  MIXGRAD_CHECK(!dir.empty(), "--data DIR is required for --dataset {}", name);
  if (name == "mnist") return data::load_mnist_like(dir, train);
  if (name == "cifar10") return data::load_cifar10(dir, train);
  if (name == "cifar100") return data::load_cifar100(dir, train);
  throw Error(fmt::format("unknown data set '{}' (known: fashion-mnist, mnist, cifar10, cifar100, folder)", name));
}

data::ImageFolder load_folder_split(const std::string& dir, const std::string& split, int64_t channels,
                                    int64_t image_size, const std::vector<std::string>& expected_classes, bool quiet) {
  MIXGRAD_CHECK(!dir.empty(),
                "--dataset folder needs --data DIR (the ImageNet layout: DIR/train/<class>/<image>, "
                "DIR/val/<class>/<image>)");
  MIXGRAD_CHECK(channels == 1 || channels == 3, "an image folder feeds 1 or 3 channels; the model takes {}", channels);
  data::ImageFolder f = data::load_image_folder(dir, split, int(channels), int(image_size), expected_classes);
  const std::string skipped = data::describe_skipped(f.report, (fs::path(dir) / split).string());
  if (!quiet) {
    std::printf("vit: %s/%s: %lld images of %zu classes at %lldx%lldx%lld\n", dir.c_str(), split.c_str(),
                (long long)f.images.n, f.class_names.size(), (long long)channels, (long long)image_size,
                (long long)image_size);
    if (!skipped.empty()) std::printf("vit: warning: %s\n", skipped.c_str());
    std::fflush(stdout);
  }
  return f;
}

std::vector<std::string> checkpoint_class_names(const nn::Metadata& meta, int64_t k) {
  auto it = meta.find("class_names");
  if (it != meta.end()) {
    std::vector<std::string> names;
    try {
      names = Json::parse(it->second).get<std::vector<std::string>>();
    } catch (const std::exception&) {
      throw Error("checkpoint metadata 'class_names' is not a JSON array of strings: " + it->second);
    }
    MIXGRAD_CHECK(int64_t(names.size()) == k, "checkpoint metadata 'class_names' names {} classes, the model has {}",
                  names.size(), k);
    return names;
  }
  auto ds = meta.find("dataset");
  return class_names(ds != meta.end() ? ds->second : "fashion-mnist", k);
}

std::string preset_dataset_name(const std::string& preset) { return preset_dataset(preset); }

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
TrainSummary run_training(const TrainOptions& o) {
  const fs::path out = o.out_dir.empty() ? fs::path("runs") / (o.preset + "-" + o.mixer) : fs::path(o.out_dir);
  const Device dev = resolve_device(o.device);
  set_matmul_precision(precision_from_flags(o.precision, o.tf32));
  const AttentionBackendGuard attention_backend(attention_backend_named(o.attention));
  const ViTRun r = prepare_run(o, out);

  // Model (the seed fixes the initial weights; a resumed run then overwrites them).
  manual_seed(r.rc.train.seed);
  models::VisionTransformer model(r.cfg);
  model.to(dev);
  data::AugmentConfig train_aug;
  train_aug.crop_padding = r.rc.crop_padding;
  train_aug.horizontal_flip = r.rc.flip;
  train_aug.stats = {r.rc.mean, r.rc.stddev};
  const data::ImageBatches train_data(r.train_ds, train_aug), test_data(r.test_ds, train_aug);

  TrainTask t;
  t.app = "vit";
  t.model = &model;
  t.logits = [&](const data::Batch& b) { return model.forward(images_tensor(b, r.train_ds, dev)); };
  t.num_classes = r.cfg.num_classes;
  t.class_names = r.class_names;
  t.weights_metadata = checkpoint_metadata(r.cfg, r.rc, r.class_names);
  t.recipe_metadata = r.rc.to_metadata();
  t.train_data = &train_data, t.test_data = &test_data;
  t.train_idx = r.train_idx, t.val_idx = r.val_idx, t.test_idx = r.test_idx;
  t.validate = !r.rc.full_train;
  if (!r.rc.train.decay_1d)
    for (const auto& [name, prm] : model.named_parameters())
      t.decay.push_back(!(prm.dim() <= 1 || name == "pos_embed" || name == "cls_token"));
  t.config = Json{{"model", r.cfg.to_metadata()},
                  {"recipe", r.rc.to_json()},
                  {"preset", r.rc.preset},
                  {"mixer", r.cfg.mixer},
                  {"train_images", r.train_idx.size()},
                  {"val_images", r.val_idx.size()},
                  {"test_images", r.test_idx.size()}};
  if (!r.data_read.is_null()) t.config["data_read"] = r.data_read;
  t.summary = Json{
      {"preset", r.rc.preset}, {"mixer", r.cfg.mixer}, {"dataset", r.rc.dataset}, {"test_images", r.test_idx.size()}};
  t.describe = fmt::format("vit: {} / {}: {} parameters, device {}, data {} ({} train, {}, {} test images)",
                           r.rc.preset, r.cfg.mixer, model.num_parameters(), dev.str(), r.rc.dataset,
                           r.train_idx.size(),
                           r.rc.full_train ? std::string("no validation (--full-train)")
                                           : fmt::format("{} val", r.val_idx.size()),
                           r.test_idx.size());
  RunOptions run;
  run.out_dir = out;
  run.device = dev;
  run.log_every = o.log_every;
  run.max_steps = o.max_steps;
  run.quiet = o.quiet;
  run.adaptive_threads = true;
  run.save_hook = o.save_hook;
  return train(t, r.rc.train, run, r.resume ? &*r.resume : nullptr);
}

// ---- eval / predict / info ------------------------------------------------------------------------------------
namespace {
struct LoadedModel {
  std::unique_ptr<models::VisionTransformer> model;
  Metadata meta;
  data::ChannelStats stats;
};
// The normalisation of a checkpoint: one finite mean and one finite std > 0 per input channel.
void check_normalisation(const data::ChannelStats& s, int64_t channels, const std::string& file) {
  MIXGRAD_CHECK(int64_t(s.mean.size()) == channels && int64_t(s.stddev.size()) == channels,
                "{}: metadata keys 'normalize.mean' and 'normalize.std' hold {} and {} values; expected one per input "
                "channel ({})",
                file, s.mean.size(), s.stddev.size(), channels);
  for (size_t c = 0; c < s.mean.size(); ++c)
    MIXGRAD_CHECK(std::isfinite(s.mean[c]) && std::isfinite(s.stddev[c]) && s.stddev[c] > 0,
                  "{}: metadata normalize.mean / normalize.std of channel {} are {} / {}; expected a finite mean and a "
                  "finite std > 0",
                  file, c, s.mean[c], s.stddev[c]);
}

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
  if (const auto bad = first_non_finite(tensors))
    throw Error(fmt::format("checkpoint {}: {}; non-finite weights give no meaningful predictions", file, *bad));
  const models::ViTConfig cfg = config_from_checkpoint(lm.meta, file);
  lm.stats.mean = parse_floats(meta_get(lm.meta, "normalize.mean", file), file + ": normalize.mean");
  lm.stats.stddev = parse_floats(meta_get(lm.meta, "normalize.std", file), file + ": normalize.std");
  check_normalisation(lm.stats, cfg.in_chans, file);
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

// Evaluation batches of `ds` normalised with the checkpoint's statistics.
data::ImageBatches eval_batches(const data::ImageDataset& ds, const data::ChannelStats& stats) {
  data::AugmentConfig a;
  a.stats = stats;
  return data::ImageBatches(ds, a);
}
}  // namespace

EvalResult run_eval(const EvalOptions& o) {
  const Device dev = resolve_device(o.device);
  LoadedModel lm = load_checkpoint(o.checkpoint, dev);
  const models::ViTConfig& cfg = lm.model->config();
  const std::string ds_name = !o.dataset.empty()         ? o.dataset
                              : lm.meta.count("dataset") ? lm.meta.at("dataset")
                                                         : std::string("fashion-mnist");
  const std::vector<std::string> names = checkpoint_class_names(lm.meta, cfg.num_classes);
  const data::ImageDataset test =
      ds_name == "folder" ? load_folder_split(o.data_dir, "val", cfg.in_chans, cfg.img_size, names, o.quiet).images
                          : load_dataset(ds_name, o.data_dir, false);
  check_model_matches(cfg, test, o.checkpoint);
  const data::ImageBatches batches = eval_batches(test, lm.stats);
  const LogitsFn logits = [&](const data::Batch& b) { return lm.model->forward(images_tensor(b, test, dev)); };
  EvalResult r =
      evaluate(*lm.model, logits, cfg.num_classes, batches, first_n(iota_n(test.n), o.test_limit), o.batch_size);
  if (!o.quiet) {
    std::printf("test accuracy: %.4f (%lld/%lld, %s, loss %.4f)\n", r.accuracy, (long long)r.correct, (long long)r.n,
                ds_name.c_str(), r.loss);
    for (size_t c = 0; c < r.per_class_accuracy.size(); ++c)
      std::printf("  class %zu %-12s %.2f%%\n", c, names[c].c_str(), 100.0 * r.per_class_accuracy[c]);
  }
  return r;
}

namespace {

// The images of an IDX file ([N, H, W] or [N, C, H, W] uint8) at the model's size; sources "#<index>".
data::ImageFolder idx_images(const std::string& file, const models::ViTConfig& cfg) {
  const data::IdxArray arr = data::read_idx(file);
  data::ImageFolder f;
  data::ImageDataset& ds = f.images;
  if (arr.dims.size() == 3) {
    ds.n = arr.dims[0], ds.channels = 1, ds.height = arr.dims[1], ds.width = arr.dims[2];
  } else if (arr.dims.size() == 4) {
    ds.n = arr.dims[0], ds.channels = arr.dims[1], ds.height = arr.dims[2], ds.width = arr.dims[3];
  } else {
    throw Error(fmt::format("{}: expected images [N, H, W] or [N, C, H, W], got {} dimensions", file, arr.dims.size()));
  }
  ds.pixels = arr.data;
  MIXGRAD_CHECK(ds.channels == cfg.in_chans && ds.height == cfg.img_size && ds.width == cfg.img_size,
                "{}: images are {}x{}x{} but the model takes {}x{}x{}", file, ds.channels, ds.height, ds.width,
                cfg.in_chans, cfg.img_size, cfg.img_size);
  for (int64_t i = 0; i < ds.n; ++i) f.files.push_back(fmt::format("#{}", i));
  return f;
}

// Logits [N, classes] on the CPU of every image of `ds`, in order.
Tensor predict_logits(LoadedModel& lm, const data::ImageDataset& ds, int64_t batch_size, Device dev) {
  NoGradGuard ng;
  const data::ImageBatches batches = eval_batches(ds, lm.stats);
  data::LoaderConfig lc;
  lc.batch_size = batch_size;
  lc.shuffle = false;
  lc.augment = false;
  data::BatchLoader loader(batches, iota_n(ds.n), lc);
  std::vector<Tensor> parts;
  while (auto b = loader.next()) parts.push_back(lm.model->forward(images_tensor(*b, ds, dev)).to(kCPU));
  return parts.size() == 1 ? parts[0] : cat(parts, 0);
}

}  // namespace

std::vector<Prediction> predict_images(const PredictOptions& o) {
  MIXGRAD_CHECK(!o.images.empty(), "--images is required");
  // before any work: --out must be a regular file or nothing (not /dev/full)
  if (!o.out.empty()) io::require_replaceable(o.out);
  const Device dev = resolve_device(o.device);
  LoadedModel lm = load_checkpoint(o.checkpoint, dev);
  const models::ViTConfig& cfg = lm.model->config();
  const bool image_files = fs::is_directory(o.images) || data::is_image_file_name(o.images);
  data::ImageFolder in = image_files ? data::load_image_files({o.images}, int(cfg.in_chans), int(cfg.img_size))
                                     : idx_images(o.images, cfg);
  in.images.num_classes = cfg.num_classes;
  in.images.labels.assign(size_t(in.images.n), 0);
  MIXGRAD_CHECK(in.images.n > 0, "{} holds no images", o.images);
  const Tensor logits = predict_logits(lm, in.images, o.batch_size, dev);
  const std::vector<std::string> names = checkpoint_class_names(lm.meta, cfg.num_classes);
  const std::vector<float> v = logits.to_vector<float>();
  const int64_t k = cfg.num_classes;
  std::vector<Prediction> out;
  std::vector<int64_t> classes;
  for (int64_t i = 0; i < in.images.n; ++i) {
    const float* row = v.data() + i * k;
    const int64_t best = int64_t(std::max_element(row, row + k) - row);
    double z = 0;
    for (int64_t c = 0; c < k; ++c) z += std::exp(double(row[c]) - double(row[best]));
    out.push_back(Prediction{in.files[size_t(i)], best, names[size_t(best)], 1.0 / z});
    classes.push_back(best);
  }
  if (!o.out.empty())
    nn::save_tensors(o.out, {{"logits", logits}, {"predictions", from_vector(classes, {in.images.n})}},
                     {{"checkpoint", o.checkpoint},
                      {"images", o.images},
                      {"num_classes", std::to_string(k)},
                      {"class_names", Json(names).dump()}});
  return out;
}

int64_t run_predict(const PredictOptions& o) {
  const std::vector<Prediction> p = predict_images(o);
  if (!o.quiet)
    for (const Prediction& x : p) std::printf("%s\t%s\t%.4f\n", x.source.c_str(), x.class_name.c_str(), x.probability);
  return int64_t(p.size());
}

void ModelOverrides::apply(models::ViTConfig& cfg) const {
  MIXGRAD_CHECK(block.empty() || block == "vit" || block == "s2mlpv2",
                "--block \"{}\" is not a block structure (expected vit or s2mlpv2)", block);
  if (embed_dim) cfg.embed_dim = *embed_dim;
  if (depth) cfg.depth = *depth;
  if (num_heads) cfg.num_heads = *num_heads;
  if (mlp_hidden) cfg.mlp_hidden = *mlp_hidden;
  if (block == "s2mlpv2") {  // specs/mixers.md §1.4: S2Attention, MLP expansion 3, dropout 0, mean-pooled head
    MIXGRAD_CHECK(cfg.mixer == "s2mlpv2" || cfg.mixer == "softmax",
                  "--block s2mlpv2 builds the S2-MLPv2 block, whose mixer is s2mlpv2, not {}", cfg.mixer);
    if (cfg.mixer != "s2mlpv2") cfg.mixer_options.clear();
    cfg.mixer = "s2mlpv2";
    if (!mlp_hidden) cfg.mlp_hidden = 3 * cfg.embed_dim;
    cfg.drop_rate = cfg.attn_drop_rate = cfg.pos_drop_rate = 0.0;
    if (pool.empty()) {
      cfg.pool = "avg";
      cfg.csp_layout = false;
    }
  }
  if (!pool.empty() && pool != cfg.pool) {
    const bool had_cls = cfg.pool == "token" || cfg.csp_layout;
    cfg.pool = pool;
    cfg.csp_layout = pool == "avg" && had_cls;  // keep the class token (and N) when switching to avg
  }
}

std::string model_info(const std::string& preset, const std::string& mixer, const ModelOverrides& overrides,
                       const std::map<std::string, std::string>& mixer_options) {
  models::ViTConfig cfg = models::vit_preset(preset);
  cfg.mixer = mixer;
  cfg.mixer_options = mixer_options;
  overrides.apply(cfg);
  cfg.validate();
  models::VisionTransformer model(cfg);
  std::string s = fmt::format("ViT preset {} with mixer {}{}\n", preset, cfg.mixer,
                              overrides.block == "s2mlpv2" ? " (S2-MLPv2 block, specs/mixers.md §1.4)" : "");
  s += fmt::format("  image {}x{}x{}, patch {} ({}x{} = {} tokens{}), dim {}, depth {}, heads {}, MLP {}, {} classes\n",
                   cfg.in_chans, cfg.img_size, cfg.img_size, cfg.patch_size, cfg.grid(), cfg.grid(), cfg.num_patches(),
                   cfg.pool == "token" ? " + class token" : "", cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_hidden,
                   cfg.num_classes);
  s += fmt::format("  pool {}, qkv bias {}, LayerNorm eps {}, dropout {} (attn {}, pos {}), init {}\n", cfg.pool,
                   cfg.qkv_bias, cfg.ln_eps, cfg.drop_rate, cfg.attn_drop_rate, cfg.pos_drop_rate, cfg.init);
  const nn::MixerOptions resolved = nn::resolve_mixer_options(cfg.mixer, cfg.mixer_options);
  for (const auto& [k, v] : resolved.values()) s += fmt::format("  mixer option {} = {}\n", k, v);
  s += describe_mixer(cfg.mixer);
  return s + parameter_listing(model);
}

}  // namespace mixgrad::app
