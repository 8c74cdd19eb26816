// The `lra` presets per task and model family: "paper" (the published configuration and recipe: specs/lra.md §7.1
// for the Transformer, §7.2 MEGA, §7.4 CSP-MEGA, ...) and "mini" (the project's: the same task and data, small enough
// to train on a 2-core CPU in minutes).
#pragma once
#include <string>
#include <vector>

#include "apps/common/trainer.h"
#include "apps/lra/lra_tasks.h"
#include "models/lra_config.h"

namespace mixgrad::app::lra {

struct LraPreset {
  models::LraConfig model;  // every size and option; mixer = the family's default
  Recipe recipe;
  int64_t warmup_epochs = 0;  // > 0: the warm-up is this many epochs (resolved once the data are known)
  GeneratorConfig generator;  // generated tasks: the data set the preset trains on when no --data is given
  std::string difficulty = "hard";
  uint64_t split_seed = 42;  // Pathfinder / Path-X 80/10/10 split (S4 and MEGA split with seed 42)
  std::string note;          // one line: where the numbers come from
};

std::vector<std::string> lra_preset_names();  // paper, mini
// Error naming the known tasks / presets / families for an unknown one (or a family not built yet). The transformer's
// presets are the LRA ones (§7.1); the other families' start from the transformer's data and recipe of the same
// preset and set their own sizes.
// `mixer` empty: the family's default mixer (the preset records the mixer in model.mixer).
LraPreset lra_preset(const std::string& task, const std::string& preset, const std::string& model = "transformer",
                     const std::string& mixer = "");

}  // namespace mixgrad::app::lra
