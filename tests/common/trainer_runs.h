// Shared by the trainer suites (tests/cpu/test_trainer_*.cpp): a tiny learnable image data set, a tiny ViT run on
// it, and comparisons and edits of run folders (checkpoint tensors, metrics.jsonl, state metadata).
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "apps/common/report.h"
#include "apps/vit/vit_app.h"
#include "nn/serialize.h"

namespace mixgrad::testing {

// Fashion-MNIST-shaped IDX files in `dir` (train: 540 images per class, of which the trainer's split keeps 500 for
// validation; t10k: 10 per class): class c is a bright bar at rows 2c+4.. over deterministic noise. Returns dir.
std::filesystem::path write_bar_dataset(const std::filesystem::path& dir);

// One IDX pair of that data set: `<prefix>-images-idx3-ubyte` and `<prefix>-labels-idx1-ubyte` with per_class images
// of each of the 10 classes (labels 0..9 in turn), noise drawn from `seed`.
void write_bar_idx(const std::filesystem::path& dir, const std::string& prefix, int per_class, uint32_t seed = 12345);

// A tiny ViT (patch 7, D 32, depth 1) on that data set: 2 epochs x 6 steps of batch 32, warm-up 3, a log line every
// 4 steps, validation on 100 images, test on 60, CPU, quiet; 12 optimiser steps in all.
app::TrainOptions tiny_vit_run(const std::filesystem::path& data, const std::filesystem::path& out);

// The tensors of two safetensors files are the same names in the same order with the same bits (Catch assertions).
void require_same_tensors(const std::filesystem::path& a, const std::filesystem::path& b);

// metrics.jsonl records without the fields that depend on time or on this process's memory (wall_s, eta_s,
// *_per_s, memory_bytes, peak_memory_bytes).
std::vector<app::Json> metrics_without_times(const std::filesystem::path& file);

// Two runs' metrics.jsonl agree record by record (times aside); the first difference is reported.
void require_same_metrics(const std::filesystem::path& a, const std::filesystem::path& b);

// Rewrites a safetensors file with metadata key `key` set to `value` (tensors unchanged).
void set_metadata(const std::filesystem::path& file, const std::string& key, const std::string& value);

// Rewrites a safetensors file with element `index` of float32 tensor `name` set to `value`.
void set_element(const std::filesystem::path& file, const std::string& name, int64_t index, float value);

// The metadata of a safetensors file.
nn::Metadata metadata_of(const std::filesystem::path& file);

// The regular files named "*.tmp" directly in `dir`.
std::vector<std::filesystem::path> temporaries_in(const std::filesystem::path& dir);

}  // namespace mixgrad::testing
