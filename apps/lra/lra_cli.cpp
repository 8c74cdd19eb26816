// The `lra` command line: train / eval / predict / info / generate flags (CLI11), and lra_main.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "apps/common/options.h"
#include "apps/lra/lra_app.h"
#include "models/config_metadata.h"
#include "models/lra_config.h"
#include "nn/mixer.h"

namespace mixgrad::app::lra {

namespace {

const auto kSize = integer_range(int64_t(1), int64_t(1) << 24);
const auto kCount = integer_range(int64_t(0), int64_t(1) << 40);

// An optional<T> flag: the value lands in `into` only when the flag is given.
template <class T>
CLI::Option* optional_flag(CLI::App* sc, const std::string& name, std::optional<T>& into, const std::string& help) {
  return sc->add_option_function<T>(
      name, [&into](const T& v) { into = v; }, help);
}

// The flags of the families other than the transformer (models/lra_config.h says which family reads which).
void add_family_flags(CLI::App* sc, ModelFlags& m) {
  namespace lim = models::limits;
  optional_flag(sc, "--zdim", m.zdim, "mega / flash: width of the shared representation Z (default: the preset's)")
      ->check(integer_range(1, lim::kMaxWidth));
  optional_flag(sc, "--hdim", m.hdim, "mega: value width; flash: expansion width (default: the preset's)")
      ->check(integer_range(1, lim::kMaxWidth));
  optional_flag(sc, "--ema-ndim", m.ema_ndim, "mega: EMA dimension per channel (default: the preset's)")
      ->check(integer_range(1, 64));
  optional_flag(sc, "--truncation", m.truncation, "mega: EMA kernel length (0 = the whole sequence)")
      ->check(integer_range(0, lim::kMaxSequence));
  optional_flag(sc, "--chunk", m.chunk, "mega / flash: attention within chunks of N positions (-1 = full attention)")
      ->check(integer_range(-1, lim::kMaxSequence));
  sc->add_option("--norm", m.norm, "mega / flash: layernorm, scalenorm or batchnorm (default: the preset's)")
      ->check(CLI::IsMember({"layernorm", "scalenorm", "batchnorm"}));
  optional_flag(sc, "--prenorm", m.prenorm, "mega: true = pre-norm blocks, false = post-norm (default: the preset's)");
  sc->add_option("--attn-fn", m.attn_fn, "mega / flash attention function: softmax, laplace or relu2")
      ->check(CLI::IsMember({"softmax", "laplace", "relu2"}));
  optional_flag(sc, "--hidden-dropout", m.hidden_dropout,
                "mega: dropout on V and in the FFN; lstm: between layers (default: the preset's)")
      ->check(number_range(0.0, 0.999));
  optional_flag(sc, "--lstm-hidden", m.lstm_hidden, "lstm: hidden width per direction (default: the preset's)")
      ->check(integer_range(1, lim::kMaxWidth));
  sc->add_option("--lstm-pool", m.lstm_pool, "lstm: mean (masked mean of the outputs) or last (final states)")
      ->check(CLI::IsMember({"mean", "last"}));
}

std::string families_help() {
  std::string s = "Model family:";
  for (const models::LraFamily& f : models::lra_families())
    s += fmt::format(" {} ({}{}; default mixer {});", f.name, f.description,
                     f.unavailable.empty() ? "" : ", not built yet", f.default_mixer);
  return s;
}

void add_model_flags(CLI::App* sc, ModelFlags& m) {
  // The bounds of checkpoint metadata (models/config_metadata.h).
  namespace lim = models::limits;
  optional_flag(sc, "--embed-dim", m.embed_dim, "Model width (default: the preset's)")
      ->check(integer_range(1, lim::kMaxWidth));
  optional_flag(sc, "--depth", m.depth, "Encoder blocks (default: the preset's)")
      ->check(integer_range(1, lim::kMaxDepth));
  optional_flag(sc, "--heads", m.num_heads, "Attention heads (default: the preset's)")
      ->check(integer_range(1, lim::kMaxHeads));
  optional_flag(sc, "--qkv-dim", m.qkv_dim, "Mixing (qkv) width (default: the preset's; 0 = the model width)")
      ->check(integer_range(0, lim::kMaxWidth));
  optional_flag(sc, "--mlp-dim", m.mlp_dim, "MLP hidden width (default: the preset's)")
      ->check(integer_range(1, lim::kMaxWidth));
  optional_flag(sc, "--max-len", m.max_len,
                "Longest input sequence; longer ones are cut (text tasks; default: the "
                "preset's)")
      ->check(kSize);
  optional_flag(sc, "--dropout", m.dropout, "Dropout (default: the preset's)")->check(number_range(0.0, 0.999));
  optional_flag(sc, "--attn-dropout", m.attn_dropout, "Attention dropout (default: the preset's)")
      ->check(number_range(0.0, 0.999));
  sc->add_option("--pool", m.pool, "cls (a class token) or mean (masked mean) (default: the preset's)")
      ->check(CLI::IsMember({"cls", "mean"}));
  sc->add_option("--pos", m.pos, "Positions: sinusoidal, learned or none (default: the preset's)")
      ->check(CLI::IsMember({"sinusoidal", "learned", "none"}));
  sc->add_option("--embedding", m.embedding, "tokens (an embedding table) or pixels (real-valued, pixel tasks)")
      ->check(CLI::IsMember({"tokens", "pixels"}));
  sc->add_option("--dual", m.dual, "Retrieval head input: nli ([u, v, u*v, u-v]) or concat ([u, v])")
      ->check(CLI::IsMember({"nli", "concat"}));
  sc->add_flag("--causal", m.causal, "Causal token mixing (token i sees tokens j <= i)");
  optional_flag(sc, "--head-dim", m.head_dim, "Classifier hidden width (MEGA's cls_out; default: the preset's)")
      ->check(integer_range(0, lim::kMaxWidth));
  add_family_flags(sc, m);
}

void add_data_flags(CLI::App* sc, DataFlags& d, bool generator_flags) {
  sc->add_option("--data", d.data_dir,
                 "The task's data folder in the release's layout (`lra info --task T` says "
                 "which); default for listops / pathfinder / pathx: generated into --cache");
  sc->add_option("--cache", d.cache_dir,
                 "Folder of generated data sets (default $MIXGRAD_DATA_DIR, else "
                 "$XDG_CACHE_HOME/mixgrad, else ~/.cache/mixgrad)");
  sc->add_option("--difficulty", d.difficulty, "Pathfinder / Path-X difficulty: easy, intermediate or hard (default)")
      ->check(CLI::IsMember({"easy", "intermediate", "hard"}));
  optional_flag(sc, "--split-seed", d.split_seed, "Seed of the Pathfinder / Path-X 80/10/10 split (default 42)");
  if (generator_flags)
    optional_flag(sc, "--samples", d.samples,
                  "Generated data: ListOps training samples (validation and test "
                  "scaled alike) or Pathfinder images (default: the preset's)")
        ->check(integer_range(int64_t(10), int64_t(1) << 32));
}

void add_run_flags(CLI::App* sc, std::string& device, bool& quiet) {
  sc->add_option("--device", device, "auto, cpu, cuda or cuda:N")->check(device_spec())->capture_default_str();
  sc->add_flag("--quiet", quiet, "No progress lines");
}

// The recipe flags of `train` and `compare` (unset = the preset's).
void add_recipe_flags(CLI::App* tr, TrainOptions& t) {
  optional_flag(tr, "--epochs", t.epochs, "Training epochs (default: the preset's)")
      ->check(integer_range(int64_t(1), int64_t(1000000)));
  optional_flag(tr, "--updates", t.updates, "Total optimiser steps instead of whole epochs (default: the preset's)")
      ->check(kCount);
  optional_flag(tr, "--batch-size", t.batch_size, "Batch size (default: the preset's)")
      ->check(integer_range(int64_t(1), int64_t(65536)));
  optional_flag(tr, "--lr", t.lr, "Peak learning rate (default: the preset's)")->check(finite_number(true));
  tr->add_option("--schedule", t.schedule, "Learning-rate schedule after warm-up: cosine, linear, rsqrt, constant")
      ->check(CLI::IsMember({"cosine", "linear", "rsqrt", "constant"}));
  optional_flag(tr, "--warmup", t.warmup, "Linear warm-up steps (default: the preset's)")->check(kCount);
  optional_flag(tr, "--weight-decay", t.weight_decay, "Decoupled weight decay (default: the preset's)")
      ->check(finite_number(false));
  optional_flag(tr, "--clip-norm", t.clip_norm, "Clip the gradient norm to this (0 = off; default: the preset's)")
      ->check(finite_number(false));
  optional_flag(tr, "--label-smoothing", t.label_smoothing, "Label smoothing in [0, 1) (default 0)")
      ->check(number_range(0.0, 0.999999));
  optional_flag(tr, "--eval-every", t.eval_every, "Also validate every N steps (default: at the end of each epoch)")
      ->check(kCount);
}

// Task and preset, kernels, logging and limits: shared by `train` and `compare`.
void add_task_flags(CLI::App* tr, TrainOptions& t) {
  tr->add_option("--task", t.task, "Task")->check(CLI::IsMember(task_names()))->capture_default_str();
  tr->add_option("--preset", t.preset, "paper (the LRA configuration) or mini (minutes on a CPU)")
      ->check(CLI::IsMember(lra_preset_names()))
      ->capture_default_str();
}

void add_kernel_and_limit_flags(CLI::App* tr, TrainOptions& t) {
  add_precision_flags(tr, t.precision, t.tf32);
  tr->add_option("--attention", t.attention, "Softmax attention kernels: automatic, fused or composite")
      ->check(CLI::IsMember({"automatic", "fused", "composite"}))
      ->capture_default_str();
  tr->add_option("--log-every", t.log_every, "Progress line and metrics record every N steps")
      ->check(integer_range(int64_t(1), int64_t(1) << 40))
      ->capture_default_str();
  tr->add_option("--train-limit", t.train_limit, "Use only the first N training samples (0 = all)")->check(kCount);
  tr->add_option("--val-limit", t.val_limit, "Validate on the first N validation samples (0 = all)")->check(kCount);
  tr->add_option("--test-limit", t.test_limit, "Test on the first N test samples (0 = all)")->check(kCount);
  add_run_flags(tr, t.device, t.quiet);
}

void add_train(CLI::App& app, TrainOptions& t, std::vector<std::string>& mixer_opts) {
  CLI::App* tr = app.add_subcommand("train", "Train on an LRA task; checkpoints, metrics.jsonl and a report in --out");
  add_task_flags(tr, t);
  tr->add_option("--model", t.model, families_help())
      ->check(CLI::IsMember(models::lra_model_names()))
      ->capture_default_str();
  tr->add_option("--mixer", t.mixer,
                 "Token mixer (default: the model's). transformer: any registered mixer; mega: gated (MEGA's "
                 "attention) or csp (CSP-MEGA)")
      ->check(CLI::IsMember(models::lra_all_mixer_names()));
  add_mixer_option_flag(tr, mixer_opts);
  add_model_flags(tr, t.model_flags);
  add_data_flags(tr, t.data, true);
  add_recipe_flags(tr, t);
  tr->add_option("--seed", t.seed, "Seed of the weights, data order and dropout")->capture_default_str();
  tr->add_option("--out", t.out_dir, "Run folder (default runs/lra-<task>-<preset>-<model>-<mixer>)");
  tr->add_flag("--resume", t.resume,
               "Continue the run in --out exactly where it left off (its recorded model, "
               "recipe and data are used)");
  tr->add_flag("--overwrite", t.overwrite, "Start a fresh run even if --out already holds one");
  tr->add_option("--max-steps", t.max_steps, "Stop after N optimiser steps in total (resumable; 0 = no limit)")
      ->check(kCount);
  add_kernel_and_limit_flags(tr, t);
}

void add_compare(CLI::App& app, CompareOptions& c, std::vector<std::string>& mixer_opts) {
  CLI::App* cm = app.add_subcommand(
      "compare",
      "Train every listed model x mixer on one task with the same preset, recipe and seeds (one run folder each, "
      "resumable), then write compare.md, compare.json and compare.html to --out");
  add_task_flags(cm, c.base);
  cm->add_option("--models", c.models, "Comma-separated model families, or all (every built family)")
      ->check(name_list(models::lra_model_names(), "--models"))
      ->capture_default_str();
  cm->add_option("--mixers", c.mixers,
                 "Comma-separated token mixers, or all (each model's own: every registered mixer for the "
                 "transformer, gated and csp for mega); a model x mixer pair the model does not take is skipped")
      ->check(name_list(models::lra_all_mixer_names(), "--mixers"))
      ->capture_default_str();
  cm->add_option("--seeds", c.seeds, "Seeds per model x mixer (0 .. N-1)")
      ->check(integer_range(int64_t(1), int64_t(1000)))
      ->capture_default_str();
  cm->add_option("--out", c.out_dir, "Comparison folder (default runs/lra-compare-<task>-<preset>)");
  add_mixer_option_flag(cm, mixer_opts);
  add_model_flags(cm, c.base.model_flags);
  add_data_flags(cm, c.base.data, true);
  add_recipe_flags(cm, c.base);
  add_kernel_and_limit_flags(cm, c.base);
}

void add_eval_flags(CLI::App* sc, EvalOptions& e) {
  sc->add_option("--checkpoint", e.checkpoint, "A best/last.safetensors file of an lra run")->required();
  sc->add_option("--split", e.split, "Which samples: train, val or test")
      ->check(CLI::IsMember({"train", "val", "test"}))
      ->capture_default_str();
  add_data_flags(sc, e.data, false);
  sc->add_option("--batch-size", e.batch_size, "Batch size")
      ->check(integer_range(int64_t(1), int64_t(65536)))
      ->capture_default_str();
  sc->add_option("--limit", e.limit, "Only the first N samples of the split (0 = all)")->check(kCount);
  add_run_flags(sc, e.device, e.quiet);
}

void add_generate(CLI::App& app, GenerateOptions& g) {
  CLI::App* ge = app.add_subcommand("generate", "Write a generated task's data set in the release's format");
  ge->add_option("task", g.task, "listops, pathfinder or pathx")
      ->required()
      ->check(CLI::IsMember({"listops", "pathfinder", "pathx"}));
  ge->add_option("--preset", g.preset, "Sizes of the preset (paper: LRA's; mini)")
      ->check(CLI::IsMember(lra_preset_names()))
      ->capture_default_str();
  ge->add_option("--out", g.out_dir, "Folder to write (default: the cache folder `train` reads)");
  add_data_flags(ge, g.data, true);
  optional_flag(ge, "--seed", g.seed, "Generator seed (default 0)");
  optional_flag(ge, "--min-length", g.min_length, "ListOps: samples are longer than this (default: the preset's)")
      ->check(kCount);
  optional_flag(ge, "--max-length", g.max_length, "ListOps: samples are shorter than this (default: the preset's)")
      ->check(kSize);
  optional_flag(ge, "--max-depth", g.max_depth, "ListOps: deepest nesting (default 10)")->check(integer_range(1, 64));
  optional_flag(ge, "--max-args", g.max_args, "ListOps: most arguments of an operator (default 10)")
      ->check(integer_range(2, 64));
  ge->add_flag("--quiet", g.quiet, "No progress lines");
}

}  // namespace

CliCommand parse_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CliCommand c;
  CLI::App app{"mixgrad lra: train, evaluate and run the Long Range Arena tasks with pluggable token mixers"};
  app.require_subcommand(1);
  std::vector<std::string> train_opts, info_opts, compare_opts;
  add_train(app, c.train, train_opts);
  add_compare(app, c.compare, compare_opts);
  CLI::App* ev = app.add_subcommand("eval", "Accuracy of a checkpoint on a split of its task's data");
  add_eval_flags(ev, c.eval);
  CLI::App* pr = app.add_subcommand("predict", "Logits of a checkpoint on a split, saved as safetensors");
  add_eval_flags(pr, c.predict.eval);
  pr->add_option("--out", c.predict.out, "Output .safetensors (logits [N, classes], labels [N], indices [N])")
      ->required();
  CLI::App* in = app.add_subcommand("info", "The task, the model, every parameter name and shape, and the total");
  in->add_option("--task", c.info_task, "Task")->check(CLI::IsMember(task_names()))->capture_default_str();
  in->add_option("--preset", c.info_preset, "Preset")->check(CLI::IsMember(lra_preset_names()))->capture_default_str();
  in->add_option("--model", c.info_model, families_help())
      ->check(CLI::IsMember(models::lra_model_names()))
      ->capture_default_str();
  in->add_option("--mixer", c.info_mixer, "Token mixer (default: the model's)")
      ->check(CLI::IsMember(models::lra_all_mixer_names()));
  add_mixer_option_flag(in, info_opts);
  add_model_flags(in, c.info_model_flags);
  add_generate(app, c.generate);
  c.exit_code = parse_command_line(app, argc, argv, out, err, "lra", [&] {
    c.train.mixer_options = mixer_options(train_opts);
    c.info_mixer_options = mixer_options(info_opts);
    c.compare.base.mixer_options = mixer_options(compare_opts);
  });
  c.compare.command = command_line_text(argc, argv);
  if (c.exit_code >= 0) return c;
  for (CLI::App* sc : app.get_subcommands())
    if (sc->parsed()) c.command = sc->get_name();
  return c;
}

int lra_main(int argc, const char* const* argv) {
  CliCommand c = parse_cli(argc, argv, std::cout, std::cerr);
  if (c.exit_code >= 0) return c.exit_code;
  return run_reporting_errors("lra", [&] {
    if (c.command == "train") {
      (void)run_training(c.train);
    } else if (c.command == "eval") {
      (void)run_eval(c.eval);
    } else if (c.command == "predict") {
      const int64_t n = run_predict(c.predict);
      std::printf("predict: wrote logits for %lld samples to %s\n", (long long)n, c.predict.out.c_str());
    } else if (c.command == "info") {
      std::fputs(
          model_info(c.info_task, c.info_preset, c.info_mixer, c.info_model_flags, c.info_mixer_options, c.info_model)
              .c_str(),
          stdout);
    } else if (c.command == "compare") {
      (void)run_compare(c.compare);
    } else if (c.command == "generate") {
      (void)run_generate(c.generate);
    }
  });
}

}  // namespace mixgrad::app::lra
