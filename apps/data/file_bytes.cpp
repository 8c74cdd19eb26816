// Whole-file reads for the dataset readers (see file_bytes.h).
#include "apps/data/file_bytes.h"

#include "engine/file_io.h"

namespace mixgrad::data {

Error file_error(const std::filesystem::path& path, const std::string& what) {
  return Error(path.string() + ": " + what);
}

std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path) { return io::read_regular_file(path); }

}  // namespace mixgrad::data
