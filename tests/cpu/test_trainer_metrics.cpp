// metrics.jsonl of a run interrupted (by --max-steps, between log lines and at them) and resumed equals the
// uninterrupted run's line by line, times aside: the open log interval's sums travel in the training state.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "apps/vit/vit_app.h"
#include "tests/common/temp_files.h"
#include "tests/common/trainer_runs.h"

namespace fs = std::filesystem;
using namespace mixgrad;

TEST_CASE("trainer: metrics.jsonl after stops and resumes equals the uninterrupted run's", "[trainer][metrics]") {
  testing::TempDir tmp("mixgrad_trainer_metrics_");
  const fs::path data = testing::write_bar_dataset(tmp / "data");
  REQUIRE(app::run_training(testing::tiny_vit_run(data, tmp / "a")).finished);
  const auto ref = testing::metrics_without_times(tmp / "a" / "metrics.jsonl");
  // Log lines at steps 4, 6 (epoch end), 8, 12 plus two validations: 6 records.
  REQUIRE(ref.size() == 6);

  // Stops: 5 (one step into the interval 5..6), 6 (epoch end), 7 and 10 (inside the interval 9..12), 11; the run
  // finishes on the last resume.
  app::TrainOptions b = testing::tiny_vit_run(data, tmp / "b");
  bool resume = false;
  for (const int64_t stop : {5, 6, 7, 10, 11, 0}) {
    INFO("stop at " << stop);
    b.max_steps = stop;
    b.resume = resume;
    const app::TrainSummary s = app::run_training(b);
    CHECK(s.finished == (stop == 0));
    if (stop > 0) CHECK(s.global_step == stop);
    resume = true;
  }
  testing::require_same_metrics(tmp / "a" / "metrics.jsonl", tmp / "b" / "metrics.jsonl");
  testing::require_same_tensors(tmp / "a" / "last.safetensors", tmp / "b" / "last.safetensors");

  // A record written after the last commit (a kill between a log line and the next save) is dropped on resume.
  app::TrainOptions c = testing::tiny_vit_run(data, tmp / "c");
  c.max_steps = 5;
  REQUIRE_FALSE(app::run_training(c).finished);
  {
    app::MetricsLog log(tmp / "c" / "metrics.jsonl", true);
    log.write(app::Json{{"kind", "train"}, {"step", 8}, {"loss", 9.0}});
    log.write(app::Json{{"kind", "val"}, {"step", 6}, {"loss", 9.0}});
  }
  c.max_steps = 0;
  c.resume = true;
  REQUIRE(app::run_training(c).finished);
  testing::require_same_metrics(tmp / "a" / "metrics.jsonl", tmp / "c" / "metrics.jsonl");
}
