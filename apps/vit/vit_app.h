// The `vit` app (train / eval / predict / info for Vision Transformers with pluggable token mixers): its presets,
// recipe, data sets and command line. Training runs in the shared harness (apps/common/trainer.h, which also
// describes the run folder); logic lives outside main() so that the tests drive it directly.
#pragma once
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "apps/common/compare.h"
#include "apps/common/metrics.h"
#include "apps/common/trainer.h"
#include "apps/data/augment.h"
#include "apps/data/idx.h"
#include "apps/data/image_folder.h"
#include "models/vit.h"

namespace mixgrad::app {

// Model-shape overrides on top of a preset (unset = the preset's). specs/vit.md §8 lets the width change
// (fmnist-small's D 96 / M 192 variant); the parameter names and the checkpoint layout stay the same.
struct ModelOverrides {
  std::optional<int64_t> embed_dim, depth, num_heads, mlp_hidden;
  // Pooling: "token" (class token), "avg" (mean of the patch tokens; the class token stays in the sequence as in the
  // CSP authors' layout, so N is unchanged); empty = the preset's.
  std::string pool;
  // Block structure: "" or "vit" = the preset's; "s2mlpv2" = the S2-MLPv2 block and head of specs/mixers.md §1.4 on
  // the preset's single stage: mixer s2mlpv2, channel MLP expansion 3 (M = 3·D unless mlp_hidden is given), no
  // dropout, mean pooling over the patch grid into the head (pool avg unless pool is given).
  std::string block;
  void apply(models::ViTConfig& cfg) const;  // then cfg.validate() reports an inconsistent combination
};

struct TrainOptions {
  // "fashion-mnist", "mnist", "cifar10", "cifar100" or "folder" (an ImageNet-style folder, read at the preset's
  // channels and image size); empty = the preset's data set
  std::string dataset;
  std::string data_dir;  // empty = data::default_fashion_mnist_dir() (fashion-mnist only)
  std::string preset = "fmnist-tiny", mixer = "softmax";
  std::map<std::string, std::string> mixer_options;  // --mixer-opt key=value, checked against the mixer's options
  ModelOverrides model;  // width, depth, heads, MLP width, pooling
  // Recipe overrides (unset = the preset's recipe).
  std::optional<int64_t> epochs, batch_size, warmup;
  std::optional<int64_t> updates;  // total optimiser steps instead of whole epochs (the schedule spans them)
  std::optional<double> lr, weight_decay, label_smoothing;
  std::optional<int64_t> crop_padding;  // random-crop zero padding P (0 = no crop)
  std::optional<bool> flip;             // random horizontal flip (never applied to MNIST digits)
  std::optional<bool> decay_1d;  // weight decay also on biases, norm weights, pos_embed and cls_token
  // specs/vit.md §9 parity mode: no validation split, train on every training image, test the final weights
  // (default: hold out the validation set and test the best-validation checkpoint)
  bool full_train = false;
  uint64_t seed = 0;
  std::string device = "auto";
  bool tf32 = false;               // the same as precision "tf32"
  std::string precision = "fp32";  // matmul precision: fp32, tf32 or bf16 (engine/ops.h set_matmul_precision)
  std::string attention = "automatic";  // softmax attention kernels: automatic, fused or composite
  std::string out_dir;  // empty = runs/<preset>-<mixer>
  bool resume = false, overwrite = false;
  int64_t log_every = 50;
  int64_t max_steps = 0;    // stop after this many optimiser steps in total (0 = no limit); the schedule is unchanged
  int64_t train_limit = 0;  // use only the first N training images (after the validation split); 0 = all
  int64_t val_limit = 0, test_limit = 0;  // evaluate on the first N validation / test images; 0 = all
  std::optional<models::ViTConfig> model_override;  // tests: a smaller model than the preset
  bool quiet = false;                                // no progress output (tests)
  SaveHook save_hook;                                // tests: fault injection into checkpoint saves
};

TrainSummary run_training(const TrainOptions& opts);

struct EvalOptions {
  std::string checkpoint, dataset, data_dir, device = "auto";
  int64_t batch_size = 256, test_limit = 0;
  bool quiet = false;
};
// Test-set accuracy of a checkpoint (model config and normalisation from its metadata).
EvalResult run_eval(const EvalOptions& opts);

struct PredictOptions {
  // images: an IDX file ([N,H,W] or [N,C,H,W] uint8, at the model's size), a JPEG / PNG file, or a folder of them
  // (resized and centre-cropped as the image-folder data set). out: optional .safetensors for the logits.
  std::string checkpoint, images, out, device = "auto";
  int64_t batch_size = 256;
  bool quiet = false;  // no per-image lines
};
struct Prediction {
  std::string source;  // the image file, or "#<index>" of an IDX file
  int64_t class_index = 0;
  std::string class_name;  // from the checkpoint's recorded class names
  double probability = 0;  // softmax of the predicted class
};
// The predicted class of every image; with `out`, also writes tensors "logits" [N, classes] and "predictions" [N].
std::vector<Prediction> predict_images(const PredictOptions& opts);
// predict_images, then one line per image ("<source>\t<class name>\t<probability>") unless quiet. Returns N.
int64_t run_predict(const PredictOptions& opts);

// An image folder's split read at a model's channels and size; skipped images are logged unless `quiet`.
data::ImageFolder load_folder_split(const std::string& dir, const std::string& split, int64_t channels,
                                    int64_t image_size, const std::vector<std::string>& expected_classes, bool quiet);

// `vit compare`: every mixer of `mixers` trained with the same preset, recipe and flags (`base`; its mixer, seed,
// out_dir, resume and overwrite are set per run) for seeds 0 .. seeds-1, each run in <out>/<mixer>/seed-<s>; then
// compare.md, compare.json and compare.html in <out> (apps/common/compare.h).
struct CompareOptions {
  TrainOptions base;
  std::string mixers = "all";  // "all" or a comma-separated list
  int64_t seeds = 1;
  std::string out_dir;  // empty = runs/compare-<preset>
  std::string command;  // the command line, shown in the reports (empty: none)
};
CompareResult run_compare(const CompareOptions& opts);
// Parameters and matmul FLOPs per image of a ViT config (apps/common/flops.h says how they are counted).
ModelCost vit_cost(const models::ViTConfig& cfg);

// Architecture, the mixer and its options, every parameter name with its shape, and the total parameter count.
std::string model_info(const std::string& preset, const std::string& mixer, const ModelOverrides& overrides = {},
                       const std::map<std::string, std::string>& mixer_options = {});

// ---- command line ----------------------------------------------------------------------------------------------
struct CliCommand {
  std::string command;  // "train", "eval", "predict", "info", "compare"
  TrainOptions train;
  CompareOptions compare;
  EvalOptions eval;
  PredictOptions predict;
  std::string info_preset = "fmnist-tiny", info_mixer = "softmax";
  std::map<std::string, std::string> info_mixer_options;
  ModelOverrides info_model;
  int exit_code = -1;  // >= 0: parsing ended the program (--help: 0, bad flag or value: non-zero); message printed
};
CliCommand parse_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);
// Parses and runs; runtime errors print "vit: error: <message>" and return 1.
int vit_main(int argc, const char* const* argv);

// Helpers shared with the tests. load_dataset reads the named data sets (not "folder": load_folder_split).
data::ImageDataset load_dataset(const std::string& name, const std::string& dir, bool train);
std::vector<std::string> class_names(const std::string& dataset, int64_t num_classes);
// The data set a preset trains on when --dataset is not given.
std::string preset_dataset_name(const std::string& preset);
// The class names a checkpoint records ("class_names", a JSON array), else class_names(its data set, classes).
std::vector<std::string> checkpoint_class_names(const nn::Metadata& meta, int64_t num_classes);

}  // namespace mixgrad::app
