// IDX reader: whole file in memory, gzip inflated with zlib, every header field checked against the data size.
#include "apps/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
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

// The most a gzip IDX file may inflate to (1 GiB; Fashion-MNIST's largest file is 47 MB). A larger data set must be
// decompressed first (`gzip -d`): a plain file is bounded by its own size.
constexpr uint64_t kMaxInflatedBytes = uint64_t(1) << 30;

// Inflates one or more concatenated gzip members (what `gzip -d` accepts) on demand, so a reader takes only the
// bytes it expects and a gzip bomb is never inflated past them. Anything that is not gzip is an error.
class Gunzip {
 public:
  Gunzip(const std::filesystem::path& path, const std::vector<uint8_t>& gz) : path_(path), gz_(gz) {
    if (inflateInit2(&zs_, 15 + 16) != Z_OK) throw file_error(path, "zlib inflateInit2 failed");
  }
  ~Gunzip() { inflateEnd(&zs_); }
  Gunzip(const Gunzip&) = delete;
  Gunzip& operator=(const Gunzip&) = delete;

  // Appends up to `n` inflated bytes to `out` (growing it as data arrives); returns how many, fewer than `n` only
  // at the end of the gzip data.
  uint64_t read(std::vector<uint8_t>& out, uint64_t n) {
    uint64_t got = 0;
    while (got < n && !done_) {
      const size_t room = static_cast<size_t>(std::min<uint64_t>(n - got, uint64_t(1) << 24));
      const size_t old_size = out.size();
      out.resize(old_size + room);
      const size_t filled = step(out.data() + old_size, room);
      out.resize(old_size + filled);
      got += filled;
    }
    return got;
  }
  uint64_t consumed() const { return consumed_; }

 private:
  // One inflate call into dst[0, room); returns the bytes written.
  size_t step(uint8_t* dst, size_t room) {
    zs_.next_in = const_cast<Bytef*>(gz_.data() + consumed_);
    zs_.avail_in = static_cast<uInt>(std::min<size_t>(gz_.size() - consumed_, std::numeric_limits<uInt>::max()));
    zs_.next_out = dst;
    zs_.avail_out = static_cast<uInt>(std::min<size_t>(room, std::numeric_limits<uInt>::max()));
    const uInt in_before = zs_.avail_in, out_before = zs_.avail_out;
    const int rc = inflate(&zs_, Z_NO_FLUSH);
    consumed_ += in_before - zs_.avail_in;
    const size_t written = out_before - zs_.avail_out;
    if (rc == Z_STREAM_END) {
      if (consumed_ == gz_.size()) {
        done_ = true;
      } else if (gz_.size() - consumed_ >= 2 && gz_[consumed_] == 0x1f && gz_[consumed_ + 1] == 0x8b) {
        inflateReset(&zs_);  // another gzip member follows
      } else {
        throw file_error(path_, "gzip: " + std::to_string(gz_.size() - consumed_) +
                                    " bytes of trailing garbage after the compressed stream");
      }
      return written;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      throw file_error(path_, std::string("gzip data is corrupt (zlib: ") + (zs_.msg ? zs_.msg : zError(rc)) +
                                  ") after " + std::to_string(consumed_) +
                                  " compressed bytes; expected a valid gzip stream");
    if (written == 0 && consumed_ == gz_.size())
      throw file_error(path_, "gzip stream is truncated: input ended after " + std::to_string(gz_.size()) +
                                  " compressed bytes without the end-of-stream marker");
    return written;
  }

  const std::filesystem::path& path_;
  const std::vector<uint8_t>& gz_;
  z_stream zs_{};
  size_t consumed_ = 0;
  bool done_ = false;
};

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

// Returns the first existing candidate of `dir/name` and `dir/name.gz`, or throws naming both. Anything that exists
// counts (a FIFO or device then fails in the reader as "not a regular file", not as "not found").
std::filesystem::path find_idx_file(const std::filesystem::path& dir, const std::string& name) {
  const std::filesystem::path plain = dir / name, gz = dir / (name + ".gz");
  std::error_code ec;
  if (std::filesystem::exists(plain, ec)) return plain;
  if (std::filesystem::exists(gz, ec)) return gz;
  std::string where = std::filesystem::is_directory(dir, ec) ? "" : " (directory " + dir.string() + " does not exist)";
  throw Error("MNIST-style data file not found: tried " + plain.string() + " and " + gz.string() + where +
              "; install the Debian package dataset-fashion-mnist or pass --data DIR / set "
              "MIXGRAD_FASHION_MNIST_DIR");
}

}  // namespace

namespace {

// Checks the 4-byte prefix (magic 00 00, type 0x08, ndim >= 1) of `bytes`; returns the header size 4 + 4·ndim.
size_t check_prefix(const std::filesystem::path& path, const std::vector<uint8_t>& bytes,
                    const std::string& data_word) {
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
  return 4 + 4 * size_t(ndim);
}

// The dims of a complete header in `bytes` (check_prefix passed) and their product, capped at 2^62.
uint64_t read_dims(const std::filesystem::path& path, const std::vector<uint8_t>& bytes, size_t header,
                   const std::string& data_word, std::vector<int64_t>& dims) {
  if (bytes.size() < header)
    throw file_error(path, "truncated header: " + std::to_string((header - 4) / 4) + " dimensions need " +
                               std::to_string(header) + " header bytes, " + data_word + " has " +
                               std::to_string(bytes.size()));
  uint64_t numel = 1;
  dims.clear();
  for (size_t d = 0; d < (header - 4) / 4; ++d) {
    const uint8_t* p = bytes.data() + 4 + 4 * d;
    const uint64_t dim = uint64_t(p[0]) << 24 | uint64_t(p[1]) << 16 | uint64_t(p[2]) << 8 | uint64_t(p[3]);
    dims.push_back(static_cast<int64_t>(dim));
    // 2^32 per dim and at most 255 dims: cap the running product well below overflow.
    numel = (dim != 0 && numel > (uint64_t(1) << 62) / dim) ? (uint64_t(1) << 62) : numel * dim;
  }
  for (int64_t dim : dims)
    if (dim == 0) numel = 0;
  return numel;
}

// Validates a whole IDX image in memory (header, then exactly product(dims) bytes of data).
IdxArray parse_idx(const std::filesystem::path& path, const std::vector<uint8_t>& bytes, const std::string& data_word) {
  const size_t header = check_prefix(path, bytes, data_word);
  IdxArray arr;
  const uint64_t numel = read_dims(path, bytes, header, data_word, arr.dims);
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

// A gzip IDX file: inflates the header, then exactly the data it announces (at most kMaxInflatedBytes), then checks
// that nothing follows; never inflates more than one byte past what the header allows.
IdxArray read_idx_gzip(const std::filesystem::path& path, const std::vector<uint8_t>& gz) {
  const std::string data_word = "decompressed data";
  Gunzip in(path, gz);
  std::vector<uint8_t> bytes;
  in.read(bytes, 4);
  const size_t header = check_prefix(path, bytes, data_word);
  in.read(bytes, header - 4);
  std::vector<int64_t> dims;
  const uint64_t numel = read_dims(path, bytes, header, data_word, dims);
  if (numel > kMaxInflatedBytes)
    throw file_error(path, "header says " + dims_string(dims) + " = " + std::to_string(numel) +
                               " bytes of data; a gzip IDX file may inflate to at most " +
                               std::to_string(kMaxInflatedBytes) + " bytes (decompress it with gzip -d first)");
  in.read(bytes, numel);
  std::vector<uint8_t> extra;
  if (in.read(extra, 1) != 0)
    throw file_error(path, "trailing bytes: header says " + dims_string(dims) + " = " + std::to_string(numel) +
                               " bytes of data, but the decompressed data goes on past them (stopped inflating "
                               "after " +
                               std::to_string(in.consumed()) + " compressed bytes)");
  return parse_idx(path, bytes, data_word);
}

}  // namespace

namespace {
std::atomic<int> g_quiet{0};
}  // namespace

void log_data_warning(const std::string& message) {
  if (g_quiet.load() == 0) std::fprintf(stderr, "mixgrad: warning: %s\n", message.c_str());
}
QuietWarnings::QuietWarnings() { ++g_quiet; }
QuietWarnings::~QuietWarnings() { --g_quiet; }

IdxArray read_idx(const std::filesystem::path& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return is_gzip(bytes) ? read_idx_gzip(path, bytes) : parse_idx(path, bytes, "file");
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
    throw Error(images_path.string() + " has " + std::to_string(images.dims[0]) + " images but " +
                labels_path.string() + " has " + std::to_string(labels.dims[0]) + " labels; expected equal counts");
  if (images.dims[0] == 0)
    throw file_error(images_path, "holds no images (header " + dims_string(images.dims) + "); expected at least one");
  if (images.dims[1] == 0 || images.dims[2] == 0)
    throw file_error(images_path,
                     "images are " + dims_string({images.dims[1], images.dims[2]}) + " pixels; expected at least 1x1");
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
