// A diverging run never saves non-finite weights: training and validation losses and the state to be saved are
// checked, `best` is never chosen at a non-finite loss, and the error names the last good checkpoint.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>

#include "apps/common/checkpoint.h"
#include "apps/vit/vit_app.h"
#include "engine/mixgrad.h"
#include "tests/common/temp_files.h"
#include "tests/common/trainer_runs.h"

namespace fs = std::filesystem;
using namespace mixgrad;
using Catch::Contains;

namespace {

// Every floating-point tensor of a checkpoint is finite.
bool all_finite(const fs::path& file) { return !app::first_non_finite(nn::load_tensors(file)).has_value(); }

}  // namespace

TEST_CASE("trainer: lr 3e38 without warm-up stops at the non-finite validation loss and saves nothing",
          "[trainer][nan]") {
  testing::TempDir tmp("mixgrad_trainer_nan_");
  const fs::path data = testing::write_bar_dataset(tmp / "data");
  for (const char* attention : {"fused", "composite"}) {
    INFO("attention " << attention);
    const fs::path out = tmp / attention;
    app::TrainOptions o = testing::tiny_vit_run(data, out);
    o.lr = 3e38;
    o.warmup = 0;
    o.train_limit = 32;  // one step per epoch: its loss is finite (taken before the update), the weights are not
    o.attention = attention;
    REQUIRE_THROWS_WITH(app::run_training(o), Contains("training diverged: the validation loss is") &&
                                                  Contains("no checkpoint had been saved yet") &&
                                                  Contains("try a lower --lr"));
    CHECK_FALSE(fs::exists(out / "last_state.safetensors"));
    CHECK_FALSE(fs::exists(out / "last.safetensors"));
    CHECK_FALSE(fs::exists(out / "best.safetensors"));
  }
}

TEST_CASE("trainer: a run that diverges after a good checkpoint names it and leaves it intact", "[trainer][nan]") {
  testing::TempDir tmp("mixgrad_trainer_nan_good_");
  const fs::path data = testing::write_bar_dataset(tmp / "data");
  const fs::path out = tmp / "run";
  app::TrainOptions o = testing::tiny_vit_run(data, out);
  o.max_steps = 6;  // epoch 1 saved: last, best and the state at global step 6
  REQUIRE_FALSE(app::run_training(o).finished);
  // The recorded learning rate becomes 3e38 (a valid value): the resumed run diverges in epoch 2.
  testing::set_metadata(out / "last_state.safetensors", "recipe.lr", "3e38");
  o.resume = true;
  o.max_steps = 0;
  REQUIRE_THROWS_WITH(app::run_training(o), Contains("training diverged") &&
                                                Contains("the last good checkpoint is " +
                                                         (out / "last.safetensors").string() + " (global step 6)"));
  for (const char* f : {"last.safetensors", "best.safetensors", "last_state.safetensors"}) {
    INFO(f);
    CHECK(all_finite(out / f));
    CHECK(testing::metadata_of(out / f).at("train.global_step") == "6");
  }
}

TEST_CASE("trainer: first_non_finite names the tensor, the value and the element", "[trainer][nan]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor a = full({3}, 1.0), b = full({2, 2}, 2.0, TensorOptions(DType::f64)),
         c = zeros({4}, TensorOptions(DType::i64));
  CHECK_FALSE(app::first_non_finite({{"a", a}, {"b", b}, {"c", c}}).has_value());
  b.data<double>()[3] = -std::numeric_limits<double>::infinity();
  a.data<float>()[2] = nan;
  CHECK(app::first_non_finite({{"c", c}, {"b", b}, {"a", a}}) ==
        std::optional<std::string>("b holds -inf at element 3"));
  CHECK(app::first_non_finite({{"a", a}}) == std::optional<std::string>("a holds nan at element 2"));
}

TEST_CASE("trainer: eval and predict refuse a checkpoint with non-finite weights", "[trainer][nan]") {
  testing::TempDir tmp("mixgrad_trainer_nan_eval_");
  const fs::path data = testing::write_bar_dataset(tmp / "data");
  const fs::path out = tmp / "run";
  app::TrainOptions o = testing::tiny_vit_run(data, out);
  o.max_steps = 6;
  REQUIRE_FALSE(app::run_training(o).finished);
  const fs::path best = out / "best.safetensors";
  app::EvalOptions e;
  e.checkpoint = best.string();
  e.data_dir = data.string();
  e.device = "cpu";
  e.test_limit = 20;
  e.quiet = true;
  CHECK(app::run_eval(e).n == 20);
  testing::set_element(best, "head.weight", 5, std::numeric_limits<float>::quiet_NaN());
  REQUIRE_THROWS_WITH(app::run_eval(e), Contains(best.string()) && Contains("head.weight holds nan at element 5"));
  app::PredictOptions p;
  p.checkpoint = best.string();
  p.images = (data / "t10k-images-idx3-ubyte").string();
  p.out = (tmp / "logits.safetensors").string();
  p.device = "cpu";
  REQUIRE_THROWS_WITH(app::run_predict(p), Contains("non-finite weights"));
  CHECK_FALSE(fs::exists(p.out));
}
