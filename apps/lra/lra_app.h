// The `lra` app (train / eval / predict / info / generate / compare on the six Long Range Arena tasks with the model
// families of models/lra_config.h: the Transformer encoder with any token mixer, MEGA and CSP-MEGA, FLASH, the LSTM).
// Training runs in the shared harness (apps/common/trainer.h, which also describes the run folder); logic lives outside
// main() so that the tests drive it directly.
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
#include "apps/lra/lra_presets.h"
#include "models/lra_model.h"

namespace mixgrad::app::lra {

// Model overrides on top of a preset (unset / empty = the preset's).
struct ModelFlags {
  std::optional<int64_t> embed_dim, depth, num_heads, qkv_dim, mlp_dim, max_len, head_dim;
  std::optional<double> dropout, attn_dropout, hidden_dropout;
  std::string pool, pos, embedding, dual;
  bool causal = false;
  // The families other than the transformer (models/lra_config.h says which reads which).
  std::optional<int64_t> zdim, hdim, ema_ndim, truncation, chunk, lstm_hidden;
  std::optional<bool> prenorm;
  std::string norm, attn_fn, lstm_pool;
  void apply(models::LraConfig& m) const;
};

// Where the data come from: --data, or the generated data set of a preset in the cache.
struct DataFlags {
  std::string data_dir;    // empty: generated tasks generate into the cache; the others need it
  std::string cache_dir;   // empty: default_cache_dir()
  std::string difficulty;  // Pathfinder / Path-X: easy, intermediate, hard (empty: the preset's, hard)
  std::optional<uint64_t> split_seed;
  std::optional<int64_t> samples;  // generated data: ListOps train samples / Pathfinder images (the rest scaled)
};

struct TrainOptions {
  // mixer empty: the model family's default (transformer: softmax; mega: gated).
  std::string task = "listops", model = "transformer", preset = "mini", mixer;
  std::map<std::string, std::string> mixer_options;
  ModelFlags model_flags;
  DataFlags data;
  std::optional<int64_t> epochs, updates, batch_size, warmup, eval_every;
  std::optional<double> lr, weight_decay, clip_norm, label_smoothing;
  std::string schedule;
  uint64_t seed = 0;
  std::string device = "auto";
  bool tf32 = false;               // the same as precision "tf32"
  std::string precision = "fp32";  // matmul precision: fp32, tf32 or bf16 (engine/ops.h set_matmul_precision)
  std::string attention = "automatic";
  std::string out_dir;  // empty: runs/lra-<task>-<preset>-<model>-<mixer>
  bool resume = false, overwrite = false, quiet = false;
  int64_t log_every = 50, max_steps = 0, train_limit = 0, val_limit = 0, test_limit = 0;
  std::optional<GeneratorConfig> generator;  // tests: the generated data set of a run (instead of the preset's)
  SaveHook save_hook;                        // tests: fault injection into checkpoint saves
};
TrainSummary run_training(const TrainOptions& opts);

struct EvalOptions {
  std::string checkpoint, device = "auto", split = "test";  // split: train, val or test
  DataFlags data;                                           // empty: the data the checkpoint was trained on
  int64_t batch_size = 64, limit = 0;
  bool quiet = false;
};
EvalResult run_eval(const EvalOptions& opts);

struct PredictOptions {
  EvalOptions eval;
  std::string out;  // .safetensors: "logits" [N, classes], "labels" [N] and "indices" [N] (sample indices)
};
int64_t run_predict(const PredictOptions& opts);

// The task, the model with its mixer and options, every parameter name with its shape, and the total. mixer empty:
// the family's default.
std::string model_info(const std::string& task, const std::string& preset, const std::string& mixer,
                       const ModelFlags& flags = {}, const std::map<std::string, std::string>& mixer_options = {},
                       const std::string& model = "transformer");
// The mixer a run uses: `mixer`, or the family's default when empty.
std::string resolve_mixer(const std::string& model, const std::string& mixer);
// The mixer options a run records: --mixer-opt resolved against the mixer's declaration with the app's defaults; a
// mixer outside the token-mixer registry (MEGA's gated attention, the LSTM's none) takes none.
std::map<std::string, std::string> run_mixer_options(const std::string& mixer,
                                                     const std::map<std::string, std::string>& given);

struct GenerateOptions {
  std::string task = "listops", preset = "mini", out_dir;  // out_dir empty: into the cache (as train does)
  DataFlags data;
  std::optional<uint64_t> seed;
  std::optional<int64_t> min_length, max_length, max_depth, max_args;
  bool quiet = false;
};
// The generator settings of a task, preset and flags (what `generate` writes and `train` finds in the cache).
GeneratorConfig generator_config(const std::string& task, const std::string& preset, const DataFlags& data,
                                 const GenerateOptions* flags = nullptr);
std::filesystem::path run_generate(const GenerateOptions& opts);

// `lra compare`: every model of `models` × mixer of `mixers` (a pair the model does not take is skipped, with a note;
// "all" mixers = each model's own) trained on one task with the same preset, data and recipe
// (`base`; its model, mixer, seed, out_dir, resume and overwrite are set per run) for seeds 0 .. seeds-1, each run in
// <out>/<model>-<mixer>/seed-<s>; then compare.md, compare.json and compare.html in <out> (apps/common/compare.h).
struct CompareOptions {
  TrainOptions base;
  std::string models = "transformer", mixers = "all";  // comma-separated lists, or "all"
  int64_t seeds = 1;
  std::string out_dir;  // empty = runs/lra-compare-<task>-<preset>
  std::string command;  // the command line, shown in the reports
};
CompareResult run_compare(const CompareOptions& opts);
// Parameters and matmul FLOPs per sample at the longest sequence (max_len; apps/common/flops.h says how): every family
// by its modules' formulas (flops_complete = false only where a mixer or module has none).
ModelCost lra_cost(const models::LraConfig& cfg);

struct CliCommand {
  std::string command;  // train, eval, predict, info, generate, compare
  TrainOptions train;
  CompareOptions compare;
  EvalOptions eval;
  PredictOptions predict;
  GenerateOptions generate;
  std::string info_task = "listops", info_preset = "mini", info_mixer, info_model = "transformer";
  std::map<std::string, std::string> info_mixer_options;
  ModelFlags info_model_flags;
  int exit_code = -1;  // >= 0: parsing ended the program (--help: 0, bad flag or value: non-zero); message printed
};
CliCommand parse_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);
// Parses and runs; runtime errors print "lra: error: <message>" and return 1.
int lra_main(int argc, const char* const* argv);

}  // namespace mixgrad::app::lra
