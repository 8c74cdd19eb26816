// state_dict <-> safetensors files (PyTorch-readable), with metadata; loads check names, shapes and dtypes.
#pragma once
#include <filesystem>
#include <map>
#include <string>

#include "nn/module.h"

namespace mixgrad::nn {

using Metadata = std::map<std::string, std::string>;

// Writes the tensors (copied to the CPU) atomically: a temporary file in the same folder renamed over `path`.
void save_tensors(const std::filesystem::path& path, const NamedTensors& tensors, const Metadata& metadata = {});
// Reads every tensor (CPU) and the metadata; corrupt files throw with the file name and what is wrong.
NamedTensors load_tensors(const std::filesystem::path& path, Metadata* metadata = nullptr);

void save_state_dict(const Module& m, const std::filesystem::path& path, const Metadata& metadata = {});
// Loads into `m` (strict: same names, shapes and dtypes; the error names the offending tensor).
void load_state_dict(Module& m, const std::filesystem::path& path, Metadata* metadata = nullptr, bool strict = true);

}  // namespace mixgrad::nn
