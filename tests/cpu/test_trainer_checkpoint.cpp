// Checkpoint saves under faults (apps/common/checkpoint.h, the trainer's save sequence): a save stopped (as by
// kill -9) or failed (as by a full disk) after any write, rename or fsync, or torn at any byte of a file being
// written, leaves a run that --resume continues from the newest complete state, to the same final weights and
// metrics as an uninterrupted run; stale *.tmp files are cleaned; older run folders still resume.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "apps/common/checkpoint.h"
#include "apps/vit/vit_app.h"
#include "engine/mixgrad.h"
#include "tests/common/temp_files.h"
#include "tests/common/trainer_runs.h"

namespace fs = std::filesystem;
using namespace mixgrad;
using Catch::Contains;

namespace {

struct Reference {
  std::vector<app::SaveEvent> events;  // every save step of the uninterrupted run, in order
  std::vector<int64_t> committed;      // committed[i]: global step of the newest state committed up to event i (-1)
};

// The run every fault is injected into: tiny_vit_run cut to 2 epochs x 2 steps, validating on 40 images (a save at
// each epoch end), so that the many interrupted copies stay quick.
app::TrainOptions short_run(const fs::path& data, const fs::path& out) {
  app::TrainOptions o = testing::tiny_vit_run(data, out);
  o.train_limit = 64;
  o.val_limit = 40;
  o.test_limit = 20;
  return o;
}

// The uninterrupted run, recording its save steps.
Reference reference_run(const fs::path& data, const fs::path& out) {
  Reference ref;
  app::TrainOptions o = short_run(data, out);
  o.save_hook = [&](const app::SaveEvent& e) {
    ref.events.push_back(e);
    int64_t step = ref.committed.empty() ? -1 : ref.committed.back();
    if (e.step == app::SaveStep::renamed && e.path.filename() == "last_state.safetensors")
      step = std::stoll(testing::metadata_of(e.path).at("train.global_step"));
    ref.committed.push_back(step);
    return app::SaveFault::none;
  };
  const app::TrainSummary s = app::run_training(o);
  REQUIRE(s.finished);
  REQUIRE(s.global_step == 4);
  return ref;
}

// Cuts a staging file to `keep` bytes: what a kill in the middle of writing it leaves.
void tear(const fs::path& file, uint64_t keep) {
  std::vector<uint8_t> bytes = testing::read_bytes(file);
  REQUIRE(keep <= bytes.size());
  bytes.resize(keep);
  testing::write_bytes(file, bytes);
}

// Finishes an interrupted run the way a user would: --resume when a state was committed, else a fresh start.
void finish_run(const fs::path& data, const fs::path& out, int64_t expected_step) {
  app::TrainOptions o = short_run(data, out);
  if (expected_step < 0) {
    REQUIRE_FALSE(fs::exists(out / "last_state.safetensors"));
    app::TrainOptions r = o;
    r.resume = true;
    REQUIRE_THROWS_WITH(app::run_training(r), Contains("--resume") && Contains("no last_state.safetensors"));
  } else {
    // The newest complete state, never a mix: the commit point names the step, and last.safetensors agrees
    // once the resume has rewritten it.
    REQUIRE(testing::metadata_of(out / "last_state.safetensors").at("train.global_step") ==
            std::to_string(expected_step));
    o.resume = true;
  }
  const app::TrainSummary s = app::run_training(o);
  REQUIRE(s.finished);
  REQUIRE(s.global_step == 4);
  CHECK(testing::temporaries_in(out).empty());
}

void require_same_run(const fs::path& a, const fs::path& b) {
  for (const char* f : {"last.safetensors", "best.safetensors", "last_state.safetensors"})
    testing::require_same_tensors(a / f, b / f);
  testing::require_same_metrics(a / "metrics.jsonl", b / "metrics.jsonl");
}

}  // namespace

TEST_CASE("trainer: a save stopped or failed after any write, rename or fsync resumes to the uninterrupted run",
          "[trainer][checkpoint]") {
  testing::TempDir tmp("mixgrad_trainer_ckpt_");
  const fs::path data = testing::write_bar_dataset(tmp / "data");
  const Reference ref = reference_run(data, tmp / "ref");
  // Two epoch-end saves, each: the state (the commit point), then last, then best when validation improved; each file
  // written, renamed and its folder fsynced.
  REQUIRE(ref.events.size() >= 12);
  REQUIRE(ref.events.size() % 3 == 0);
  REQUIRE(ref.committed.back() == 4);

  for (const app::SaveFault fault : {app::SaveFault::stop, app::SaveFault::fail}) {
    for (size_t k = 0; k < ref.events.size(); ++k) {
      const app::SaveEvent& at = ref.events[k];
      // An I/O error (a full disk) fails a write; a failure reported after a rename or an fsync leaves the disk
      // as a stop there does, which the stops cover.
      if (fault == app::SaveFault::fail && at.step != app::SaveStep::wrote) continue;
      INFO((fault == app::SaveFault::stop ? "stop" : "fail") << " after the " << app::save_step_name(at.step) << " of "
                                                             << at.path.filename().string() << " (event " << k << ")");
      const fs::path out = tmp / ("run" + std::to_string(int(fault)) + "_" + std::to_string(k));
      app::TrainOptions o = short_run(data, out);
      size_t seen = 0;
      o.save_hook = [&](const app::SaveEvent&) { return seen++ == k ? fault : app::SaveFault::none; };
      if (fault == app::SaveFault::stop) {
        REQUIRE_THROWS_AS(app::run_training(o), app::SaveInterrupted);
        // A stop right after a write stands for every kill during that write: the staging file torn at a byte
        // (none, inside the 8-byte header length, inside the header, inside the data).
        if (at.step == app::SaveStep::wrote) {
          const fs::path staging = out / at.path.filename();
          const uint64_t size = fs::file_size(staging);
          tear(staging, std::vector<uint64_t>{0, 5, 100, size / 2, size - 1}[k % 5]);
        }
      } else {
        REQUIRE_THROWS_WITH(app::run_training(o), Contains("cannot save") && Contains("injected fault"));
        if (at.step == app::SaveStep::wrote) CHECK(testing::temporaries_in(out).empty());  // the writer cleaned up
      }
      finish_run(data, out, ref.committed[k]);
      require_same_run(tmp / "ref", out);
      fs::remove_all(out);
    }
  }
}

TEST_CASE("trainer: stale *.tmp files are removed when a run starts and when it resumes", "[trainer][checkpoint]") {
  testing::TempDir tmp("mixgrad_trainer_tmp_");
  const fs::path data = testing::write_bar_dataset(tmp / "data");
  const fs::path out = tmp / "run";
  fs::create_directories(out);
  for (const char* f : {"last_state.safetensors.tmp", "best.safetensors.tmp", "metrics.jsonl.tmp"})
    testing::write_bytes(out / f, {1, 2, 3});
  app::TrainOptions o = short_run(data, out);
  o.max_steps = 1;
  REQUIRE_FALSE(app::run_training(o).finished);
  CHECK(testing::temporaries_in(out).empty());
  testing::write_bytes(out / "last_state.safetensors.tmp.tmp", {4});
  testing::write_bytes(out / "last.safetensors.tmp", {5});
  o.resume = true;
  o.max_steps = 0;
  REQUIRE(app::run_training(o).finished);
  CHECK(testing::temporaries_in(out).empty());
}

TEST_CASE("trainer: a fresh run into a folder holding only a state is refused; --overwrite discards the old run",
          "[trainer][checkpoint]") {
  testing::TempDir tmp("mixgrad_trainer_fresh_");
  const fs::path data = testing::write_bar_dataset(tmp / "data");
  const fs::path out = tmp / "run";
  app::TrainOptions o = short_run(data, out);
  o.max_steps = 2;
  REQUIRE_FALSE(app::run_training(o).finished);
  fs::remove(out / "last.safetensors");  // killed after the commit, before the view was written
  REQUIRE_THROWS_WITH(app::run_training(o), Contains("already holds a run") && Contains("--resume"));
  // --resume rewrites last.safetensors from the state.
  app::TrainOptions r = o;
  r.resume = true;
  r.max_steps = 2;
  REQUIRE_FALSE(app::run_training(r).finished);
  REQUIRE(testing::metadata_of(out / "last.safetensors").at("train.global_step") == "2");
  // --overwrite: the old checkpoints go before anything else, so a crash cannot leave them to resume.
  o.overwrite = true;
  o.max_steps = 1;
  o.save_hook = [](const app::SaveEvent&) { return app::SaveFault::stop; };
  REQUIRE_THROWS_AS(app::run_training(o), app::SaveInterrupted);
  CHECK_FALSE(fs::exists(out / "last_state.safetensors"));
  CHECK_FALSE(fs::exists(out / "last.safetensors"));
  CHECK_FALSE(fs::exists(out / "best.safetensors"));
}

TEST_CASE("trainer: a run folder of the older layout (weights only in last.safetensors) still resumes",
          "[trainer][checkpoint]") {
  testing::TempDir tmp("mixgrad_trainer_legacy_");
  const fs::path data = testing::write_bar_dataset(tmp / "data");
  REQUIRE(app::run_training(short_run(data, tmp / "ref")).finished);
  const fs::path out = tmp / "run";
  app::TrainOptions o = short_run(data, out);
  o.max_steps = 2;  // the epoch boundary: no open log interval, which the old layout did not record
  REQUIRE_FALSE(app::run_training(o).finished);
  // Rewrite the state as the older trainer wrote it: optim.* tensors, recipe.* and train.* metadata only.
  const fs::path state = out / "last_state.safetensors";
  nn::Metadata m, old_meta;
  nn::NamedTensors old_tensors;
  for (auto& [name, t] : nn::load_tensors(state, &m))
    if (name.rfind("optim.", 0) == 0) old_tensors.emplace_back(name, t);
  for (const auto& [k, v] : m)
    if ((k.rfind("recipe.", 0) == 0 || k.rfind("train.", 0) == 0) && k.rfind("train.interval_", 0) != 0 &&
        k.rfind("train.epoch_", 0) != 0 && k.rfind("train.best_", 0) != 0)
      old_meta[k] = v;
  old_meta["train.best_val_accuracy"] = m.at("train.best_val_accuracy");
  nn::save_tensors(state, old_tensors, old_meta);
  // Interrupted between its two files: a clear error naming both.
  testing::set_metadata(out / "last.safetensors", "train.global_step", "1");
  o.resume = true;
  o.max_steps = 0;
  REQUIRE_THROWS_WITH(app::run_training(o), Contains("last.safetensors (step 1)") && Contains("disagree"));
  testing::set_metadata(out / "last.safetensors", "train.global_step", "2");
  REQUIRE(app::run_training(o).finished);
  for (const char* f : {"last.safetensors", "best.safetensors"})
    testing::require_same_tensors(tmp / "ref" / f, out / f);
}

TEST_CASE("trainer: commit_file keeps the old file on a failure before the rename and reports the file",
          "[trainer][checkpoint]") {
  testing::TempDir tmp("mixgrad_commit_");
  const fs::path f = tmp / "x.safetensors";
  app::commit_tensors(f, {{"w", full({2}, 1.0)}}, {{"v", "1"}});
  for (const app::SaveStep fail_at : {app::SaveStep::wrote, app::SaveStep::renamed, app::SaveStep::synced_dir}) {
    INFO(app::save_step_name(fail_at));
    std::vector<app::SaveStep> seen;
    const app::SaveHook hook = [&](const app::SaveEvent& e) {
      seen.push_back(e.step);
      return e.step == fail_at ? app::SaveFault::fail : app::SaveFault::none;
    };
    REQUIRE_THROWS_WITH(app::commit_tensors(f, {{"w", full({2}, 2.0)}}, {{"v", "2"}}, hook),
                        Contains(f.string()) && Contains("injected fault"));
    CHECK(seen.back() == fail_at);
    CHECK(testing::temporaries_in(tmp.path).empty());
    CHECK(testing::metadata_of(f).at("v") == (fail_at == app::SaveStep::wrote ? "1" : "2"));
  }
  // A write that throws leaves no staging file and the old content.
  app::commit_tensors(f, {{"w", full({2}, 1.0)}}, {{"v", "1"}});
  REQUIRE_THROWS_WITH(app::commit_file(f,
                                       [](const fs::path& staging) {
                                         testing::write_bytes(staging, {1, 2});
                                         throw std::runtime_error("No space left on device");
                                       }),
                      Contains("cannot save") && Contains("No space left on device"));
  CHECK(testing::temporaries_in(tmp.path).empty());
  CHECK(testing::metadata_of(f).at("v") == "1");
}
