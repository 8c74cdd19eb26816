// The `lra` presets per task: "paper" (the LRA Transformer configurations and recipes of specs/lra.md §7.1) and
// "mini" (the project's: the same task, small enough to train on a 2-core CPU in minutes).
#pragma once
#include <string>
#include <vector>

#include "apps/common/trainer.h"
#include "apps/lra/lra_tasks.h"
#include "models/lra_transformer.h"

namespace mixgrad::app::lra {

struct LraPreset {
  models::LraConfig model;  // every size and option but the mixer
  Recipe recipe;
  int64_t warmup_epochs = 0;  // > 0: the warm-up is this many epochs (resolved once the data are known)
  GeneratorConfig generator;  // generated tasks: the data set the preset trains on when no --data is given
  std::string difficulty = "hard";
  uint64_t split_seed = 42;  // Pathfinder / Path-X 80/10/10 split (S4 and MEGA split with seed 42)
  std::string note;          // one line: where the numbers come from
};

std::vector<std::string> lra_preset_names();  // paper, mini
// Error naming the known tasks / presets for an unknown one.
LraPreset lra_preset(const std::string& task, const std::string& preset);

}  // namespace mixgrad::app::lra
