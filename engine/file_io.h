// Files from outside the program: inputs must be regular files (a FIFO, directory or device is a clear error, never
// a hang, a bad_alloc or "file not found"), and outputs are written through a temporary file renamed over a regular
// file or nothing (never over a device, FIFO, directory or symbolic link). Every error is a mixgrad::Error that names
// the file, says what was wrong (with the errno reason where there is one) and what was expected.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

namespace mixgrad::io {

// "regular file", "directory", "FIFO", "character device", "block device", "socket", "symbolic link" or "special
// file" for a st_mode value.
std::string file_kind(unsigned mode);

// Throws unless `path` names (after following symbolic links) an existing regular file; never opens it, so a FIFO
// cannot block. For readers that stream a file with their own means (std::ifstream, libpng).
void require_regular_file(const std::filesystem::path& path);

// The whole of a regular file. Opened non-blocking and checked with fstat before any read, so a FIFO, directory or
// device is refused at once. A file larger than `max_bytes` is an error naming the limit (`what_limit` says which
// limit, e.g. "the safetensors size limit").
std::vector<uint8_t> read_regular_file(const std::filesystem::path& path,
                                       uint64_t max_bytes = std::numeric_limits<uint64_t>::max(),
                                       const std::string& what_limit = "the size limit");

// Throws when something that is not a regular file exists at `path` (an output must never replace a device, FIFO,
// directory or symbolic link). Nothing at all there is fine.
void require_replaceable(const std::filesystem::path& path);

// One piece of an output file.
struct Bytes {
  const void* data;
  size_t size;
};

// Writes the pieces, in order, to "<path>.tmp" in the same directory (a stale temporary is removed first), flushes
// it to disk, and renames it over `path`; checks require_replaceable(path) before creating anything, so on any error
// `path` is left as it was and the temporary is removed.
void write_file_atomic(const std::filesystem::path& path, const std::vector<Bytes>& pieces);
void write_file_atomic(const std::filesystem::path& path, const std::string& text);

}  // namespace mixgrad::io
