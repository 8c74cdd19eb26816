// Scratch files for tests: a temporary directory removed with its contents at scope exit, and whole-file byte
// reads and writes.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mixgrad::testing {

// A fresh directory <system temp dir>/<prefix><pid>_<n>, removed with everything in it at scope exit.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
};

// Writes `bytes` to p (replacing it); REQUIREs that the write succeeded.
void write_bytes(const std::filesystem::path& p, const std::vector<uint8_t>& bytes);
// The whole file (empty when it cannot be opened).
std::vector<uint8_t> read_bytes(const std::filesystem::path& p);

}  // namespace mixgrad::testing
