// The six Long Range Arena tasks (specs/lra.md §1–§5, §9): what each one feeds the model, where its data comes from
// (the release's formats through the readers of apps/data, or the project's generators into a cache folder on first
// use), and its train / validation / test split.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "apps/data/listops.h"
#include "apps/data/pathfinder.h"
#include "apps/data/sequences.h"

namespace mixgrad::app::lra {

struct TaskInfo {
  std::string name;  // listops, text, retrieval, image, pathfinder, pathx
  std::string description;
  bool pixels = false;     // an image read row by row (tokens are intensities 0..255; never masked by value)
  int64_t vocab_size = 0;  // token ids in [0, vocab_size)
  int64_t num_classes = 0;
  int64_t image_size = 0;   // pixels: W (the sequence is W·W long)
  bool paired = false;      // two documents per sample (Retrieval)
  bool generated = false;   // the project generates the data set when no --data is given
  std::string data_layout;  // what --data must point at
  std::vector<std::string> class_names;
};
const std::vector<TaskInfo>& tasks();
std::vector<std::string> task_names();
const TaskInfo& task_info(const std::string& name);  // error listing the tasks

// How a generated data set is made (the project's generators; sizes and lengths are a preset's or the flags').
struct GeneratorConfig {
  data::ListOpsConfig listops;        // task listops
  data::PathfinderConfig pathfinder;  // tasks pathfinder (window 32) and pathx (window 128)
};
// The folder name that identifies a generated data set: the task plus a hash of every generator parameter, so two
// configurations never share a folder.
std::string generated_name(const std::string& task, const GeneratorConfig& g);
// Writes the data set of `task` in the release's format under `dir` (ListOps: basic_{train,val,test}.tsv;
// Pathfinder / Path-X: pathfinder<W>/<difficulty>/{imgs,metadata}); `say` gets progress lines.
void generate_task_data(const std::string& task, const GeneratorConfig& g, const std::filesystem::path& dir,
                        const std::function<void(const std::string&)>& say);
// The cache root for generated data: $MIXGRAD_DATA_DIR, else $XDG_CACHE_HOME/mixgrad, else ~/.cache/mixgrad.
std::filesystem::path default_cache_dir();
// The data folder of a generated task under `cache` (cache/lra/<generated_name>), generating it first if it is not
// there: into a temporary folder, renamed into place when complete, so an interrupted generation leaves nothing that
// looks usable.
std::filesystem::path ensure_generated(const std::string& task, const GeneratorConfig& g,
                                       const std::filesystem::path& cache,
                                       const std::function<void(const std::string&)>& say);

// A task's samples and split: `train_set` holds the training and validation samples (and, for Pathfinder / Path-X,
// the test samples too: their release has one folder that the seeded split divides), `test_set` the test samples
// when they are separate.
struct TaskData {
  data::SequenceSet train_set, test_set;
  bool test_in_train_set = false;
  std::vector<int64_t> train_idx, val_idx, test_idx;
  data::ReadReport report;  // what the readers skipped, over every file read
  int64_t truncated = 0;    // samples cut to max_len
  std::string split;        // how the split was made (for config.json and the report)
};
// Reads the task's data from `dir` (the release's layout, see TaskInfo::data_layout), cutting sequences to max_len.
// split_seed seeds the Pathfinder / Path-X 80/10/10 split (spec §9.3).
TaskData load_task_data(const TaskInfo& task, const std::filesystem::path& dir, int64_t max_len,
                        const std::string& difficulty, uint64_t split_seed);

}  // namespace mixgrad::app::lra
