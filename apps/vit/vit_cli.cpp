// The `vit` command line: train / eval / predict / info flags (CLI11), and vit_main.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "apps/common/options.h"
#include "apps/vit/vit_app.h"
#include "nn/mixer.h"

namespace mixgrad::app {

// ---- command line ---------------------------------------------------------------------------------------------
namespace {
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
  tr->add_option("--dataset", t.dataset,
                 "Data set: fashion-mnist, mnist, cifar10, cifar100 (default: the preset's, "
                 "fashion-mnist for fmnist-*)")
      ->check(CLI::IsMember(kDatasets));
  tr->add_option("--data", t.data_dir,
                 "Data folder (default for fashion-mnist: $MIXGRAD_FASHION_MNIST_DIR or "
                 "/usr/share/datasets/fashion-mnist; required for the others)");
  tr->add_option("--preset", t.preset, "Model + recipe preset")->check(CLI::IsMember(presets))->capture_default_str();
  tr->add_option("--mixer", t.mixer, "Token mixer")->check(CLI::IsMember(mixers))->capture_default_str();
  std::vector<std::string> train_mixer_opts, info_mixer_opts;
  add_mixer_option_flag(tr, train_mixer_opts);
  ModelFlags train_model, info_model;
  train_model.add(tr, t.model);
  int64_t epochs = 0, batch = 0, warmup = 0;
  double lr = 0, wd = 0, ls = 0;
  auto* o_epochs = tr->add_option("--epochs", epochs, "Training epochs (default: the preset's)")
                       ->check(CLI::Range(int64_t(1), int64_t(1000000)));
  auto* o_batch = tr->add_option("--batch-size", batch, "Batch size (default: the preset's)")
                      ->check(CLI::Range(int64_t(1), int64_t(65536)));
  auto* o_lr = tr->add_option("--lr", lr, "Peak learning rate (default: the preset's)")->check(finite_number(true));
  auto* o_wd = tr->add_option("--weight-decay", wd, "AdamW decoupled weight decay (default: the preset's)")
                   ->check(finite_number(false));
  auto* o_warm = tr->add_option("--warmup", warmup, "Linear warm-up steps (default: the preset's)")
                     ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  auto* o_ls = tr->add_option("--label-smoothing", ls, "Label smoothing in [0, 1) (default 0)")
                   ->check(CLI::Range(0.0, 0.999999));
  int64_t crop = 0;
  bool no_flip = false, flip = false;
  auto* o_crop =
      tr->add_option("--crop-padding", crop, "Random-crop zero padding in pixels, 0 = no crop (default: the preset's)")
          ->check(CLI::Range(int64_t(0), int64_t(64)));
  auto* o_noflip = tr->add_flag("--no-flip", no_flip, "No random horizontal flip (MNIST is never flipped)");
  auto* o_flip =
      tr->add_flag("--flip", flip, "Random horizontal flip (default: on, except for MNIST)")->excludes(o_noflip);
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
  tr->add_option("--attention", t.attention,
                 "Softmax attention kernels: automatic (fused where it can run), fused "
                 "(flash-style, O(N) memory) or composite (matmul + softmax + matmul)")
      ->check(CLI::IsMember({"automatic", "fused", "composite"}))
      ->capture_default_str();
  tr->add_option("--out", t.out_dir, "Run folder (default runs/<preset>-<mixer>)");
  tr->add_flag("--resume", t.resume,
               "Continue the run in --out exactly where last.safetensors left off (its recorded "
               "model and recipe are used; training flags other than --max-steps, --log-every, "
               "--device, --data and --tf32 are ignored)");
  tr->add_flag("--overwrite", t.overwrite, "Start a fresh run even if --out already holds one");
  tr->add_option("--log-every", t.log_every, "Progress line and metrics record every N steps")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40))
      ->capture_default_str();
  tr->add_option("--max-steps", t.max_steps,
                 "Stop after N optimiser steps in total, saving last.safetensors (the "
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
  ev->add_option("--batch-size", e.batch_size, "Evaluation batch size")
      ->check(CLI::Range(int64_t(1), int64_t(65536)))
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
  pr->add_option("--batch-size", p.batch_size, "Batch size")
      ->check(CLI::Range(int64_t(1), int64_t(65536)))
      ->capture_default_str();

  // info
  CLI::App* in = app.add_subcommand("info", "Architecture, parameter names and shapes, and the parameter count");
  in->add_option("--preset", c.info_preset, "Preset")->check(CLI::IsMember(presets))->capture_default_str();
  in->add_option("--mixer", c.info_mixer, "Token mixer")->check(CLI::IsMember(mixers))->capture_default_str();
  add_mixer_option_flag(in, info_mixer_opts);
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
  try {
    t.mixer_options = mixer_options(train_mixer_opts);
    c.info_mixer_options = mixer_options(info_mixer_opts);
  } catch (const std::exception& ex) {
    err << "vit: error: " << ex.what() << "\n";
    c.exit_code = 2;
    return c;
  }
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
      std::fputs(model_info(c.info_preset, c.info_mixer, c.info_model, c.info_mixer_options).c_str(), stdout);
    }
    return 0;
  } catch (const std::exception& ex) {
    std::fflush(stdout);
    std::fprintf(stderr, "vit: error: %s\n", ex.what());
    return 1;
  }
}

}  // namespace mixgrad::app
