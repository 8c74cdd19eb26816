// The safetensors file format on plain buffers (no Tensor): 8-byte little-endian header length, JSON header,
// raw little-endian data. Files written here load with the reference `safetensors` package (PyTorch, numpy).
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mixgrad::safetensors {

// Bytes per element of a safetensors dtype name ("F32", "F64", "I32", "I64", "U8", "BF16", ...); throws
// std::invalid_argument for a name the format does not define.
size_t dtype_size(std::string_view dtype);

// One tensor to write: `data` points at `nbytes` bytes of row-major little-endian elements.
struct TensorRecord {
  std::string name;
  std::string dtype;  // "F32", "F64", "I32", "I64", "U8" (any other safetensors dtype is written as raw bytes)
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Writes the tensors in the given order (header order = data order) and the string metadata ("__metadata__",
// omitted when empty). The file is written to `path` + ".tmp" in the same directory, flushed to disk, then
// renamed over `path`, so a crash never leaves a half-written file under `path` (engine/file_io.h: `path` must be a
// regular file or absent). Throws std::invalid_argument on duplicate or reserved names, unknown dtypes, negative
// dimensions or shape × dtype size ≠ nbytes, and mixgrad::Error naming the file (with the errno reason) on any I/O
// failure.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorRecord>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// One tensor read back; owns its bytes.
struct TensorEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  int64_t numel() const;  // overflow-checked (mixgrad::Error)
};

struct SafetensorsFile {
  std::filesystem::path path;        // the file it was read from (empty for one built in memory)
  std::vector<TensorEntry> tensors;  // in file (data offset) order
  std::map<std::string, std::string> metadata;

  const TensorEntry* find(std::string_view name) const;  // nullptr if absent
  const TensorEntry& at(std::string_view name) const;    // throws mixgrad::Error naming the file and the tensor
};

// Reads and validates a whole file: a regular file (a FIFO, directory or device is refused without blocking), size ≥ 8,
// header length within the file and at most 100 MB, JSON nesting at most 8 levels deep (checked before parsing), a
// valid JSON object, known dtypes,
// non-negative shapes, shape product × dtype size = offset span, offsets contiguous from 0 and covering exactly
// the data area (no gap, overlap or trailing bytes), string-valued metadata, no duplicate names. Every error
// names the file and, where one is involved, the tensor; all are mixgrad::Error. Offsets and shape products use
// overflow-checked arithmetic.
SafetensorsFile read_safetensors(const std::filesystem::path& path);

}  // namespace mixgrad::safetensors
