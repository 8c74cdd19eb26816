// `compare`, shared by `vit compare` and `lra compare`: the same data and recipe trained with several models × token
// mixers over several seeds, each run in its own folder through the normal trainer, summarised in one table written
// three ways: compare.md, compare.json and a self-contained compare.html (the table plus an inline SVG plot of test
// accuracy against training throughput; no scripts).
//
// Interrupted comparisons resume: a run whose summary.json is there is reused as it is, a run with a
// last.safetensors continues through the trainer's resume, any other run starts afresh.
//
// Layout of the output folder:
//   <out>/<run folder>/seed-<s>/   one normal run folder each (<run folder> = the mixer, or <model>-<mixer>)
//   <out>/<...>/compare_time.json  the wall time the comparison spent on that run, summed over invocations
//   <out>/compare.md, compare.json, compare.html
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "apps/common/report.h"
#include "apps/common/trainer.h"

namespace mixgrad::app {

struct CompareRun {
  std::string model, mixer;
  uint64_t seed = 0;
  std::filesystem::path dir;
};

// Parameters and matmul FLOPs of one forward pass per sample (apps/common/flops.h says how they are counted).
struct ModelCost {
  int64_t params = 0;
  double flops = 0;
  bool flops_complete = true;  // false: a mixer or module without a FLOP formula was met (flops is a lower bound)
};

struct CompareSpec {
  std::string app = "app";  // "vit" or "lra"
  std::string title;        // first line of the reports
  std::filesystem::path out_dir;
  std::vector<std::string> models;    // at least one
  std::vector<std::string> mixers;    // at least one
  std::vector<uint64_t> seeds;        // at least one
  bool model_in_folder_name = false;  // run folders <model>-<mixer> (else <mixer>)
  std::string unit = "images";        // the throughput unit: summary.json's "train_<unit>_per_s"
  std::string per_sample = "image";   // "FLOPs / image"
  Json settings;                      // the shared preset, data and recipe flags (compare.json "settings")
  std::string command;                // the command line that made it, for the reports (may be empty)
  std::string selection = "best-validation checkpoint";  // the weights each run tests, for the reports' notes
  // Trains run.dir to its end, continuing the run there when `resume`; throws on failure.
  std::function<TrainSummary(const CompareRun& run, bool resume)> train;
  // The cost of a model × mixer of this comparison, from a finished run's folder (its config.json).
  std::function<ModelCost(const CompareRun& run)> cost;
  // Optional: why a model × mixer pair cannot run (empty = it can). Such pairs are left out, each with a note in the
  // reports and compare.json ("skipped"); nothing left to run is an error listing the reasons.
  std::function<std::string(const std::string& model, const std::string& mixer)> skip_reason;
  bool quiet = false;
};

struct CompareRunResult {
  CompareRun run;
  std::string status;  // "trained", "resumed" or "reused"
  double test_accuracy = 0, units_per_s = 0, wall_s = 0;
  int64_t peak_memory_bytes = 0;
  ModelCost cost;
};

struct CompareRow {
  std::string model, mixer;
  std::vector<double> accuracies;              // test accuracy per seed, in seed order
  double accuracy_mean = 0, accuracy_std = 0;  // sample standard deviation over seeds (0 for one seed)
  double accuracy_min = 0, accuracy_max = 0;
  ModelCost cost;
  double units_per_s = 0, wall_s = 0;  // means over seeds
  int64_t peak_memory_bytes = 0;       // the largest over seeds
};

struct CompareResult {
  std::vector<CompareRunResult> runs;  // models × mixers × seeds, in that order
  std::vector<CompareRow> rows;        // models × mixers
  std::vector<std::string> skipped;    // "model × mixer: why" for each pair left out (CompareSpec::skip_reason)
};

// Every run (trained, resumed or reused as above), then compare.md, compare.json and compare.html in out_dir.
CompareResult run_comparison(const CompareSpec& spec);

// The run folder of one model × mixer × seed.
std::filesystem::path compare_run_dir(const CompareSpec& spec, const std::string& model, const std::string& mixer,
                                      uint64_t seed);

// "all" -> `known`; otherwise a comma-separated list whose every entry is in `known` (an error names an unknown or
// repeated entry and lists the known ones; `what` is the flag, e.g. "--mixers").
std::vector<std::string> parse_name_list(const std::string& list, const std::vector<std::string>& known,
                                         const std::string& what);
// Seeds 0 .. n-1 (n >= 1).
std::vector<uint64_t> seed_list(int64_t n);

// --mixer-opt over several mixers: the options `mixer` declares. An option no mixer of `mixers` declares is an error.
std::map<std::string, std::string> mixer_options_for(const std::string& mixer,
                                                     const std::map<std::string, std::string>& options);
void check_mixer_options_declared(const std::vector<std::string>& mixers,
                                  const std::map<std::string, std::string>& options);

Json compare_json(const CompareSpec& spec, const CompareResult& result);
std::string render_compare_md(const CompareSpec& spec, const CompareResult& result);
std::string render_compare_html(const CompareSpec& spec, const CompareResult& result);

}  // namespace mixgrad::app
