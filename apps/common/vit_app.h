// The `vit` app's logic (train / eval / predict / info), kept out of main() so the tests drive it directly.
//
// Run directory (--out DIR):
//   config.json              resolved model config, training recipe and options of the run
//   metrics.jsonl            one JSON object per log interval ("kind":"train") and per evaluation ("kind":"val")
//   last.safetensors         model weights (timm names) + ViTConfig metadata + "normalize.mean"/"normalize.std",
//                            "dataset", "train.global_step"
//   best.safetensors         same layout, weights of the best validation accuracy ("val_accuracy" metadata)
//   last_state.safetensors   optimiser state as "optim.<name>" tensors; metadata: the recipe ("recipe.*") and the
//                            training position ("train.epoch", "train.step_in_epoch", "train.global_step",
//                            "train.best_val_accuracy", "train.rng_seed", "train.rng_offset"). Written before
//                            last.safetensors; resume checks that both name the same global step.
//   summary.json, curves.png, report.html   written when training finishes
#pragma once
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

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
  void apply(models::ViTConfig& cfg) const;  // then cfg.validate() reports an inconsistent combination
};

struct TrainOptions {
  std::string dataset;   // "fashion-mnist", "mnist", "cifar10", "cifar100"; empty = the preset's data set
  std::string data_dir;  // empty = data::default_fashion_mnist_dir() (fashion-mnist only)
  std::string preset = "fmnist-tiny", mixer = "softmax";
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
};

struct EvalResult {
  int64_t n = 0, correct = 0;
  double accuracy = 0, loss = 0;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
  std::vector<double> per_class_accuracy;
};

struct TrainSummary {
  bool finished = false;  // false when --max-steps stopped the run early (no test evaluation, no summary.json)
  std::filesystem::path out_dir;
  int64_t global_step = 0, total_steps = 0, params = 0, epochs = 0;
  double best_val_accuracy = 0, test_accuracy = -1, wall_s = 0, train_images_per_s = 0;
  int64_t peak_memory_bytes = 0;
  EvalResult test;
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

// Architecture, every parameter name with its shape, and the total parameter count.
std::string model_info(const std::string& preset, const std::string& mixer, const ModelOverrides& overrides = {});

// ---- command line ----------------------------------------------------------------------------------------------
struct CliCommand {
  std::string command;  // "train", "eval", "predict", "info"
  TrainOptions train;
  EvalOptions eval;
  PredictOptions predict;
  std::string info_preset = "fmnist-tiny", info_mixer = "softmax";
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
