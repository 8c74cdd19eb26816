// Run folders: reading the last committed state for --resume, and refusing to start over another run.
#include <fmt/format.h>

#include "apps/common/checkpoint.h"
#include "apps/common/options.h"
#include "apps/common/trainer.h"
#include "engine/error.h"

namespace mixgrad::app {

namespace fs = std::filesystem;

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Older run folders kept the weights only in last.safetensors, written after last_state.safetensors: they resume
// when both name the same global step.
void read_legacy_weights(const fs::path& out, ResumeState& rs) {
  rs.weights_path = out / "last.safetensors";
  MIXGRAD_CHECK(fs::exists(rs.weights_path),
                "--resume: {} holds no weights and {} is missing; the run cannot be resumed", rs.state_path.string(),
                rs.weights_path.string());
  nn::NamedTensors w = nn::load_tensors(rs.weights_path, &rs.weights_meta);
  const std::string a = meta_get(rs.weights_meta, "train.global_step", rs.weights_path.string());
  const std::string b = meta_get(rs.state_meta, "train.global_step", rs.state_path.string());
  MIXGRAD_CHECK(a == b, "--resume: {} (step {}) and {} (step {}) disagree; the run was interrupted while saving",
                rs.weights_path.string(), a, rs.state_path.string(), b);
  rs.weights_meta.erase("train.global_step");
  rs.weights = std::move(w);
}

}  // namespace

ResumeState read_resume_state(const fs::path& out) {
  ResumeState rs;
  rs.state_path = out / "last_state.safetensors";
  MIXGRAD_CHECK(fs::is_regular_file(rs.state_path),
                "--resume: {} has no last_state.safetensors to resume from (no checkpoint of a run was completed "
                "there)",
                out.string());
  (void)remove_stale_temporaries(out);
  const std::string f = rs.state_path.string();
  for (auto& [name, t] : nn::load_tensors(rs.state_path, &rs.state_meta)) {
    if (starts_with(name, "model."))
      rs.weights.emplace_back(name.substr(6), t);
    else if (starts_with(name, "optim."))
      rs.state_tensors.emplace_back(name, t);
    else
      throw Error(
          fmt::format("{}: unexpected tensor '{}' (a training state holds model.* and optim.* tensors)", f, name));
  }
  if (rs.weights.empty()) {
    read_legacy_weights(out, rs);
    return rs;
  }
  rs.weights_path = rs.state_path;
  for (const auto& [k, v] : rs.state_meta)
    if (!starts_with(k, "recipe.") && !starts_with(k, "train.")) rs.weights_meta[k] = v;
  return rs;
}

void check_fresh_run_dir(const fs::path& out, bool overwrite) {
  MIXGRAD_CHECK(overwrite || (!fs::exists(out / "last.safetensors") && !fs::exists(out / "last_state.safetensors")),
                "{} already holds a run; pass --resume to continue it, --overwrite to start again, or another --out",
                out.string());
}

}  // namespace mixgrad::app
