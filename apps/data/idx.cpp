// IDX reader: whole file in memory, gzip inflated with zlib, every header field checked against the data size.
#include "apps/data/idx.h"

#include <zlib.h>

#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>

#include "apps/data/file_bytes.h"

namespace mixgrad::data {
namespace {

bool is_gzip(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

// Inflates one or more concatenated gzip members (what `gzip -d` accepts); anything else is an error.
std::vector<uint8_t> gunzip(const std::filesystem::path& path, const std::vector<uint8_t>& gz) {
  std::vector<uint8_t> out;
  // The gzip trailer holds the size mod 2^32; use it as a hint, bounded by deflate's best ratio (~1032:1) so
  // a corrupt trailer cannot trigger a huge allocation.
  if (gz.size() >= 18) {
    const size_t n = gz.size();
    const uint64_t isize = uint64_t(gz[n - 4]) | uint64_t(gz[n - 3]) << 8 | uint64_t(gz[n - 2]) << 16 |
                           uint64_t(gz[n - 1]) << 24;
    if (isize <= uint64_t(gz.size()) * 1032) out.reserve(static_cast<size_t>(isize));
  }
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) throw file_error(path, "zlib inflateInit2 failed");
  size_t consumed = 0;
  int rc = Z_OK;
  try {
    while (true) {
      const size_t in_left = gz.size() - consumed;
      zs.next_in = const_cast<Bytef*>(gz.data() + consumed);
      zs.avail_in = static_cast<uInt>(std::min<size_t>(in_left, std::numeric_limits<uInt>::max()));
      if (out.size() == out.capacity()) out.reserve(std::max<size_t>(out.capacity() * 2, 1 << 16));
      const size_t old_size = out.size();
      const size_t room = std::min<size_t>(out.capacity() - old_size, std::numeric_limits<uInt>::max());
      out.resize(old_size + room);
      zs.next_out = out.data() + old_size;
      zs.avail_out = static_cast<uInt>(room);
      const uInt avail_in_before = zs.avail_in;
      rc = inflate(&zs, Z_NO_FLUSH);
      consumed += avail_in_before - zs.avail_in;
      out.resize(old_size + (room - zs.avail_out));
      if (rc == Z_STREAM_END) {
        if (consumed == gz.size()) break;
        if (gz.size() - consumed >= 2 && gz[consumed] == 0x1f && gz[consumed + 1] == 0x8b) {
          inflateReset(&zs);  // another gzip member follows
          continue;
        }
        throw file_error(path, "gzip: " + std::to_string(gz.size() - consumed) +
                                   " bytes of trailing garbage after the compressed stream");
      }
      if (rc == Z_DATA_ERROR || rc == Z_STREAM_ERROR || rc == Z_NEED_DICT || rc == Z_MEM_ERROR)
        throw file_error(path, std::string("gzip data is corrupt (zlib: ") + (zs.msg ? zs.msg : zError(rc)) +
                                   ") after " + std::to_string(consumed) + " compressed bytes; expected a valid "
                                   "gzip stream");
      if (consumed == gz.size() && zs.avail_out != 0)
        throw file_error(path, "gzip stream is truncated: input ended after " + std::to_string(gz.size()) +
                                   " compressed bytes (" + std::to_string(out.size()) +
                                   " bytes inflated) without the end-of-stream marker");
    }
  } catch (...) {
    inflateEnd(&zs);
    throw;
  }
  inflateEnd(&zs);
  return out;
}

const char* idx_type_name(uint8_t type) {
  switch (type) {
    case 0x08: return "uint8";
    case 0x09: return "int8";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return nullptr;
  }
}

std::string hex_byte(uint8_t b) {
  static const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[b >> 4] + digits[b & 15];
}

std::string dims_string(const std::vector<int64_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "×" : "") + std::to_string(dims[i]);
  return s;
}

// Returns the first existing candidate of `dir/name` and `dir/name.gz`, or throws naming both.
std::filesystem::path find_idx_file(const std::filesystem::path& dir, const std::string& name) {
  const std::filesystem::path plain = dir / name, gz = dir / (name + ".gz");
  std::error_code ec;
  if (std::filesystem::is_regular_file(plain, ec)) return plain;
  if (std::filesystem::is_regular_file(gz, ec)) return gz;
  std::string where = std::filesystem::is_directory(dir, ec) ? "" : " (directory " + dir.string() + " does not exist)";
  throw std::runtime_error("MNIST-style data file not found: tried " + plain.string() + " and " + gz.string() + where +
                           "; install the Debian package dataset-fashion-mnist or pass --data DIR / set "
                           "MIXGRAD_FASHION_MNIST_DIR");
}

}  // namespace

IdxArray read_idx(const std::filesystem::path& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  const bool gz = is_gzip(bytes);
  if (gz) bytes = gunzip(path, bytes);
  const std::string data_word = gz ? "decompressed data" : "file";

  if (bytes.size() < 4)
    throw file_error(path, "too short for an IDX header: " + data_word + " has " + std::to_string(bytes.size()) +
                               " bytes, expected at least 4 (magic 00 00 type ndim)");
  if (bytes[0] != 0 || bytes[1] != 0)
    throw file_error(path, "bad magic: first bytes are " + hex_byte(bytes[0]) + " " + hex_byte(bytes[1]) +
                               ", expected 0x00 0x00 (IDX file: 00 00 type ndim)");
  const uint8_t type = bytes[2];
  if (type != 0x08) {
    const char* name = idx_type_name(type);
    throw file_error(path, std::string("unsupported IDX element type ") + hex_byte(type) + " (" +
                               (name ? name : "unknown type") + "), expected 0x08 (uint8)");
  }
  const int ndim = bytes[3];
  if (ndim == 0) throw file_error(path, "IDX header has 0 dimensions, expected at least 1");
  const size_t header = 4 + 4 * size_t(ndim);
  if (bytes.size() < header)
    throw file_error(path, "truncated header: " + std::to_string(ndim) + " dimensions need " +
                               std::to_string(header) + " header bytes, " + data_word + " has " +
                               std::to_string(bytes.size()));
  IdxArray arr;
  uint64_t numel = 1;
  for (int d = 0; d < ndim; ++d) {
    const uint8_t* p = bytes.data() + 4 + 4 * d;
    const uint64_t dim = uint64_t(p[0]) << 24 | uint64_t(p[1]) << 16 | uint64_t(p[2]) << 8 | uint64_t(p[3]);
    arr.dims.push_back(static_cast<int64_t>(dim));
    // 2^32 per dim and at most 255 dims: cap the running product well below overflow.
    numel = (dim != 0 && numel > (uint64_t(1) << 62) / dim) ? (uint64_t(1) << 62) : numel * dim;
  }
  const uint64_t have = bytes.size() - header;
  if (have != numel) {
    const std::string what = have < numel ? "truncated" : "trailing bytes";
    throw file_error(path, what + ": header says " + dims_string(arr.dims) + " = " + std::to_string(numel) +
                               " bytes of data, " + data_word + " has " + std::to_string(have) + " after the " +
                               std::to_string(header) + "-byte header");
  }
  arr.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return arr;
}

ImageDataset load_mnist_like(const std::filesystem::path& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const std::filesystem::path images_path = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const std::filesystem::path labels_path = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  IdxArray images = read_idx(images_path);
  IdxArray labels = read_idx(labels_path);
  if (images.dims.size() != 3)
    throw file_error(images_path, "images must have 3 dimensions [N, rows, cols], header has " +
                                      std::to_string(images.dims.size()) + " (" + dims_string(images.dims) + ")");
  if (labels.dims.size() != 1)
    throw file_error(labels_path, "labels must have 1 dimension [N], header has " +
                                      std::to_string(labels.dims.size()) + " (" + dims_string(labels.dims) + ")");
  if (images.dims[0] != labels.dims[0])
    throw std::runtime_error(images_path.string() + " has " + std::to_string(images.dims[0]) + " images but " +
                             labels_path.string() + " has " + std::to_string(labels.dims[0]) +
                             " labels; expected equal counts");
  ImageDataset ds;
  ds.n = images.dims[0];
  ds.channels = 1;
  ds.height = images.dims[1];
  ds.width = images.dims[2];
  ds.num_classes = 10;
  ds.labels.resize(static_cast<size_t>(ds.n));
  for (int64_t i = 0; i < ds.n; ++i) {
    const uint8_t label = labels.data[static_cast<size_t>(i)];
    if (label >= ds.num_classes)
      throw file_error(labels_path, "label " + std::to_string(label) + " at index " + std::to_string(i) +
                                        " is out of range, expected 0..9");
    ds.labels[static_cast<size_t>(i)] = label;
  }
  ds.pixels = std::move(images.data);
  return ds;
}

std::filesystem::path default_fashion_mnist_dir() {
  const char* env = std::getenv("MIXGRAD_FASHION_MNIST_DIR");
  if (env != nullptr && env[0] != '\0') return env;
  return "/usr/share/datasets/fashion-mnist";
}

}  // namespace mixgrad::data
