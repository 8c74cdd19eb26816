// The readers of untrusted files, each as "bytes in, load or mixgrad::Error out", shared by the deterministic
// mutation test of the CPU suite (tests/cpu/test_mutation_readers.cpp) and the libFuzzer targets (tests/fuzz/).
// Each reader writes the bytes where the real reader looks for them, under a scratch directory, and runs it the way
// an app does; any exception other than mixgrad::Error, a crash or a hang is a bug.
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "apps/data/cifar.h"
#include "apps/data/idx.h"
#include "apps/data/listops.h"
#include "apps/data/pathfinder.h"
#include "apps/data/png_gray.h"
#include "engine/error.h"
#include "models/lra_transformer.h"
#include "models/vit.h"
#include "nn/serialize.h"

namespace mixgrad::fuzz {

inline void write_file(const std::filesystem::path& p, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("fuzz: cannot write " + p.string());
}

// The input formats the mutation test and the fuzz targets cover.
enum class Format { idx, cifar10, safetensors, listops_tsv, png, pathfinder_metadata };

inline const char* format_name(Format f) {
  switch (f) {
    case Format::idx:
      return "idx";
    case Format::cifar10:
      return "cifar10";
    case Format::safetensors:
      return "safetensors";
    case Format::listops_tsv:
      return "listops_tsv";
    case Format::png:
      return "png";
    case Format::pathfinder_metadata:
      return "pathfinder_metadata";
  }
  return "?";
}

// A checkpoint's model config as an app reads it: the config of its "arch", validated before anything is built.
inline void read_model_config(const std::filesystem::path& file, const nn::Metadata& meta) {
  const auto arch = meta.find("arch");
  if (arch == meta.end()) return;
  try {
    if (arch->second == "vit") (void)models::ViTConfig::from_metadata(meta);
    if (arch->second.rfind("lra-", 0) == 0) (void)models::LraConfig::from_metadata(meta);
  } catch (const Error& e) {
    throw Error(file.string() + ": " + e.what());
  }
}

// Runs the reader of `format` on `bytes` inside `dir` (an existing scratch directory, reused between calls).
// Returns normally on a valid load; throws mixgrad::Error on bad input.
inline void run_reader(Format format, const std::filesystem::path& dir, const std::vector<uint8_t>& bytes) {
  namespace fs = std::filesystem;
  switch (format) {
    case Format::idx: {
      const fs::path f = dir / "images-idx3-ubyte";
      write_file(f, bytes);
      (void)data::read_idx(f);
      return;
    }
    case Format::cifar10: {
      write_file(dir / "test_batch.bin", bytes);
      (void)data::load_cifar10(dir, false);
      return;
    }
    case Format::safetensors: {
      const fs::path f = dir / "model.safetensors";
      write_file(f, bytes);
      nn::Metadata meta;
      (void)nn::load_tensors(f, &meta);
      read_model_config(f, meta);
      return;
    }
    case Format::listops_tsv: {
      const fs::path f = dir / "basic_test.tsv";
      write_file(f, bytes);
      data::ReadReport report;
      (void)data::read_listops_tsv(f, 512, &report, nullptr);
      return;
    }
    case Format::png: {
      const data::GrayDecode d = data::decode_png_gray(bytes);
      if (!d.ok() && d.error.empty()) throw std::logic_error("decode_png_gray: failed without a reason");
      return;
    }
    case Format::pathfinder_metadata: {
      // One 4×4 image at imgs/0/sample_0.png and the mutated metadata file that points at it.
      const fs::path root = dir / "pathfinder4" / "curv_baseline";
      const fs::path png = root / "imgs" / "0" / "sample_0.png";
      if (!fs::exists(png)) write_file(png, data::encode_png_gray(std::vector<uint8_t>(16, 128), 4, 4));
      write_file(root / "metadata" / "0.npy", bytes);
      data::ReadReport report;
      (void)data::read_pathfinder_tree(dir, 4, "easy", &report);
      return;
    }
  }
}

}  // namespace mixgrad::fuzz
