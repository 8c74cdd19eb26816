// The lra app (apps/lra): a generated ListOps run that trains, resumes bit for bit and whose checkpoint evaluates
// and predicts to the same accuracy; the generated-data cache; runs on every other task from tiny files in the
// release's formats (IMDb tree, AAN TSV, CIFAR-10 binaries, a generated Pathfinder tree); mixer options in the
// checkpoint; info; the command line; and clear errors.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "apps/common/report.h"
#include "apps/lra/lra_app.h"
#include "nn/serialize.h"
#include "tests/common/check.h"
#include "tests/common/temp_files.h"

namespace fs = std::filesystem;
using namespace mixgrad;
using namespace mixgrad::app::lra;
using Catch::Contains;

namespace {

struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("mixgrad_test_lra_app_") {}
};

// ListOps with 6..39 tokens: 240 / 40 / 40 samples.
GeneratorConfig tiny_listops() {
  GeneratorConfig g;
  g.listops.min_length = 5, g.listops.max_length = 40, g.listops.max_depth = 4, g.listops.max_args = 4;
  g.listops.train = 240, g.listops.val = 40, g.listops.test = 40, g.listops.seed = 3;
  return g;
}

// A small model and a short recipe on top of a task's mini preset.
TrainOptions tiny_options(const std::string& task, const fs::path& cache, const fs::path& out) {
  TrainOptions o;
  o.task = task;
  o.preset = "mini";
  o.data.cache_dir = cache.string();
  o.out_dir = out.string();
  o.device = "cpu";
  o.epochs = 2;
  o.batch_size = 16;
  o.warmup = 3;
  o.lr = 3e-3;
  o.log_every = 4;
  o.quiet = true;
  o.model_flags.embed_dim = 16, o.model_flags.depth = 1, o.model_flags.num_heads = 2, o.model_flags.mlp_dim = 24;
  o.model_flags.qkv_dim = 16;
  return o;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

CliCommand parse(std::vector<const char*> args, std::string* err_text = nullptr) {
  args.insert(args.begin(), "lra");
  std::ostringstream out, err;
  CliCommand c = parse_cli(int(args.size()), args.data(), out, err);
  if (err_text) *err_text = err.str() + out.str();
  return c;
}

void require_same_checkpoint(const fs::path& a, const fs::path& b) {
  nn::Metadata ma, mb;
  const nn::NamedTensors ta = nn::load_tensors(a, &ma), tb = nn::load_tensors(b, &mb);
  REQUIRE(ta.size() == tb.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    INFO(a.filename().string() << " " << ta[i].first);
    REQUIRE(ta[i].first == tb[i].first);
    REQUIRE_CLOSE(testing::bit_equal(tb[i].second, ta[i].second));
  }
}

}  // namespace

TEST_CASE("lra app: generated ListOps trains, resumes bit for bit, and eval / predict reproduce the test accuracy",
          "[lra-app]") {
  TempDir tmp;
  TrainOptions a = tiny_options("listops", tmp / "cache", tmp / "a");
  a.generator = tiny_listops();
  const app::TrainSummary sa = app::lra::run_training(a);
  REQUIRE(sa.finished);
  REQUIRE(sa.global_step == 30);  // 240 samples / 16 = 15 steps x 2 epochs
  // The data set was generated into the cache once, stamped with its generator settings.
  const fs::path data_dir = tmp / "cache" / "lra" / generated_name("listops", tiny_listops());
  REQUIRE(fs::exists(data_dir / "basic_train.tsv"));
  REQUIRE_THAT(slurp(data_dir / "generator.txt"), Contains("min_length=5") && Contains("train=240"));

  TrainOptions b = tiny_options("listops", tmp / "cache", tmp / "b");
  b.generator = tiny_listops();
  b.max_steps = 7;  // mid epoch 1
  REQUIRE_FALSE(app::lra::run_training(b).finished);
  b.resume = true;
  b.max_steps = 0;
  b.lr = 1.0;  // ignored on resume: the recorded recipe is used
  const app::TrainSummary sb = app::lra::run_training(b);
  REQUIRE(sb.finished);
  REQUIRE(sb.global_step == 30);
  require_same_checkpoint(tmp / "a" / "last.safetensors", tmp / "b" / "last.safetensors");
  require_same_checkpoint(tmp / "a" / "best.safetensors", tmp / "b" / "best.safetensors");
  REQUIRE(sb.test_accuracy == sa.test_accuracy);

  const app::Json s = app::Json::parse(slurp(tmp / "a" / "summary.json"));
  for (const char* k : {"test_accuracy", "best_val_accuracy", "params", "task", "mixer", "preset", "split",
                        "train_tokens_per_s", "peak_memory_bytes", "confusion_matrix"})
    REQUIRE(s.contains(k));
  REQUIRE(s["test_samples"] == 40);
  REQUIRE_THAT(slurp(tmp / "a" / "report.html"), Contains("LRA listops / mini / transformer / softmax"));
  nn::Metadata meta;
  (void)nn::load_tensors(tmp / "a" / "best.safetensors", &meta);
  CHECK(meta.at("arch") == "lra-transformer");
  CHECK(meta.at("data.dir") == fs::absolute(data_dir).string());

  EvalOptions e;
  e.checkpoint = (tmp / "a" / "best.safetensors").string();
  e.device = "cpu";
  e.quiet = true;
  REQUIRE(run_eval(e).accuracy == sa.test_accuracy);
  PredictOptions p;
  p.eval = e;
  p.out = (tmp / "logits.safetensors").string();
  REQUIRE(run_predict(p) == 40);
  const nn::NamedTensors pred = nn::load_tensors(p.out);
  REQUIRE(pred.size() == 3);
  CHECK(pred[0].first == "logits");
  CHECK(pred[0].second.shape() == Shape({40, 10}));
  const std::vector<int64_t> arg = argmax(pred[0].second, 1).to_vector<int64_t>();
  const std::vector<int64_t> labels = pred[1].second.to_vector<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < arg.size(); ++i) correct += arg[i] == labels[i];
  CHECK(double(correct) / 40.0 == Approx(sa.test_accuracy));
  REQUIRE_THROWS_WITH(app::lra::run_training(tiny_options("listops", tmp / "cache", tmp / "a")), Contains("--resume"));
}

TEST_CASE("lra app: csp runs on sequences with the exponential schedule by default, recorded in the checkpoint",
          "[lra-app]") {
  TempDir tmp;
  TrainOptions o = tiny_options("listops", tmp / "cache", tmp / "csp");
  o.generator = tiny_listops();
  o.mixer = "csp";
  o.epochs = 1;
  const app::TrainSummary s = app::lra::run_training(o);
  REQUIRE(s.finished);
  nn::Metadata meta;
  (void)nn::load_tensors(tmp / "csp" / "last.safetensors", &meta);
  CHECK(meta.at("mixer") == "csp");
  CHECK(meta.at("csp_schedule") == "exponential");
  CHECK(meta.at("csp_k") == "2");
  // An explicit option wins over the app's default; another mixer's option is an error.
  o.out_dir = (tmp / "csp4").string();
  o.mixer_options = {{"csp_k", "4"}, {"csp_schedule", "constant"}};
  o.max_steps = 1;
  (void)app::lra::run_training(o);
  (void)nn::load_tensors(tmp / "csp4" / "last.safetensors", &meta);
  CHECK(meta.at("csp_k") == "4");
  CHECK(meta.at("csp_schedule") == "constant");
  o.mixer = "softmax";
  o.out_dir = (tmp / "bad").string();
  REQUIRE_THROWS_WITH(app::lra::run_training(o), Contains("option csp_k belongs to mixer csp"));
}

TEST_CASE("lra app: text, retrieval and image train from files in the release's formats", "[lra-app]") {
  TempDir tmp;
  // IMDb: 6 reviews per class and split; positive reviews mention "good".
  for (const char* split : {"train", "test"})
    for (int i = 0; i < 6; ++i) {
      write_text(tmp / "aclImdb" / split / "pos" / (std::to_string(i) + "_9.txt"),
                 "a good film, good " + std::to_string(i));
      write_text(tmp / "aclImdb" / split / "neg" / (std::to_string(i) + "_2.txt"), "a bad film " + std::to_string(i));
    }
  // AAN: 5-column TSV, a row with 4 fields counted and skipped.
  std::string aan;
  for (int i = 0; i < 12; ++i) aan += fmt::format("{}\tp{}\tq{}\tpaper {} text\tother {} text\n", i % 2, i, i, i, i);
  for (const char* f : {"train", "eval", "test"})
    write_text(tmp / "aan" / fmt::format("new_aan_pairs.{}.tsv", f), aan + "1\tbad\trow\tonly four\n");
  // CIFAR-10: 20 training and 10 test images in the binary format.
  auto cifar = [](int n, int salt) {
    std::string bytes;
    for (int r = 0; r < n; ++r) {
      bytes.push_back(char(r % 10));
      for (int p = 0; p < 3072; ++p) bytes.push_back(char((p * 7 + r * 13 + salt) % 256));
    }
    return bytes;
  };
  for (int b = 1; b <= 5; ++b) write_text(tmp / "cifar" / fmt::format("data_batch_{}.bin", b), cifar(4, b));
  write_text(tmp / "cifar" / "test_batch.bin", cifar(10, 9));
  for (const std::string task : {"text", "retrieval", "image"}) {
    INFO("task " << task);
    TrainOptions o = tiny_options(task, tmp / "cache", tmp / ("run-" + task));
    o.data.data_dir = (tmp / (task == "text" ? "aclImdb" : task == "retrieval" ? "aan" : "cifar")).string();
    o.epochs = 1;
    o.batch_size = 4;
    if (task == "image") o.model_flags.max_len.reset();
    const app::TrainSummary s = app::lra::run_training(o);
    REQUIRE(s.finished);
    const app::Json sum = app::Json::parse(slurp(tmp / ("run-" + task) / "summary.json"));
    CHECK(sum["task"] == task);
    if (task == "retrieval") CHECK(sum["skipped_records"] == 3);  // the bad row of each file
    if (task == "image") CHECK(sum["test_samples"] == 10);
  }
  // A task without a generator needs --data.
  REQUIRE_THROWS_WITH(app::lra::run_training(tiny_options("text", tmp / "cache", tmp / "nodata")),
                      Contains("task text needs --data") && Contains("aclImdb"));
}

TEST_CASE("lra app: a generated Pathfinder tree trains, its test split inside the same folder", "[lra-app]") {
  TempDir tmp;
  TrainOptions o = tiny_options("pathfinder", tmp / "cache", tmp / "pf");
  o.data.samples = 60;  // 48 / 6 / 6 after the 80/10/10 split
  o.epochs = 1;
  o.model_flags.embed_dim = 8, o.model_flags.qkv_dim = 8, o.model_flags.mlp_dim = 8;
  const app::TrainSummary s = app::lra::run_training(o);
  REQUIRE(s.finished);
  const app::Json sum = app::Json::parse(slurp(tmp / "pf" / "summary.json"));
  CHECK(sum["test_samples"] == 6);
  CHECK_THAT(sum["split"].get<std::string>(), Contains("curv_contour_length_14") && Contains("split seed 42"));
}

TEST_CASE("lra app: info, command line, and errors", "[lra-app]") {
  const std::string info = model_info("listops", "paper", "softmax");
  CHECK_THAT(info, Contains("total parameters: 8950282") && Contains("blocks.3.attn.qkv.weight") && Contains("rsqrt"));
  CHECK_THAT(model_info("pathx", "paper", "csp"), Contains("csp_schedule = exponential") && Contains("mean"));
  std::string err;
  CliCommand c = parse({"train", "--task", "retrieval", "--preset", "paper", "--mixer", "csp", "--mixer-opt", "csp_k=4",
                        "--lr", "0.002", "--updates", "100", "--dual", "concat", "--max-steps", "5"});
  REQUIRE(c.exit_code == -1);
  CHECK(c.command == "train");
  CHECK(c.train.task == "retrieval");
  CHECK(c.train.mixer_options == std::map<std::string, std::string>{{"csp_k", "4"}});
  CHECK(c.train.lr == std::optional<double>(0.002));
  CHECK(c.train.updates == std::optional<int64_t>(100));
  CHECK_FALSE(c.train.epochs.has_value());
  CHECK(c.train.model_flags.dual == "concat");
  c = parse({"generate", "pathx", "--preset", "mini", "--samples", "20", "--out", "x"});
  CHECK(c.command == "generate");
  CHECK(c.generate.task == "pathx");
  CHECK(c.generate.data.samples == std::optional<int64_t>(20));
  c = parse({"train", "--task", "nope"}, &err);
  CHECK(c.exit_code != 0);
  CHECK_THAT(err, Contains("--task"));
  c = parse({"train", "--mixer-opt", "csp_k"}, &err);
  CHECK(c.exit_code != 0);
  CHECK_THAT(err, Contains("expected key=value"));
  c = parse({"train", "--model", "rnn"}, &err);
  CHECK(c.exit_code != 0);
  CHECK_THAT(err, Contains("--model"));
  c = parse({"train", "--model", "mega", "--zdim", "32", "--norm", "scalenorm", "--prenorm", "true", "--chunk", "16"});
  REQUIRE(c.exit_code == -1);
  CHECK(c.train.model == "mega");
  CHECK(c.train.mixer.empty());  // the family's default
  CHECK(c.train.model_flags.zdim == std::optional<int64_t>(32));
  CHECK(c.train.model_flags.prenorm == std::optional<bool>(true));
  CHECK(c.train.model_flags.chunk == std::optional<int64_t>(16));
  CHECK(c.train.model_flags.norm == "scalenorm");
  CHECK(resolve_mixer("transformer", "") == "softmax");
  CHECK(resolve_mixer("mega", "") == "gated");
  c = parse({"info", "--task", "image", "--preset", "mini"});
  CHECK(c.command == "info");
  CHECK(c.info_task == "image");

  TempDir tmp;
  EvalOptions e;
  e.checkpoint = (tmp / "missing.safetensors").string();
  e.device = "cpu";
  REQUIRE_THROWS_WITH(run_eval(e), Contains("does not exist"));
  nn::save_tensors(tmp / "foreign.safetensors", {{"w", zeros({2})}});
  e.checkpoint = (tmp / "foreign.safetensors").string();
  REQUIRE_THROWS_WITH(run_eval(e), Contains("foreign.safetensors") && Contains("not an lra checkpoint"));
  TrainOptions o = tiny_options("listops", tmp / "cache", tmp / "none");
  o.resume = true;
  REQUIRE_THROWS_WITH(app::lra::run_training(o), Contains("--resume"));
  o.resume = false;
  o.data.data_dir = (tmp / "no-such-folder").string();
  REQUIRE_THROWS_WITH(app::lra::run_training(o), Contains("no-such-folder") && Contains("no such folder"));
}
