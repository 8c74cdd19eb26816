// The training harness every app shares: the loop (AdamW, learning-rate schedule, gradient clipping), the progress
// line, validation, best / last checkpoints, bit-exact resume, the test of the best checkpoint, metrics.jsonl,
// config.json, summary.json and the report. An app describes its run as a TrainTask (model, batch -> logits, data,
// metadata) and a Recipe; the trainer does the rest.
//
// Run folder:
//   config.json              the app's config plus steps per epoch / total steps (written on a fresh start)
//   metrics.jsonl            one JSON object per log interval ("kind":"train") and per validation ("kind":"val")
//   last.safetensors         weights + the app's model metadata + "train.global_step"
//   best.safetensors         same layout, weights of the best validation accuracy ("val_accuracy")
//   last_state.safetensors   optimiser state ("optim.<name>" tensors); metadata: the recipe ("recipe.*") and the
//                            training position ("train.epoch", "train.step_in_epoch", "train.global_step",
//                            "train.best_val_accuracy", "train.rng_seed", "train.rng_offset"). Written before
//                            last.safetensors; resume checks that both name the same global step.
//   summary.json, curves.png, report.html   written when training finishes
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "apps/common/metrics.h"
#include "apps/common/report.h"
#include "apps/data/dataset.h"
#include "engine/device.h"
#include "nn/module.h"
#include "nn/serialize.h"

namespace mixgrad::app {

// The optimisation recipe every app trains with; apps keep their own keys (data, augmentation) beside it.
struct Recipe {
  int64_t epochs = 1, batch_size = 32;
  int64_t updates = 0;  // total optimiser steps (0: epochs × steps per epoch); > 0 sets the epochs it needs
  int64_t warmup_steps = 0;
  double lr = 1e-3, min_lr = 0, weight_decay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, label_smoothing = 0;
  double clip_norm = 0;             // clip the global gradient norm to this (0: no clipping)
  std::string schedule = "cosine";  // nn::LrSchedule kind: cosine, linear, rsqrt, constant
  bool per_epoch_schedule = false;  // cosine stepped once per epoch (CSP-ViT's CosineAnnealingLR)
  bool decay_1d = true;             // weight decay also on 1-D parameters (see TrainTask::decay)
  uint64_t seed = 0;
  int64_t train_limit = 0, val_limit = 0;  // use only the first N training / validation samples (0: all)
  int64_t eval_every = 0;                  // also validate every N steps (0: at the end of each epoch only)

  // "recipe.<key>" entries; from_metadata reads them back (keys added later default when absent) and checks them.
  nn::Metadata to_metadata() const;
  static Recipe from_metadata(const nn::Metadata& m, const std::string& file);
  void validate() const;  // errors name the field and its allowed range
};

// What one training run is about, filled by the app.
struct TrainTask {
  std::string app = "app";      // "vit", "lra": starts the progress lines
  nn::Module* model = nullptr;  // built after manual_seed(recipe.seed), already on the training device
  LogitsFn logits;              // a batch -> logits [B, classes] on the training device
  int64_t num_classes = 0;
  std::vector<std::string> class_names;  // for the report
  nn::Metadata weights_metadata;         // stored with every weight checkpoint (model config, normalisation, ...)
  nn::Metadata recipe_metadata;          // the app's whole recipe (Recipe::to_metadata() + its own "recipe.*" keys)
  const data::Dataset* train_data = nullptr;  // training and validation samples
  const data::Dataset* test_data = nullptr;
  std::vector<int64_t> train_idx, val_idx, test_idx;
  std::string unit = "images", unit_short = "img";   // throughput unit: "images_per_s" in metrics, "img/s" on screen
  std::function<int64_t(const data::Batch&)> units;  // units in a batch (empty: its size)
  std::vector<bool> decay;                           // weight decay per parameter (empty: every parameter)
  Json config;           // config.json (the trainer adds steps_per_epoch, total_steps and sample counts)
  Json summary;          // the app's fields of summary.json (preset, mixer, data set, ...)
  std::string describe;  // the app's one-line description of the run (first progress line)
  int64_t eval_batch_size = 256;
};

// How to run (never recorded: changing these between a run and its resume changes no result).
struct RunOptions {
  std::filesystem::path out_dir;
  Device device = kCPU;
  int64_t log_every = 50;
  int64_t max_steps = 0;  // stop after this many optimiser steps in total (0: no limit); the schedule is unchanged
  bool quiet = false;
};

// A run folder's last state, read before the app rebuilds its model and data from it.
struct ResumeState {
  std::filesystem::path weights_path, state_path;
  nn::Metadata weights_meta, state_meta;
  nn::NamedTensors state_tensors;
};
// Reads last.safetensors (metadata only) and last_state.safetensors of `out_dir`; an error when either is missing or
// they name different global steps (a run interrupted while saving).
ResumeState read_resume_state(const std::filesystem::path& out_dir);
// A fresh run must not overwrite another one: an error when `out_dir` already holds last.safetensors, unless
// `overwrite`.
void check_fresh_run_dir(const std::filesystem::path& out_dir, bool overwrite);

struct TrainSummary {
  bool finished = false;  // false when --max-steps stopped the run early (no test evaluation, no summary.json)
  std::filesystem::path out_dir;
  int64_t global_step = 0, total_steps = 0, params = 0, epochs = 0;
  double best_val_accuracy = 0, test_accuracy = -1, wall_s = 0;
  double train_units_per_s = 0;  // images (vit) or valid tokens (lra) per second of training
  int64_t peak_memory_bytes = 0;
  EvalResult test;
};

// Trains task.model by `recipe` (continuing `resume` when given), then tests the best-validation checkpoint.
TrainSummary train(const TrainTask& task, const Recipe& recipe, const RunOptions& run,
                   const ResumeState* resume = nullptr);

}  // namespace mixgrad::app
