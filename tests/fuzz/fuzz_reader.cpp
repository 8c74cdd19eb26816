// libFuzzer entry point for one reader of untrusted files, chosen at compile time by MIXGRAD_FUZZ_FORMAT (idx,
// cifar10, safetensors, listops_tsv, png, pathfinder_metadata; tests/fuzz/CMakeLists.txt builds one executable each).
// A clean mixgrad::Error is an accepted outcome; any other exception escapes and libFuzzer reports it, as it does a
// crash, a sanitizer finding, a leak or a timeout.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/fuzz/readers.h"

#ifndef MIXGRAD_FUZZ_FORMAT
#error "MIXGRAD_FUZZ_FORMAT must name a mixgrad::fuzz::Format"
#endif

namespace {
// A scratch directory of this process, reused by every input.
const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    const auto d = std::filesystem::temp_directory_path() / ("mixgrad_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  try {
    mixgrad::fuzz::run_reader(mixgrad::fuzz::Format::MIXGRAD_FUZZ_FORMAT, scratch(), bytes);
  } catch (const mixgrad::Error&) {
    // A clean rejection.
  }
  return 0;
}
