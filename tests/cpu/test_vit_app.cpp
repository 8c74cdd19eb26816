// The vit app (apps/common/vit_app.*): exact resume, predict output, checkpoint errors, CLI parsing, run files.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

// Declarations only: the implementation (PNG only) is compiled once, in apps/data/png_gray.cpp.
#include <stb_image.h>

#include "apps/common/report.h"
#include "apps/vit/vit_app.h"
#include "nn/serialize.h"
#include "tests/common/check.h"
#include "tests/common/trainer_runs.h"

namespace fs = std::filesystem;
using namespace mixgrad;
using Catch::Contains;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("mixgrad_vit_app_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

app::CliCommand parse(std::vector<const char*> args, std::string* err_text = nullptr) {
  args.insert(args.begin(), "vit");
  std::ostringstream out, err;
  app::CliCommand c = app::parse_cli(int(args.size()), args.data(), out, err);
  if (err_text) *err_text = err.str() + out.str();
  return c;
}

}  // namespace

TEST_CASE("vit app: a run interrupted by --max-steps and resumed equals an uninterrupted run bit for bit", "[vit-app]") {
  TempDir tmp;
  const fs::path data = testing::write_bar_dataset(tmp.path / "data");
  const app::TrainSummary a = app::run_training(testing::tiny_vit_run(data, tmp.path / "a"));
  REQUIRE(a.finished);
  REQUIRE(a.global_step == 12);
  REQUIRE(a.total_steps == 12);

  app::TrainOptions b = testing::tiny_vit_run(data, tmp.path / "b");
  b.max_steps = 4;  // mid epoch 1
  app::TrainSummary sb = app::run_training(b);
  REQUIRE_FALSE(sb.finished);
  REQUIRE(sb.global_step == 4);
  REQUIRE_FALSE(fs::exists(tmp.path / "b" / "summary.json"));
  b.resume = true;
  b.max_steps = 6;  // exactly the epoch boundary
  sb = app::run_training(b);
  REQUIRE(sb.global_step == 6);
  b.max_steps = 0;
  b.lr = 1.0;  // ignored on resume: the recorded recipe is used
  sb = app::run_training(b);
  REQUIRE(sb.finished);
  REQUIRE(sb.global_step == 12);

  for (const char* file : {"last.safetensors", "best.safetensors"}) {
    nn::Metadata ma, mb;
    const nn::NamedTensors ta = nn::load_tensors(tmp.path / "a" / file, &ma);
    const nn::NamedTensors tb = nn::load_tensors(tmp.path / "b" / file, &mb);
    REQUIRE(ta.size() == tb.size());
    for (size_t i = 0; i < ta.size(); ++i) {
      INFO(file << " " << ta[i].first);
      REQUIRE(ta[i].first == tb[i].first);
      REQUIRE_CLOSE(testing::bit_equal(tb[i].second, ta[i].second));
    }
    REQUIRE(ma.at("embed_dim") == "32");  // ViTConfig metadata travels with the weights
    REQUIRE(ma.at("normalize.mean") == mb.at("normalize.mean"));
  }
  REQUIRE(a.test_accuracy == sb.test_accuracy);
  REQUIRE(a.best_val_accuracy == sb.best_val_accuracy);
  REQUIRE(a.test_accuracy >= 0.0);
  REQUIRE(a.test_accuracy <= 1.0);

  // Run files: metrics per log interval and per evaluation, summary with confusion matrix, curves, report.
  const std::vector<app::Json> recs = app::read_metrics(tmp.path / "b" / "metrics.jsonl");
  int train_recs = 0, val_recs = 0;
  for (const auto& r : recs) (r["kind"] == "train" ? train_recs : val_recs)++;
  REQUIRE(val_recs == 2);
  REQUIRE(train_recs == int(app::read_metrics(tmp.path / "a" / "metrics.jsonl").size()) - 2);
  const app::Json s = app::Json::parse(slurp(tmp.path / "a" / "summary.json"));
  for (const char* k : {"test_accuracy", "best_val_accuracy", "params", "mixer", "preset", "device", "epochs",
                        "train_images_per_s", "peak_memory_bytes", "wall_s", "per_class_accuracy", "confusion_matrix"})
    REQUIRE(s.contains(k));
  int64_t cm_total = 0, cm_diag = 0;
  for (size_t i = 0; i < 10; ++i)
    for (size_t j = 0; j < 10; ++j) cm_total += s["confusion_matrix"][i][j].get<int64_t>(), cm_diag += i == j ? s["confusion_matrix"][i][j].get<int64_t>() : 0;
  REQUIRE(cm_total == 60);
  REQUIRE(double(cm_diag) / 60.0 == Approx(s["test_accuracy"].get<double>()));
  REQUIRE(slurp(tmp.path / "a" / "curves.png").substr(1, 3) == "PNG");
  const std::string html = slurp(tmp.path / "a" / "report.html");
  REQUIRE_THAT(html, Contains("Confusion matrix") && Contains("data:image/png;base64,") && Contains("Ankle boot"));
  REQUIRE(app::Json::parse(slurp(tmp.path / "a" / "config.json"))["total_steps"] == 12);

  // A fresh run into an existing run folder is refused unless --overwrite.
  REQUIRE_THROWS_WITH(app::run_training(testing::tiny_vit_run(data, tmp.path / "a")), Contains("--resume"));

  // predict: tensor "logits" [N, 10], equal to the eval path's predictions.
  app::PredictOptions p;
  p.checkpoint = (tmp.path / "a" / "best.safetensors").string();
  p.images = (data / "t10k-images-idx3-ubyte").string();
  p.out = (tmp.path / "logits.safetensors").string();
  p.device = "cpu";
  p.quiet = true;
  REQUIRE(app::run_predict(p) == 100);
  const nn::NamedTensors logits = nn::load_tensors(p.out);
  REQUIRE(logits.size() == 2);
  REQUIRE(logits[0].first == "logits");
  REQUIRE(logits[0].second.shape() == Shape{100, 10});
  REQUIRE(logits[1].first == "predictions");
  REQUIRE(logits[1].second.shape() == Shape{100});
  // The predicted names are the data set's class names (recorded in the checkpoint).
  const std::vector<app::Prediction> names = app::predict_images(p);
  REQUIRE(names.size() == 100);
  REQUIRE(names[0].source == "#0");
  REQUIRE(names[0].class_name == app::class_names("fashion-mnist", 10)[size_t(names[0].class_index)]);

  // eval of the best checkpoint reproduces the run's test accuracy.
  app::EvalOptions e;
  e.checkpoint = p.checkpoint;
  e.data_dir = data.string();
  e.device = "cpu";
  e.test_limit = 60;
  e.quiet = true;
  REQUIRE(app::run_eval(e).accuracy == a.test_accuracy);
}

TEST_CASE("vit app: --full-train trains on every image, tests the final weights and resumes exactly", "[vit-app]") {
  // 50 images per class: too few for the default split (500 per class validate), all of them for --full-train.
  TempDir tmp;
  const fs::path data = tmp.path / "data";
  fs::create_directories(data);
  testing::write_bar_idx(data, "train", 50);
  testing::write_bar_idx(data, "t10k", 10);
  app::TrainOptions o = testing::tiny_vit_run(data, tmp.path / "a");
  o.train_limit = 0, o.val_limit = 0;
  REQUIRE_THROWS_WITH(app::run_training(o), Contains("fewer than the 500 per class held out for validation"));

  o.full_train = true;
  o.overwrite = true;
  const app::TrainSummary a = app::run_training(o);
  REQUIRE(a.finished);
  REQUIRE(a.total_steps == 2 * 16);  // 500 images in batches of 32, two epochs
  const app::Json cfg = app::Json::parse(slurp(tmp.path / "a" / "config.json"));
  REQUIRE(cfg["train_samples"] == 500);
  REQUIRE(cfg["val_samples"] == 0);
  REQUIRE(cfg["recipe"]["full_train"] == "1");
  REQUIRE_FALSE(fs::exists(tmp.path / "a" / "best.safetensors"));
  const app::Json s = app::Json::parse(slurp(tmp.path / "a" / "summary.json"));
  REQUIRE(s["best_val_accuracy"].is_null());
  REQUIRE_THAT(s["selected_checkpoint"].get<std::string>(), Contains("last.safetensors") && Contains("final"));
  for (const app::Json& r : app::read_metrics(tmp.path / "a" / "metrics.jsonl")) REQUIRE(r["kind"] == "train");
  REQUIRE(slurp(tmp.path / "a" / "curves.png").substr(1, 3) == "PNG");

  // The test accuracy is the final weights' (last.safetensors), as eval measures it.
  app::EvalOptions e;
  e.checkpoint = (tmp.path / "a" / "last.safetensors").string();
  e.data_dir = data.string();
  e.device = "cpu";
  e.test_limit = 60;
  e.quiet = true;
  REQUIRE(app::run_eval(e).accuracy == a.test_accuracy);

  // Stopped mid-epoch and resumed: the same weights, metrics and test accuracy; --full-train comes from the state.
  app::TrainOptions b = o;
  b.out_dir = (tmp.path / "b").string();
  b.max_steps = 5;
  REQUIRE_FALSE(app::run_training(b).finished);
  b.resume = true, b.overwrite = false, b.full_train = false, b.max_steps = 0;
  const app::TrainSummary sb = app::run_training(b);
  REQUIRE(sb.finished);
  testing::require_same_tensors(tmp.path / "a" / "last.safetensors", tmp.path / "b" / "last.safetensors");
  testing::require_same_metrics(tmp.path / "a" / "metrics.jsonl", tmp.path / "b" / "metrics.jsonl");
  REQUIRE(sb.test_accuracy == a.test_accuracy);

  // A validation limit without a validation set is an error, on the command line and in the library.
  std::string err;
  REQUIRE(parse({"train", "--full-train", "--val-limit", "5"}, &err).exit_code != 0);
  REQUIRE_THAT(err, Contains("--full-train") && Contains("--val-limit"));
  app::TrainOptions c = o;
  c.val_limit = 5;
  REQUIRE_THROWS_WITH(app::run_training(c), Contains("--val-limit 5") && Contains("--full-train"));
}

TEST_CASE("vit app: a diverging run stops with a clear error and saves nothing after the divergence", "[vit-app]") {
  TempDir tmp;
  const fs::path data = testing::write_bar_dataset(tmp.path / "data");
  app::TrainOptions o = testing::tiny_vit_run(data, tmp.path / "run");
  o.lr = 1e30;  // the first update overflows the weights
  o.warmup = 0;
  REQUIRE_THROWS_WITH(app::run_training(o), Contains("training diverged: the loss is") && Contains("try a lower --lr"));
  // The losses are read once per log interval (4 steps here), before any checkpoint: none was written.
  REQUIRE_FALSE(fs::exists(tmp.path / "run" / "last.safetensors"));
  REQUIRE_FALSE(fs::exists(tmp.path / "run" / "best.safetensors"));
}

TEST_CASE("vit app: corrupt or foreign checkpoints give clear errors", "[vit-app]") {
  TempDir tmp;
  const fs::path bad = tmp.path / "garbage.safetensors";
  {
    std::ofstream f(bad, std::ios::binary);
    f << "this is not a safetensors file at all";
  }
  app::EvalOptions e;
  e.checkpoint = bad.string();
  e.device = "cpu";
  e.quiet = true;
  REQUIRE_THROWS_WITH(app::run_eval(e), Contains("garbage.safetensors"));
  e.checkpoint = (tmp.path / "missing.safetensors").string();
  REQUIRE_THROWS_WITH(app::run_eval(e), Contains("does not exist"));
  // A valid safetensors file without the ViT metadata.
  const fs::path foreign = tmp.path / "foreign.safetensors";
  nn::save_tensors(foreign, {{"w", zeros({2, 2})}});
  e.checkpoint = foreign.string();
  REQUIRE_THROWS_WITH(app::run_eval(e), Contains("foreign.safetensors") && Contains("not a vit checkpoint"));
  // --resume with nothing to resume.
  app::TrainOptions t;
  t.out_dir = (tmp.path / "empty").string();
  t.resume = true;
  t.device = "cpu";
  t.quiet = true;
  REQUIRE_THROWS_WITH(app::run_training(t), Contains("--resume"));
}

TEST_CASE("vit app: command-line parsing", "[vit-app]") {
  std::string err;
  app::CliCommand c = parse({"train", "--preset", "fmnist-small", "--lr", "0.002", "--max-steps", "5", "--device", "cpu",
                             "--train-limit", "512", "--seed", "7"});
  REQUIRE(c.exit_code == -1);
  REQUIRE(c.command == "train");
  REQUIRE(c.train.preset == "fmnist-small");
  REQUIRE(c.train.lr == 0.002);
  REQUIRE_FALSE(c.train.epochs.has_value());  // unset flags keep the preset's recipe
  REQUIRE(c.train.max_steps == 5);
  REQUIRE(c.train.train_limit == 512);
  REQUIRE(c.train.seed == 7);
  REQUIRE_FALSE(c.train.flip.has_value());
  REQUIRE(c.train.model.pool.empty());
  REQUIRE_FALSE(c.train.model.embed_dim.has_value());
  REQUIRE_FALSE(c.train.model.mlp_hidden.has_value());
  REQUIRE(c.train.attention == "automatic");
  c = parse({"train", "--flip", "--pool", "avg", "--attention", "composite", "--embed-dim", "96", "--mlp-dim", "192",
             "--depth", "3", "--heads", "6"});
  REQUIRE(c.train.flip == std::optional<bool>(true));
  REQUIRE(c.train.model.pool == "avg");
  REQUIRE(c.train.attention == "composite");
  REQUIRE(c.train.model.embed_dim == std::optional<int64_t>(96));
  REQUIRE(c.train.model.mlp_hidden == std::optional<int64_t>(192));
  REQUIRE(c.train.model.depth == std::optional<int64_t>(3));
  REQUIRE(c.train.model.num_heads == std::optional<int64_t>(6));
  c = parse({"info", "--preset", "fmnist-small", "--embed-dim", "96", "--mlp-dim", "192"});
  REQUIRE(c.command == "info");
  REQUIRE(c.info_model.embed_dim == std::optional<int64_t>(96));

  for (std::vector<const char*> bad : std::vector<std::vector<const char*>>{
           {"train", "--lr", "-1"},
           {"train", "--lr", "nan"},
           {"train", "--epochs", "0"},
           {"train", "--device", "tpu"},
           {"train", "--mixer", "no-such-mixer"},
           {"train", "--preset", "huge"},
           {"train", "--dataset", "imagenet"},
           {"train", "--label-smoothing", "1.5"},
           {"train", "--flip", "--no-flip"},
           {"train", "--pool", "max"},
           {"train", "--attention", "flash"},
           {"train", "--embed-dim", "0"},
           {"train", "--heads", "-2"},
           {"info", "--mlp-dim", "x"},
           {"train", "--no-such-flag"},
           {"eval"},  // --checkpoint is required
           {}}) {     // a subcommand is required
    c = parse(bad, &err);
    INFO(err);
    REQUIRE(c.exit_code > 0);
    REQUIRE_FALSE(err.empty());
  }
  c = parse({"train", "--no-decay-1d"});
  REQUIRE(c.train.decay_1d == std::optional<bool>(false));
  c = parse({"train", "--decay-1d"});
  REQUIRE(c.train.decay_1d == std::optional<bool>(true));
  c = parse({"train", "--decay-1d", "--no-decay-1d"}, &err);
  REQUIRE(c.exit_code > 0);
  c = parse({"train", "--precision", "bf16"});
  REQUIRE(c.train.precision == "bf16");
  REQUIRE_FALSE(c.train.tf32);
  c = parse({"train", "--precision", "fp16"}, &err);  // not a precision mixgrad has
  REQUIRE(c.exit_code > 0);
  c = parse({"train", "--precision", "bf16", "--tf32"}, &err);  // --tf32 is --precision tf32
  REQUIRE(c.exit_code > 0);
  c = parse({"train", "--help"}, &err);
  REQUIRE(c.exit_code == 0);
  for (const char* flag : {"--dataset", "--data", "--preset", "--mixer", "--epochs", "--batch-size", "--lr",
                           "--weight-decay", "--warmup", "--label-smoothing", "--seed", "--device", "--tf32",
                           "--precision", "--out",
                           "--resume", "--log-every", "--max-steps", "--train-limit", "--flip", "--no-flip", "--pool",
                           "--attention", "--embed-dim", "--depth", "--heads", "--mlp-dim", "--decay-1d", "--no-decay-1d"})
    REQUIRE_THAT(err, Contains(flag));

  c = parse({"predict", "--checkpoint", "a.safetensors", "--images", "x.idx", "--out", "y.safetensors"});
  REQUIRE(c.command == "predict");
  REQUIRE(c.predict.out == "y.safetensors");
}

TEST_CASE("vit app: info lists every parameter and the preset's count", "[vit-app]") {
  const std::string info = app::model_info("fmnist-tiny", "softmax");
  REQUIRE_THAT(info, Contains("total parameters: 139018"));
  REQUIRE_THAT(info, Contains("blocks.3.attn.qkv.weight") && Contains("[192, 64]") && Contains("pos_embed"));

  // specs/vit.md §8: fmnist-small's D 96 / M 192 variant has 456,394 parameters.
  app::ModelOverrides wide;
  wide.embed_dim = 96;
  wide.mlp_hidden = 192;
  const std::string w = app::model_info("fmnist-small", "softmax", wide);
  REQUIRE_THAT(w, Contains("total parameters: 456394") && Contains("dim 96") && Contains("MLP 192"));
  REQUIRE_THAT(w, Contains("blocks.5.attn.qkv.weight") && Contains("[288, 96]"));
  // A width the heads do not divide is a clear error, not a crash.
  app::ModelOverrides bad;
  bad.embed_dim = 90;
  REQUIRE_THROWS_WITH(app::model_info("fmnist-small", "softmax", bad), Contains("divide embed_dim (90)"));
}

TEST_CASE("vit app: report helpers", "[vit-app]") {
  REQUIRE(app::base64_encode({'M', 'a', 'n'}) == "TWFu");
  REQUIRE(app::base64_encode({'M', 'a'}) == "TWE=");
  REQUIRE(app::base64_encode({'M'}) == "TQ==");
  app::Curves c;
  c.train_loss = {{1, 2.0}, {2, 1.0}};
  c.val_acc = {{2, 0.5}};
  const std::vector<uint8_t> png = app::render_curves_png(c, 200, 150);
  REQUIRE(png.size() > 8);
  REQUIRE(png[1] == 'P');
  // A full-size plot decodes to the requested size, with ink in the label areas: value labels left of the axis,
  // step labels and the axis title below the accuracy panel, and both legend colours.
  c.val_loss = {{2, 1.5}};
  c.train_acc = {{1, 0.4}, {2, 0.6}};
  const std::vector<uint8_t> big = app::render_curves_png(c, 800, 600);
  int w = 0, h = 0, ch = 0;
  uint8_t* px = stbi_load_from_memory(big.data(), int(big.size()), &w, &h, &ch, 3);
  REQUIRE(px != nullptr);
  REQUIRE((w == 800 && h == 600));
  const auto count = [&](int x0, int y0, int x1, int y1, auto pred) {
    int n = 0;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) n += pred(px + (size_t(y) * size_t(w) + size_t(x)) * 3) ? 1 : 0;
    return n;
  };
  const auto dark = [](const uint8_t* p) { return p[0] < 100 && p[1] < 100 && p[2] < 100; };
  const auto blue = [](const uint8_t* p) { return p[0] == 31 && p[1] == 119 && p[2] == 180; };
  const auto orange = [](const uint8_t* p) { return p[0] == 255 && p[1] == 127 && p[2] == 14; };
  CHECK(count(0, 0, 44, 600, dark) > 50);      // value tick labels
  CHECK(count(100, 575, 700, 600, dark) > 50);  // x-axis title
  CHECK(count(400, 10, 790, 30, blue) > 20);   // legend, loss panel
  CHECK(count(400, 10, 790, 30, orange) > 20);
  stbi_image_free(px);
  REQUIRE(app::format_duration(125) == "2 min 05 s");
}
