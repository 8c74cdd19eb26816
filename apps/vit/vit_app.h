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

#include "apps/common/metrics.h"
#include "apps/common/trainer.h"
#include "apps/data/augment.h"
#include "apps/data/idx.h"
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
  std::string dataset;   // "fashion-mnist", "mnist", "cifar10", "cifar100"; empty = the preset's data set
  std::string data_dir;  // empty = data::default_fashion_mnist_dir() (fashion-mnist only)
  std::string preset = "fmnist-tiny", mixer = "softmax";
  std::map<std::string, std::string> mixer_options;  // --mixer-opt key=value, checked against the mixer's options
  ModelOverrides model;  // width, depth, heads, MLP width, pooling
  // Recipe overrides (unset = the preset's recipe).
  std::optional<int64_t> epochs, batch_size, warmup;
  std::optional<double> lr, weight_decay, label_smoothing;
  std::optional<int64_t> crop_padding;  // random-crop zero padding P (0 = no crop)
  std::optional<bool> flip;             // random horizontal flip (never applied to MNIST digits)
  std::optional<bool> decay_1d;  // weight decay also on biases, norm weights, pos_embed and cls_token
  uint64_t seed = 0;
  std::string device = "auto";
  bool tf32 = false;
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
  std::string checkpoint, images, out, device = "auto";
  int64_t batch_size = 256;
};
// Writes the logits of every image of an IDX file ([N,H,W] or [N,C,H,W] uint8) as tensor "logits" [N, classes].
// Returns the number of images.
int64_t run_predict(const PredictOptions& opts);

// Architecture, the mixer and its options, every parameter name with its shape, and the total parameter count.
std::string model_info(const std::string& preset, const std::string& mixer, const ModelOverrides& overrides = {},
                       const std::map<std::string, std::string>& mixer_options = {});

// ---- command line ----------------------------------------------------------------------------------------------
struct CliCommand {
  std::string command;  // "train", "eval", "predict", "info"
  TrainOptions train;
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

// Helpers shared with the tests.
data::ImageDataset load_dataset(const std::string& name, const std::string& dir, bool train);
std::vector<std::string> class_names(const std::string& dataset, int64_t num_classes);

}  // namespace mixgrad::app
