// The presets of the LRA model families other than the transformer, one function per family (one file each,
// apps/lra/lra_presets_<family>.cpp), dispatched by lra_preset(). Each gets the transformer's preset of the same task
// and name (`base`: its data set, generator, data limits, epochs and batch size) and returns its own sizes and recipe
// (model.model, mixer, task, input, vocabulary, classes and grid are set by lra_preset afterwards).
#pragma once
#include <string>

#include "apps/lra/lra_presets.h"

namespace mixgrad::app::lra {

// `mixer`: the run's mixer (never empty; a family's presets may differ per mixer, as CSP-MEGA's do).
using FamilyPreset = LraPreset (*)(const TaskInfo& task, const std::string& preset, const std::string& mixer,
                                   LraPreset base);

// MEGA (specs/lra.md §7.2) and, with mixer csp, CSP-MEGA (§7.4); mini: a 2-layer MEGA (apps/lra/lra_presets_mega.cpp).
LraPreset mega_preset(const TaskInfo& task, const std::string& preset, const std::string& mixer, LraPreset base);

// The LSTM (ours, specs/lra.md §6.5): paper = MEGA's command line per task with --layer-type lstm; mini: a 1-layer
// BiLSTM (apps/lra/lra_presets_lstm.cpp).
LraPreset lstm_preset(const TaskInfo& task, const std::string& preset, const std::string& mixer, LraPreset base);
// FLASH / GAU (apps/lra/lra_presets_flash.cpp).
LraPreset flash_preset(const TaskInfo& task, const std::string& preset, const std::string& mixer, LraPreset base);

}  // namespace mixgrad::app::lra
