// `vit compare` and `lra compare` (apps/common/compare.*): two mixers × two seeds with a tiny step budget write
// compare.md / .json / .html with one row per mixer (accuracy over the seeds, parameters, FLOPs checked against a
// hand count, throughput, memory, wall time); a second invocation reuses the finished runs and resumes only the one
// whose summary was deleted; the list and option helpers and the command lines.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "apps/common/compare.h"
#include "apps/common/flops.h"
#include "apps/lra/lra_app.h"
#include "apps/lra/lra_presets.h"
#include "apps/vit/vit_app.h"
#include "models/lra_model.h"
#include "nn/mixer.h"
#include "tests/common/temp_files.h"
#include "tests/common/trainer_runs.h"

namespace fs = std::filesystem;
using namespace mixgrad;
using Catch::Contains;

namespace {

struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("mixgrad_test_compare_") {}
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

app::CompareOptions tiny_vit_compare(const fs::path& data, const fs::path& out) {
  app::CompareOptions c;
  c.mixers = "softmax,csp";
  c.seeds = 2;
  c.out_dir = out.string();
  app::TrainOptions& b = c.base;
  b.data_dir = data.string();
  b.device = "cpu";
  b.model.embed_dim = 16, b.model.depth = 1, b.model.num_heads = 2, b.model.mlp_hidden = 32;
  b.updates = 2, b.batch_size = 16, b.warmup = 1;
  b.train_limit = 32, b.val_limit = 20, b.test_limit = 20;
  b.log_every = 1;
  b.quiet = true;
  return c;
}

std::vector<std::string> statuses(const app::CompareResult& r) {
  std::vector<std::string> s;
  for (const app::CompareRunResult& x : r.runs)
    s.push_back(x.run.mixer + "/" + std::to_string(x.run.seed) + ":" + x.status);
  return s;
}

// fmnist-tiny at D 16, depth 1, 2 heads, MLP 32: 49 patches of 16 pixels + a class token, 10 classes.
double hand_count_flops(bool softmax) {
  const double n = 50, d = 16, m = 32;
  const double patch = 2 * 49 * 16 * d, head = 2 * d * 10, mlp = 2 * d * m * 2;
  const double mixer_linears = softmax ? 2 * d * 3 * d + 2 * d * d : 2 * d * d + 2 * d * d;  // qkv + proj | v + proj
  const double mixing = softmax ? 4 * n * n * d : 0;
  return patch + n * (mixer_linears + mlp) + mixing + head;
}

}  // namespace

TEST_CASE("vit compare: two mixers x two seeds write the three reports; a rerun resumes only the unfinished run",
          "[compare]") {
  TempDir tmp;
  const fs::path data = tmp / "data", out = tmp / "cmp";
  fs::create_directories(data);
  testing::write_bar_idx(data, "train", 504, 777);  // 500 per class validate (vit.md §9), 4 per class train
  testing::write_bar_idx(data, "t10k", 2, 777);
  const app::CompareResult r = app::run_compare(tiny_vit_compare(data, out));
  REQUIRE(statuses(r) ==
          std::vector<std::string>{"softmax/0:trained", "softmax/1:trained", "csp/0:trained", "csp/1:trained"});
  REQUIRE(r.rows.size() == 2);
  for (const app::CompareRow& row : r.rows) {
    INFO(row.mixer);
    REQUIRE(row.accuracies.size() == 2);
    REQUIRE((row.accuracy_mean >= 0 && row.accuracy_mean <= 1));
    REQUIRE(row.accuracy_min <= row.accuracy_mean);
    REQUIRE(row.accuracy_max >= row.accuracy_mean);
    REQUIRE(row.cost.flops == hand_count_flops(row.mixer == "softmax"));
    REQUIRE(row.cost.flops_complete);
    REQUIRE(row.units_per_s > 0);
    REQUIRE(row.peak_memory_bytes > 0);
    REQUIRE(row.wall_s > 0);
    const app::Json s = app::Json::parse(slurp(out / row.mixer / "seed-1" / "summary.json"));
    REQUIRE(row.cost.params == s["params"].get<int64_t>());
    REQUIRE(row.accuracies[1] == s["test_accuracy"].get<double>());
    REQUIRE(s["mixer"] == row.mixer);
    REQUIRE(s["global_step"] == 2);
  }
  REQUIRE(r.rows[0].mixer == "softmax");
  REQUIRE(r.rows[1].mixer == "csp");
  REQUIRE(r.rows[0].cost.params != r.rows[1].cost.params);

  const app::Json j = app::Json::parse(slurp(out / "compare.json"));
  REQUIRE(j["rows"].size() == 2);
  REQUIRE(j["runs"].size() == 4);
  REQUIRE(j["rows"][1]["mixer"] == "csp");
  REQUIRE(j["rows"][1]["test_accuracies"].size() == 2);
  REQUIRE(j["rows"][0]["flops_per_image"].get<double>() == hand_count_flops(true));
  REQUIRE(j["settings"]["updates"] == 2);
  REQUIRE(j["title"] == "vit compare: preset fmnist-tiny, fashion-mnist, 2 seed(s)");
  const std::string md = slurp(out / "compare.md");
  REQUIRE_THAT(md, Contains("| softmax | 2 |") && Contains("| csp | 2 |") && Contains("FLOPs / image") &&
                       Contains("train images/s"));
  const std::string html = slurp(out / "compare.html");
  REQUIRE_THAT(html, Contains("<svg") && Contains("<circle") && Contains(">csp</text>") &&
                         Contains(">softmax</text>") && Contains("<table>"));
  REQUIRE(html.find("<script") == std::string::npos);

  // Interrupted: one run lost its summary (killed while testing), another its whole folder.
  const std::string kept = slurp(out / "csp" / "seed-0" / "summary.json");
  fs::remove(out / "softmax" / "seed-1" / "summary.json");
  fs::remove_all(out / "csp" / "seed-1");
  const app::CompareResult again = app::run_compare(tiny_vit_compare(data, out));
  REQUIRE(statuses(again) ==
          std::vector<std::string>{"softmax/0:reused", "softmax/1:resumed", "csp/0:reused", "csp/1:trained"});
  REQUIRE(slurp(out / "csp" / "seed-0" / "summary.json") == kept);
  const app::Json resumed = app::Json::parse(slurp(out / "softmax" / "seed-1" / "summary.json"));
  REQUIRE(resumed["resumed"] == true);
  REQUIRE(again.rows[0].accuracies == r.rows[0].accuracies);  // the resumed run tests the same best checkpoint
  REQUIRE(again.rows[0].units_per_s > 0);                     // its throughput comes from metrics.jsonl
  REQUIRE(again.rows[1].accuracies == r.rows[1].accuracies);  // same seeds and recipe: the retrained run agrees
  REQUIRE(app::Json::parse(slurp(out / "compare.json"))["runs"][1]["status"] == "resumed");
}

TEST_CASE("lra compare: models x mixers on generated ListOps, one row each", "[compare]") {
  TempDir tmp;
  app::lra::CompareOptions c;
  c.mixers = "softmax,csp,gated,s2mlpv2";  // transformer × gated, and s2mlpv2 on ListOps (no grid): skipped, noted
  c.seeds = 1;
  c.out_dir = (tmp / "cmp").string();
  app::lra::TrainOptions& b = c.base;
  b.task = "listops";
  b.data.cache_dir = (tmp / "cache").string();
  app::lra::GeneratorConfig g;
  g.listops.min_length = 5, g.listops.max_length = 30, g.listops.max_depth = 3, g.listops.max_args = 3;
  g.listops.train = 48, g.listops.val = 16, g.listops.test = 16, g.listops.seed = 5;
  b.generator = g;
  b.device = "cpu";
  b.updates = 2, b.batch_size = 8, b.warmup = 1;
  b.model_flags.embed_dim = 16, b.model_flags.depth = 1, b.model_flags.num_heads = 2, b.model_flags.mlp_dim = 24;
  b.model_flags.qkv_dim = 16;
  b.quiet = true;
  const app::CompareResult r = app::lra::run_compare(c);
  REQUIRE(r.rows.size() == 2);
  REQUIRE(r.runs.size() == 2);
  REQUIRE(r.skipped == std::vector<std::string>{"transformer × gated: model transformer has no mixer \"gated\" (it "
                                                "takes: " +
                                                fmt::format("{}", fmt::join(nn::mixer_names(), ", ")) + ")",
                                                "transformer × s2mlpv2: mixer s2mlpv2 needs a token grid, which task "
                                                "listops has not (only the pixel tasks)"});
  REQUIRE(r.rows[0].model == "transformer");
  REQUIRE(r.rows[1].mixer == "csp");
  REQUIRE(fs::exists(tmp / "cmp" / "transformer-csp" / "seed-0" / "summary.json"));
  for (const app::CompareRow& row : r.rows) {
    REQUIRE(row.cost.flops > 0);
    REQUIRE(row.units_per_s > 0);
  }
  REQUIRE(r.rows[0].cost.flops > r.rows[1].cost.flops);  // attention's n² products
  const std::string md = slurp(tmp / "cmp" / "compare.md");
  REQUIRE_THAT(md, Contains("| model | mixer |") && Contains("| transformer | csp | 1 |") &&
                       Contains("train tokens/s") && Contains("FLOPs / sample"));
  REQUIRE(app::Json::parse(slurp(tmp / "cmp" / "compare.json"))["rows"].size() == 2);
  REQUIRE_THAT(slurp(tmp / "cmp" / "compare.html"), Contains("transformer / softmax"));
  REQUIRE_THAT(md, Contains("Skipped: transformer × gated"));
  c.mixers = "gated";
  REQUIRE_THROWS_WITH(app::lra::run_compare(c), Contains("no model × mixer pair can run"));
}

TEST_CASE("compare: lists, mixer options over several mixers and command lines", "[compare]") {
  const std::vector<std::string> known{"softmax", "csp"};
  REQUIRE(app::parse_name_list("all", known, "--mixers") == known);
  REQUIRE(app::parse_name_list("csp", known, "--mixers") == std::vector<std::string>{"csp"});
  REQUIRE_THROWS_WITH(app::parse_name_list("softmax,nope", known, "--mixers"),
                      Contains("--mixers") && Contains("'nope'") && Contains("known: softmax, csp"));
  REQUIRE_THROWS_WITH(app::parse_name_list("csp,csp", known, "--mixers"), Contains("twice"));
  REQUIRE_THROWS_WITH(app::parse_name_list("", known, "--mixers"), Contains("empty"));
  REQUIRE(app::seed_list(3) == std::vector<uint64_t>{0, 1, 2});
  REQUIRE_THROWS(app::seed_list(0));

  const std::map<std::string, std::string> opts{{"csp_k", "4"}};
  REQUIRE(app::mixer_options_for("csp", opts) == opts);
  REQUIRE(app::mixer_options_for("softmax", opts).empty());
  REQUIRE_NOTHROW(app::check_mixer_options_declared({"softmax", "csp"}, opts));
  REQUIRE_THROWS_WITH(app::check_mixer_options_declared({"softmax"}, opts),
                      Contains("csp_k=4") && Contains("no compared mixer"));

  std::ostringstream o, e;
  std::vector<const char*> argv{"vit",     "compare", "--preset",  "fmnist-tiny", "--mixers", "softmax,csp",
                                "--seeds", "2",       "--updates", "5",           "--out",    "x y"};
  app::CliCommand c = app::parse_cli(int(argv.size()), argv.data(), o, e);
  REQUIRE(c.exit_code == -1);
  REQUIRE(c.command == "compare");
  REQUIRE(c.compare.mixers == "softmax,csp");
  REQUIRE(c.compare.seeds == 2);
  REQUIRE(c.compare.base.updates == std::optional<int64_t>(5));
  REQUIRE(c.compare.command ==
          "vit compare --preset fmnist-tiny --mixers softmax,csp --seeds 2 --updates 5 --out 'x y'");
  for (std::vector<const char*> bad : std::vector<std::vector<const char*>>{
           {"vit", "compare", "--seeds", "0"}, {"vit", "compare", "--mixers", "softmax,nope"}}) {
    std::ostringstream bo, be;
    REQUIRE(app::parse_cli(int(bad.size()), bad.data(), bo, be).exit_code > 0);
    REQUIRE_FALSE(be.str().empty());
  }
  std::vector<const char*> lbad{"lra", "compare", "--models", "rnn"};
  REQUIRE(app::lra::parse_cli(int(lbad.size()), lbad.data(), o, e).exit_code > 0);

  std::vector<const char*> largv{"lra",         "compare",  "--task", "listops", "--models",
                                 "transformer", "--mixers", "all",    "--seeds", "3"};
  app::lra::CliCommand lc = app::lra::parse_cli(int(largv.size()), largv.data(), o, e);
  REQUIRE(lc.exit_code == -1);
  REQUIRE(lc.command == "compare");
  REQUIRE(lc.compare.base.task == "listops");
  REQUIRE(lc.compare.mixers == "all");
  REQUIRE(lc.compare.seeds == 3);
}

TEST_CASE("lra compare: every model family's FLOPs are complete and count more than its Linears", "[compare]") {
  for (const std::string model : {"transformer", "mega", "flash", "lstm"}) {
    INFO(model);
    const models::LraConfig cfg = app::lra::lra_preset("listops", "mini", model).model;
    const app::ModelCost cost = app::lra::lra_cost(cfg);
    REQUIRE(cost.flops_complete);
    const std::unique_ptr<models::LraModel> m = models::make_lra_model(cfg);
    double linears = 0;  // every Linear on every token (the head too: an upper bound of the Linears' share)
    for (const auto& [name, child] : m->named_children())
      linears += double(cfg.max_len) * nn::linear_flops_per_row(*child);
    REQUIRE(cost.flops > linears);
  }
  models::LraConfig csp_mega = app::lra::lra_preset("listops", "mini", "mega").model;
  csp_mega.mixer = "csp";
  REQUIRE(app::lra::lra_cost(csp_mega).flops_complete);
}
