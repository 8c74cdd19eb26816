// The `vit` command line: train / eval / predict / info flags (CLI11), and vit_main.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "apps/common/options.h"
#include "apps/vit/vit_app.h"
#include "models/config_metadata.h"
#include "nn/mixer.h"

namespace mixgrad::app {

namespace {

const std::vector<std::string> kDatasets{"fashion-mnist", "mnist", "cifar10", "cifar100", "folder"};
const auto kCount = integer_range(int64_t(0), int64_t(1) << 40);

// The model-shape flags of `train` and `info`.
void add_model_flags(CLI::App* sc, ModelOverrides& m) {
  sc->add_option("--pool", m.pool,
                 "Classifier input: token (the class token) or avg (mean of the patch tokens; a preset with a class "
                 "token keeps it in the sequence) (default: the preset's)")
      ->check(CLI::IsMember({"token", "avg"}));
  // The bounds of checkpoint metadata (models/config_metadata.h).
  const auto width = integer_range(1, models::limits::kMaxWidth);
  optional_flag(sc, "--embed-dim", m.embed_dim,
                "Model width D (default: the preset's; must be a multiple of the heads)")
      ->check(width);
  optional_flag(sc, "--depth", m.depth, "Number of encoder blocks (default: the preset's)")
      ->check(integer_range(1, models::limits::kMaxDepth));
  optional_flag(sc, "--heads", m.num_heads, "Attention heads (default: the preset's; must divide the width)")
      ->check(integer_range(1, models::limits::kMaxHeads));
  optional_flag(sc, "--mlp-dim", m.mlp_hidden, "MLP hidden width M (default: the preset's)")->check(width);
  sc->add_option("--block", m.block,
                 "Block structure: vit (the preset's) or s2mlpv2 = the S2-MLPv2 block and model head of "
                 "specs/mixers.md §1.4 on the preset's patch grid: x + S2Attention(LN(x)), x + MLP(LN(x)) with "
                 "expansion 3 (M = 3·D unless --mlp-dim), dropout 0, mean over the grid -> Linear (pool avg unless "
                 "--pool); implies --mixer s2mlpv2. One stage only: the reference's second stage (a patch-merging "
                 "Conv2d, then a wider, deeper stage) is not built, and the ViT's position embedding and fc_norm stay")
      ->check(CLI::IsMember({"vit", "s2mlpv2"}));
}

// The recipe flags of `train` (unset = the preset's recipe).
void add_recipe_flags(CLI::App* tr, TrainOptions& t) {
  optional_flag(tr, "--epochs", t.epochs, "Training epochs (default: the preset's)")
      ->check(integer_range(int64_t(1), int64_t(1000000)));
  optional_flag(tr, "--batch-size", t.batch_size, "Batch size (default: the preset's)")
      ->check(integer_range(int64_t(1), int64_t(65536)));
  optional_flag(tr, "--lr", t.lr, "Peak learning rate (default: the preset's)")->check(finite_number(true));
  optional_flag(tr, "--weight-decay", t.weight_decay, "AdamW decoupled weight decay (default: the preset's)")
      ->check(finite_number(false));
  optional_flag(tr, "--warmup", t.warmup, "Linear warm-up steps (default: the preset's)")->check(kCount);
  optional_flag(tr, "--updates", t.updates,
                "Total optimiser steps instead of whole epochs; the schedule spans them (default: the preset's "
                "epochs)")
      ->check(integer_range(int64_t(1), int64_t(1) << 40));
  optional_flag(tr, "--label-smoothing", t.label_smoothing, "Label smoothing in [0, 1) (default 0)")
      ->check(number_range(0.0, 0.999999));
  optional_flag(tr, "--crop-padding", t.crop_padding,
                "Random-crop zero padding in pixels, 0 = no crop (default: the preset's)")
      ->check(integer_range(int64_t(0), int64_t(64)));
  auto* no_flip = tr->add_flag_function(
      "--no-flip", [&t](int64_t) { t.flip = false; }, "No random horizontal flip (MNIST is never flipped)");
  tr->add_flag_function(
        "--flip", [&t](int64_t) { t.flip = true; }, "Random horizontal flip (default: on, except for MNIST)")
      ->excludes(no_flip);
  auto* no_decay = tr->add_flag_function(
      "--no-decay-1d", [&t](int64_t) { t.decay_1d = false; },
      "No weight decay on biases, norm weights, pos_embed and cls_token (timm's "
      "exemptions; the default for fmnist-tiny)");
  tr->add_flag_function(
        "--decay-1d", [&t](int64_t) { t.decay_1d = true; },
        "Weight decay on every parameter (PyTorch AdamW over one group; the default for the other "
        "presets)")
      ->excludes(no_decay);
}

// The data set and preset, shared by `train` and `compare`.
void add_data_flags(CLI::App* tr, TrainOptions& t) {
  tr->add_option("--dataset", t.dataset,
                 "Data set: fashion-mnist, mnist, cifar10, cifar100, or folder (ImageNet layout "
                 "--data/train/<class>/*, --data/val/<class>/*; JPEG or PNG, resized and centre-cropped to the "
                 "preset's size) (default: the preset's, fashion-mnist for fmnist-*)")
      ->check(CLI::IsMember(kDatasets));
  tr->add_option("--data", t.data_dir,
                 "Data folder (default for fashion-mnist: $MIXGRAD_FASHION_MNIST_DIR or "
                 "/usr/share/datasets/fashion-mnist; required for the others)");
  tr->add_option("--preset", t.preset, "Model + recipe preset")
      ->check(CLI::IsMember(models::vit_preset_names()))
      ->capture_default_str();
}

// Device, kernels, logging and limits, shared by `train` and `compare`.
void add_device_and_limit_flags(CLI::App* tr, TrainOptions& t) {
  tr->add_option("--device", t.device, "auto, cpu, cuda or cuda:N")->check(device_spec())->capture_default_str();
  add_precision_flags(tr, t.precision, t.tf32);
  tr->add_option("--attention", t.attention,
                 "Softmax attention kernels: automatic (fused where it can run), fused "
                 "(flash-style, O(N) memory) or composite (matmul + softmax + matmul)")
      ->check(CLI::IsMember({"automatic", "fused", "composite"}))
      ->capture_default_str();
  tr->add_option("--log-every", t.log_every, "Progress line and metrics record every N steps")
      ->check(integer_range(int64_t(1), int64_t(1) << 40))
      ->capture_default_str();
  tr->add_option("--train-limit", t.train_limit, "Use only the first N training images (0 = all)")->check(kCount);
  auto* val_limit =
      tr->add_option("--val-limit", t.val_limit, "Validate on the first N validation images (0 = all)")->check(kCount);
  tr->add_flag("--full-train", t.full_train,
               "Train on every training image with no validation split and test the final weights (specs/vit.md "
               "§9 parity mode; the default holds out a validation set and tests the best-validation checkpoint)")
      ->excludes(val_limit);
  tr->add_option("--test-limit", t.test_limit, "Test on the first N test images (0 = all)")->check(kCount);
  tr->add_flag("--quiet", t.quiet, "No progress lines");
}

// How `train` runs: run folder, resume and stops.
void add_run_flags(CLI::App* tr, TrainOptions& t) {
  tr->add_option("--seed", t.seed, "Seed of the weights, data order, augmentation and dropout")->capture_default_str();
  tr->add_option("--out", t.out_dir, "Run folder (default runs/<preset>-<mixer>)");
  tr->add_flag("--resume", t.resume,
               "Continue the run in --out exactly where last.safetensors left off (its recorded "
               "model and recipe are used; training flags other than --max-steps, --log-every, "
               "--device, --data, --tf32 and --precision are ignored)");
  tr->add_flag("--overwrite", t.overwrite, "Start a fresh run even if --out already holds one");
  tr->add_option("--max-steps", t.max_steps,
                 "Stop after N optimiser steps in total, saving last.safetensors (the "
                 "schedule is unchanged; 0 = run to the end)")
      ->check(kCount);
}

CLI::App* add_train(CLI::App& app, TrainOptions& t, std::vector<std::string>& mixer_opts) {
  CLI::App* tr = app.add_subcommand("train", "Train a ViT; writes checkpoints, metrics.jsonl and a report to --out");
  add_data_flags(tr, t);
  tr->add_option("--mixer", t.mixer, "Token mixer")->check(CLI::IsMember(nn::mixer_names()))->capture_default_str();
  add_mixer_option_flag(tr, mixer_opts);
  add_model_flags(tr, t.model);
  add_recipe_flags(tr, t);
  add_device_and_limit_flags(tr, t);
  add_run_flags(tr, t);
  return tr;
}

CLI::App* add_compare(CLI::App& app, CompareOptions& c, std::vector<std::string>& mixer_opts) {
  CLI::App* cm = app.add_subcommand(
      "compare",
      "Train every listed mixer with the same preset, recipe and seeds (one run folder each, resumable), then "
      "write compare.md, compare.json and compare.html to --out");
  add_data_flags(cm, c.base);
  cm->add_option("--mixers", c.mixers, "Comma-separated token mixers, or all (every registered mixer)")
      ->check(name_list(nn::mixer_names(), "--mixers"))
      ->capture_default_str();
  cm->add_option("--seeds", c.seeds, "Seeds per mixer (0 .. N-1)")
      ->check(integer_range(int64_t(1), int64_t(1000)))
      ->capture_default_str();
  cm->add_option("--out", c.out_dir, "Comparison folder (default runs/compare-<preset>)");
  add_mixer_option_flag(cm, mixer_opts);
  add_model_flags(cm, c.base.model);
  add_recipe_flags(cm, c.base);
  add_device_and_limit_flags(cm, c.base);
  return cm;
}

CLI::App* add_eval(CLI::App& app, EvalOptions& e) {
  CLI::App* ev = app.add_subcommand("eval", "Test accuracy of a checkpoint (config from its metadata)");
  ev->add_option("--checkpoint", e.checkpoint, "A best/last.safetensors file")->required();
  ev->add_option("--dataset", e.dataset, "Data set (default: the one recorded in the checkpoint)")
      ->check(CLI::IsMember(kDatasets));
  ev->add_option("--data", e.data_dir, "Data folder (default for fashion-mnist: the Debian package's)");
  ev->add_option("--device", e.device, "auto, cpu, cuda or cuda:N")->check(device_spec())->capture_default_str();
  ev->add_option("--batch-size", e.batch_size, "Evaluation batch size")
      ->check(integer_range(int64_t(1), int64_t(65536)))
      ->capture_default_str();
  ev->add_option("--test-limit", e.test_limit, "Evaluate on the first N test images (0 = all)")->check(kCount);
  return ev;
}

CLI::App* add_predict(CLI::App& app, PredictOptions& p) {
  CLI::App* pr = app.add_subcommand(
      "predict", "The predicted class name of every image (one line each: image, class, probability)");
  pr->add_option("--checkpoint", p.checkpoint, "A best/last.safetensors file")->required();
  pr->add_option("--images", p.images,
                 "An IDX file of uint8 images [N,H,W] or [N,C,H,W] (.gz or plain), a JPEG / PNG file, or a folder "
                 "of them (resized and centre-cropped to the model's size)")
      ->required();
  pr->add_option("--out", p.out, "Also save tensors 'logits' [N, classes] and 'predictions' [N] to this .safetensors");
  pr->add_flag("--quiet", p.quiet, "No per-image lines");
  pr->add_option("--device", p.device, "auto, cpu, cuda or cuda:N")->check(device_spec())->capture_default_str();
  pr->add_option("--batch-size", p.batch_size, "Batch size")
      ->check(integer_range(int64_t(1), int64_t(65536)))
      ->capture_default_str();
  return pr;
}

CLI::App* add_info(CLI::App& app, CliCommand& c, std::vector<std::string>& mixer_opts) {
  CLI::App* in = app.add_subcommand("info", "Architecture, parameter names and shapes, and the parameter count");
  in->add_option("--preset", c.info_preset, "Preset")
      ->check(CLI::IsMember(models::vit_preset_names()))
      ->capture_default_str();
  in->add_option("--mixer", c.info_mixer, "Token mixer")
      ->check(CLI::IsMember(nn::mixer_names()))
      ->capture_default_str();
  add_mixer_option_flag(in, mixer_opts);
  add_model_flags(in, c.info_model);
  return in;
}

}  // namespace

CliCommand parse_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CliCommand c;
  CLI::App app{"mixgrad vit: train, evaluate and run Vision Transformers with pluggable token mixers"};
  app.require_subcommand(1);
  std::vector<std::string> train_mixer_opts, info_mixer_opts, compare_mixer_opts;
  const std::vector<CLI::App*> subcommands = {add_train(app, c.train, train_mixer_opts), add_eval(app, c.eval),
                                              add_predict(app, c.predict), add_info(app, c, info_mixer_opts),
                                              add_compare(app, c.compare, compare_mixer_opts)};
  c.exit_code = parse_command_line(app, argc, argv, out, err, "vit", [&] {
    c.train.mixer_options = mixer_options(train_mixer_opts);
    c.info_mixer_options = mixer_options(info_mixer_opts);
    // --block s2mlpv2 implies --mixer s2mlpv2 (another explicitly given mixer is an error).
    const auto block_mixer = [](CLI::App* sc, const std::string& block, std::string& mixer) {
      if (block != "s2mlpv2") return;
      if (sc->get_option("--mixer")->count() > 0 && mixer != "s2mlpv2")
        throw Error(fmt::format("--block s2mlpv2 builds the S2-MLPv2 block, whose mixer is s2mlpv2, not {}", mixer));
      mixer = "s2mlpv2";
    };
    block_mixer(subcommands[0], c.train.model.block, c.train.mixer);
    block_mixer(subcommands[3], c.info_model.block, c.info_mixer);
    c.compare.base.mixer_options = mixer_options(compare_mixer_opts);
  });
  c.compare.command = command_line_text(argc, argv);
  if (c.exit_code >= 0) return c;
  for (CLI::App* sc : subcommands)
    if (sc->parsed()) c.command = sc->get_name();
  return c;
}

int vit_main(int argc, const char* const* argv) {
  CliCommand c = parse_cli(argc, argv, std::cout, std::cerr);
  if (c.exit_code >= 0) return c.exit_code;
  return run_reporting_errors("vit", [&] {
    if (c.command == "train") {
      (void)run_training(c.train);
    } else if (c.command == "eval") {
      (void)run_eval(c.eval);
    } else if (c.command == "predict") {
      const int64_t n = run_predict(c.predict);
      std::printf("predict: wrote logits for %lld images to %s\n", (long long)n, c.predict.out.c_str());
    } else if (c.command == "compare") {
      (void)run_compare(c.compare);
    } else if (c.command == "info") {
      std::fputs(model_info(c.info_preset, c.info_mixer, c.info_model, c.info_mixer_options).c_str(), stdout);
    }
  });
}

}  // namespace mixgrad::app
