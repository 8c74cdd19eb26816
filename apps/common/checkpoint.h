// Crash-safe checkpoint files of a run folder.
//
// Every file is committed the same way: written complete under a staging name ("<file>.tmp", fsynced), renamed over
// its final name, then its folder is fsynced so that the rename itself survives a crash. A reader therefore sees
// either the old or the new file under the final name, never a part of one; a kill leaves at most a stale "*.tmp",
// which remove_stale_temporaries() cleans when a run starts or resumes.
//
// One file is the commit point of a save: last_state.safetensors holds everything a resume needs (the weights as
// "model.<name>", the optimiser state as "optim.<name>", the model's metadata, "recipe.*" and "train.*"), so a
// single atomic rename moves a run from one complete state to the next. last.safetensors and best.safetensors are
// views written after that commit and rewritten from the state on resume (see apps/common/trainer.h).
//
// A SaveHook sees every step after it happened and may inject a fault there: tests use it to fail (as ENOSPC would)
// or stop dead (as kill -9 would) after each write, rename and fsync.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "nn/serialize.h"

namespace mixgrad::app {

// A step of a file commit, reported after it happened.
enum class SaveStep {
  wrote,       // the staging file is complete and fsynced
  renamed,     // the staging file is now the final file
  synced_dir,  // the folder is fsynced: the rename is durable
};
const char* save_step_name(SaveStep step);

struct SaveEvent {
  SaveStep step;
  std::filesystem::path path;  // the file the step was about (the staging file for `wrote`)
};

// What happens after a step: go on; fail as an I/O error would (the staging file is removed and a mixgrad::Error
// thrown); or stop dead as a killed process would (SaveInterrupted is thrown and the disk is left exactly as it is).
enum class SaveFault { none, fail, stop };
using SaveHook = std::function<SaveFault(const SaveEvent&)>;

// What a SaveHook's `stop` throws; deliberately not a mixgrad::Error, so nothing treats it as a failure to report.
class SaveInterrupted : public std::runtime_error {
 public:
  explicit SaveInterrupted(const SaveEvent& at);
};

// Commits `path`: write(staging) must leave a complete, fsynced file at the staging path it is given; it is then
// renamed over `path` and the folder fsynced, with `hook` (may be empty) consulted after each step. A failure
// throws an Error naming `path`; before the rename it also removes the staging file and `path` keeps its previous
// content, after it `path` holds the new one.
void commit_file(const std::filesystem::path& path, const std::function<void(const std::filesystem::path&)>& write,
                 const SaveHook& hook = {});

// Tensors and metadata committed as a safetensors file (commit_file + nn::save_tensors).
void commit_tensors(const std::filesystem::path& path, const nn::NamedTensors& tensors, const nn::Metadata& metadata,
                    const SaveHook& hook = {});

// fsync of an existing file (data written through another handle, e.g. an appended log, reaches the disk).
void fsync_file(const std::filesystem::path& path);

// Removes the regular files named "*.tmp" directly in `dir` (left by an interrupted save); returns how many.
int64_t remove_stale_temporaries(const std::filesystem::path& dir);

// Host copies of the tensors (same names and order).
nn::NamedTensors host_copies(const nn::NamedTensors& tensors);
// The first non-finite element of the floating-point tensors, as "<name> holds <value> at element <i>"; nullopt
// when every element is finite.
std::optional<std::string> first_non_finite(const nn::NamedTensors& host_tensors);

}  // namespace mixgrad::app
