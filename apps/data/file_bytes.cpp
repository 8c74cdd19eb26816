// Whole-file reads for the dataset readers (see file_bytes.h).
#include "apps/data/file_bytes.h"

#include <fstream>

namespace mixgrad::data {

std::runtime_error file_error(const std::filesystem::path& path, const std::string& what) {
  return std::runtime_error(path.string() + ": " + what);
}

std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw file_error(path, "cannot open file for reading");
  const std::streamoff size = in.tellg();
  if (size < 0) throw file_error(path, "cannot determine file size");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw file_error(path, "read error after " + std::to_string(in.gcount()) + " of " + std::to_string(size) +
                               " bytes");
  return bytes;
}

}  // namespace mixgrad::data
