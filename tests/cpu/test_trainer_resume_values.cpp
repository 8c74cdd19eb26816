// Values read back from a training state on --resume pass the command line's range checks: a damaged or hostile
// last_state.safetensors (recipe, position, open tallies, optimiser moments, weights) gives a clear error naming the
// file and the key or tensor, never a silent resume, non-finite weights or a signed overflow.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "apps/vit/vit_app.h"
#include "tests/common/temp_files.h"
#include "tests/common/trainer_runs.h"

namespace fs = std::filesystem;
using namespace mixgrad;
using Catch::Contains;

namespace {

struct Tampered {
  std::string key, value;  // a metadata key of last_state.safetensors and the value written over it
  std::string expect;      // what the error must also say
};

// A run stopped at global step 4 (mid epoch 1, an open log interval), to be resumed after tampering.
fs::path stopped_run(const fs::path& data, const fs::path& out) {
  app::TrainOptions o = testing::tiny_vit_run(data, out);
  o.max_steps = 4;
  REQUIRE_FALSE(app::run_training(o).finished);
  return out;
}

app::TrainOptions resume_of(const fs::path& data, const fs::path& out) {
  app::TrainOptions o = testing::tiny_vit_run(data, out);
  o.resume = true;
  return o;
}

}  // namespace

TEST_CASE("trainer: out-of-range values in a training state are errors naming the file and the key",
          "[trainer][resume]") {
  testing::TempDir tmp("mixgrad_trainer_values_");
  const fs::path data = testing::write_bar_dataset(tmp / "data");
  const fs::path base = stopped_run(data, tmp / "base");
  const std::string i64max = std::to_string(std::numeric_limits<int64_t>::max());
  const std::vector<Tampered> cases = {
      {"recipe.lr", "nan", "a finite number > 0"},
      {"recipe.lr", "-0.001", "a finite number > 0"},
      {"recipe.beta2", "2", "[0, 1)"},
      {"recipe.beta1", "-0.5", "[0, 1)"},
      {"recipe.epochs", i64max, "1 .. 1000000"},
      {"recipe.epochs", "0", "1 .. 1000000"},
      {"recipe.updates", i64max, "0 .. 2^40"},
      {"recipe.batch_size", "0", "1 .. 65536"},
      {"recipe.warmup_steps", "-5", "0 .. 2^40"},
      {"recipe.weight_decay", "inf", "finite"},
      {"recipe.eps", "0", "> 0"},
      {"recipe.min_lr", "nan", "finite"},
      {"recipe.label_smoothing", "1", "[0, 1)"},
      {"recipe.clip_norm", "nan", "finite"},
      {"recipe.train_limit", "-1", "0 .. 2^40"},
      {"recipe.schedule", "exponential", "cosine"},
      {"recipe.crop_padding", "100000", "0 .. 64"},
      {"recipe.std", "0", "> 0"},
      {"recipe.mean", "nan", "finite"},
      {"recipe.dataset", "imagenet", "fashion-mnist"},
      {"recipe.lr", "fast", "not a number"},
      {"train.global_step", i64max, "0 .. 12"},
      {"train.global_step", "5", "does not match"},
      {"train.epoch", "-1", "0 .. 2"},
      {"train.epoch", i64max, "0 .. 2"},
      {"train.step_in_epoch", "99", "0 .. 6"},
      {"train.best_val_accuracy", "nan", "[0, 1]"},
      {"train.best_val_accuracy", "2", "[0, 1]"},
      {"train.best_global_step", "100", "-1 .. -1"},  // no validation before step 4: no best
      {"train.interval_loss_sum", "nan", "finite"},
      {"train.interval_correct", "1000000", "(the samples)"},
      {"train.epoch_samples", "-3", ">= 0"},
  };
  for (const Tampered& c : cases) {
    INFO(c.key << " = " << c.value);
    const fs::path run = tmp / "run";
    fs::remove_all(run);
    fs::copy(base, run, fs::copy_options::recursive);
    const fs::path state = run / "last_state.safetensors";
    testing::set_metadata(state, c.key, c.value);
    REQUIRE_THROWS_WITH(app::run_training(resume_of(data, run)),
                        Contains(state.string()) && Contains("'" + c.key + "'") && Contains(c.expect) &&
                            !Contains("--lr") && !Contains("--epochs"));
    // Nothing was written: the state is still the tampered one, and no view was rewritten from it.
    CHECK(testing::metadata_of(state).at(c.key) == c.value);
  }
  // The untouched run still resumes.
  REQUIRE(app::run_training(resume_of(data, base)).finished);
}

TEST_CASE("trainer: non-finite or negative optimiser moments and non-finite weights in a state are errors",
          "[trainer][resume]") {
  testing::TempDir tmp("mixgrad_trainer_moments_");
  const fs::path data = testing::write_bar_dataset(tmp / "data");
  const fs::path base = stopped_run(data, tmp / "base");
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  struct Poison {
    std::string tensor;
    float value;
    std::string expect;
  };
  for (const Poison& c : std::vector<Poison>{{"optim.exp_avg_sq.0", -1.0f, ">= 0: a second moment"},
                                             {"optim.exp_avg_sq.2", nan, "finite values"},
                                             {"optim.exp_avg.1", inf, "finite values"},
                                             {"model.cls_token", nan, "non-finite weights"}}) {
    INFO(c.tensor << " = " << c.value);
    const fs::path run = tmp / "run";
    fs::remove_all(run);
    fs::copy(base, run, fs::copy_options::recursive);
    const fs::path state = run / "last_state.safetensors";
    testing::set_element(state, c.tensor, 0, c.value);
    const std::string name = c.tensor.rfind("model.", 0) == 0 ? c.tensor.substr(6) : c.tensor;
    REQUIRE_THROWS_WITH(app::run_training(resume_of(data, run)),
                        Contains(state.string()) && Contains(name) && Contains(c.expect));
  }
  // The optimiser's step count must be the global step.
  const fs::path run = tmp / "run";
  fs::remove_all(run);
  fs::copy(base, run, fs::copy_options::recursive);
  const fs::path state = run / "last_state.safetensors";
  nn::Metadata m;
  nn::NamedTensors t = nn::load_tensors(state, &m);
  for (auto& [name, x] : t)
    if (name == "optim.step") x.data<int64_t>()[0] = 7;
  nn::save_tensors(state, t, m);
  REQUIRE_THROWS_WITH(app::run_training(resume_of(data, run)),
                      Contains(state.string()) && Contains("'optim.step' = 7") && Contains("'train.global_step' = 4"));
}
