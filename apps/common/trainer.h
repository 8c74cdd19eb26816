// The training harness every app shares: the loop (AdamW, learning-rate schedule, gradient clipping), the progress
// line, validation, best / last checkpoints, bit-exact resume, the test of the best checkpoint, metrics.jsonl,
// config.json, summary.json and the report. An app describes its run as a TrainTask (model, batch -> logits, data,
// metadata) and a Recipe; the trainer does the rest.
//
// Run folder:
//   config.json              the app's config plus steps per epoch / total steps (written on a fresh start)
//   metrics.jsonl            one JSON object per log interval ("kind":"train") and per validation ("kind":"val");
//                            on resume the records after the resumed step are dropped, so an interrupted and
//                            resumed run logs the same records as an uninterrupted one (times aside)
//   last_state.safetensors   THE checkpoint: everything a resume reads, committed by one atomic rename
//                            (apps/common/checkpoint.h): the weights ("model.<name>" tensors, the app's model
//                            metadata unprefixed), the optimiser state ("optim.<name>"), the recipe ("recipe.*") and
//                            the training position ("train.epoch", "train.step_in_epoch", "train.global_step",
//                            "train.best_val_accuracy", "train.best_global_step", "train.best_epoch",
//                            "train.rng_seed", "train.rng_offset", and the sums of the unfinished log interval and
//                            epoch, "train.interval_*", "train.epoch_*")
//   last.safetensors         weights + the app's model metadata + "train.global_step": the state's weights, written
//                            right after each commit and rewritten from the state on resume
//   best.safetensors         same layout, the weights of the best validation accuracy ("val_accuracy"), written
//                            after the commit of the step it was found at (rewritten on resume when that commit
//                            was the last); never chosen at a non-finite validation loss; not written by a run
//                            without validation (TrainTask::validate false), which tests its final weights
//   summary.json, curves.png, report.html   written when training finishes
// An interruption at any point of a save (kill, full disk) leaves the previous commit or the new one, never a mix;
// `--resume` continues from it and cleans the stale "*.tmp" files. Non-finite weights, optimiser state, training or
// validation losses stop the run with an error naming the last good checkpoint; nothing non-finite is saved.
//
// Data-parallel (docs/distributed.md; `mpirun -np W <app> train ...`, apps/common/distributed.h): every rank takes its
// contiguous share of each global batch of --batch-size rows (which W must divide), starts from rank 0's weights,
// and sums its gradients with the others' in flat buckets after the backward, before clipping and the optimiser;
// losses, accuracies, validation and test are summed over the ranks. Rank 0 alone writes the run folder and prints.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "apps/common/checkpoint.h"
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

  // "recipe.<key>" entries; from_metadata reads them back (keys added later default when absent) and checks them
  // with validate()'s ranges, an error naming the file and the key ("<file>: metadata key 'recipe.lr' = nan ...").
  nn::Metadata to_metadata() const;
  static Recipe from_metadata(const nn::Metadata& m, const std::string& file);
  void validate() const;  // errors name the field and its allowed range (the command line's ranges)
  // As validate(), naming a field by name(key) (key: the metadata key without "recipe.").
  void validate(const std::function<std::string(const std::string& key)>& name) const;
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
  // false: a run without validation (val_idx empty, no eval_every): the final weights are tested (specs/vit.md §9
  // parity mode) and best.safetensors is never written
  bool validate = true;
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
  // Fit the OpenMP thread count to the cores other processes leave free (apps/common/thread_governor.h; CPU only,
  // off when OMP_NUM_THREADS or MIXGRAD_ADAPTIVE_THREADS=0 is set). The apps turn it on; library users opt in.
  bool adaptive_threads = false;
  SaveHook save_hook;  // tests: sees (and may fail or stop) every step of every checkpoint save
};

// A run folder's last committed state, read before the app rebuilds its model and data from it.
struct ResumeState {
  std::filesystem::path state_path;    // last_state.safetensors: every value below was read from it ...
  std::filesystem::path weights_path;  // ... except, in run folders from before the weights moved into the state,
                                       // the weights and their metadata (then last.safetensors)
  nn::Metadata weights_meta, state_meta;
  nn::NamedTensors weights;        // the model's tensors (state-dict names)
  nn::NamedTensors state_tensors;  // "optim.<name>" tensors
};
// Reads the last committed state of `out_dir` (an error naming what is missing when there is none) after removing
// stale "*.tmp" files. Run folders of the older layout (weights only in last.safetensors) resume when their two
// files name the same global step.
ResumeState read_resume_state(const std::filesystem::path& out_dir);
// A fresh run must not overwrite another one: an error when `out_dir` already holds last_state.safetensors or
// last.safetensors, unless `overwrite` (the trainer then removes the old run's checkpoints before it starts).
void check_fresh_run_dir(const std::filesystem::path& out_dir, bool overwrite);

// a × b for step and sample counts; an error naming `what` when the product does not fit int64.
int64_t checked_count_product(int64_t a, int64_t b, const std::string& what);

struct TrainSummary {
  bool finished = false;  // false when --max-steps stopped the run early (no test evaluation, no summary.json)
  std::filesystem::path out_dir;
  int64_t global_step = 0, total_steps = 0, params = 0, epochs = 0;
  double best_val_accuracy = 0, test_accuracy = -1, wall_s = 0;  // best_val_accuracy: 0 without validation
  double train_units_per_s = 0;  // images (vit) or valid tokens (lra) per second of training
  int64_t peak_memory_bytes = 0;
  EvalResult test;
};

// Trains task.model by `recipe` (continuing `resume` when given), then tests the best-validation checkpoint (the
// final weights when task.validate is false).
TrainSummary train(const TrainTask& task, const Recipe& recipe, const RunOptions& run,
                   const ResumeState* resume = nullptr);

}  // namespace mixgrad::app
