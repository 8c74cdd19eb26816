// CIFAR binary readers: each file must be a whole number of records; every label byte is range-checked.
#include "apps/data/cifar.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "apps/data/file_bytes.h"

namespace mixgrad::data {
namespace {

constexpr int64_t kSide = 32, kChannels = 3, kPixels = kChannels * kSide * kSide;  // 3072

// A file of `count` whole records where the release has `expected`: the bytes cannot tell a file cut at a record
// boundary from a deliberately smaller one (test fixtures, hand-made subsets), so this is a logged count, not an
// error: printed to stderr and kept in ds.warnings.
void note_record_count(ImageDataset& ds, const std::filesystem::path& path, int64_t count, int64_t expected,
                       const std::string& release) {
  if (count == expected) return;
  ds.warnings.push_back(path.string() + ": " + std::to_string(count) + " records, but each file of the " + release +
                        " binary release holds " + std::to_string(expected) +
                        " (a truncated download or a subset?); using the " + std::to_string(count) + " records");
  log_data_warning(ds.warnings.back());
}

// The directory holding `first_file`: `dir` itself or the release's own sub-folder inside it.
std::filesystem::path locate(const std::filesystem::path& dir, const std::string& subdir, const std::string& first_file,
                             const std::string& what) {
  std::error_code ec;
  // Anything that exists counts: a FIFO or device then fails in the reader as "not a regular file".
  if (std::filesystem::exists(dir / first_file, ec)) return dir;
  if (std::filesystem::exists(dir / subdir / first_file, ec)) return dir / subdir;
  throw Error(what + " binary file not found: tried " + (dir / first_file).string() + " and " +
              (dir / subdir / first_file).string() + "; pass --data DIR with the directory of the " + what +
              " binary release (Python-pickle releases are not supported)");
}

// Appends the records of one file to `ds`. label_bytes = 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine).
// Returns the number of records read.
int64_t append_records(ImageDataset& ds, const std::filesystem::path& path, int label_bytes) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  const int64_t record = label_bytes + kPixels;
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (size == 0) throw file_error(path, "file is empty, expected records of " + std::to_string(record) + " bytes");
  if (size % record != 0)
    throw file_error(path, "size " + std::to_string(size) + " bytes is not a multiple of the " +
                               std::to_string(record) + "-byte record (" + std::to_string(label_bytes) +
                               " label byte(s) + 3072 pixel bytes): " + std::to_string(size / record) +
                               " whole records and " + std::to_string(size % record) + " bytes left over");
  const int64_t count = size / record;
  const size_t pixel_base = ds.pixels.size();
  ds.pixels.resize(pixel_base + static_cast<size_t>(count * kPixels));
  ds.labels.reserve(ds.labels.size() + static_cast<size_t>(count));
  for (int64_t r = 0; r < count; ++r) {
    const uint8_t* rec = bytes.data() + r * record;
    if (label_bytes == 2 && rec[0] >= 20)
      throw file_error(path, "record " + std::to_string(r) + ": coarse label " + std::to_string(rec[0]) +
                                 " is out of range, expected 0..19");
    const uint8_t label = rec[label_bytes - 1];
    if (label >= ds.num_classes)
      throw file_error(path, "record " + std::to_string(r) + ": label " + std::to_string(label) +
                                 " is out of range, expected 0.." + std::to_string(ds.num_classes - 1));
    ds.labels.push_back(label);
    std::copy(rec + label_bytes, rec + record, ds.pixels.begin() + static_cast<std::ptrdiff_t>(pixel_base + r * kPixels));
  }
  ds.n += count;
  return count;
}

ImageDataset empty_dataset(int64_t num_classes) {
  ImageDataset ds;
  ds.channels = kChannels;
  ds.height = kSide;
  ds.width = kSide;
  ds.num_classes = num_classes;
  return ds;
}

}  // namespace

ImageDataset load_cifar10(const std::filesystem::path& dir, bool train) {
  const std::filesystem::path root =
      locate(dir, "cifar-10-batches-bin", train ? "data_batch_1.bin" : "test_batch.bin", "CIFAR-10");
  ImageDataset ds = empty_dataset(10);
  if (!train) {
    note_record_count(ds, root / "test_batch.bin", append_records(ds, root / "test_batch.bin", 1), 10000, "CIFAR-10");
    return ds;
  }
  for (int b = 1; b <= 5; ++b) {
    const std::filesystem::path file = root / ("data_batch_" + std::to_string(b) + ".bin");
    std::error_code ec;
    if (!std::filesystem::exists(file, ec))
      throw Error("CIFAR-10 binary file not found: " + file.string() +
                  "; expected data_batch_1.bin .. data_batch_5.bin in " + root.string());
    note_record_count(ds, file, append_records(ds, file, 1), 10000, "CIFAR-10");
  }
  return ds;
}

ImageDataset load_cifar100(const std::filesystem::path& dir, bool train) {
  const std::string name = train ? "train.bin" : "test.bin";
  const std::filesystem::path root = locate(dir, "cifar-100-binary", name, "CIFAR-100");
  ImageDataset ds = empty_dataset(100);
  note_record_count(ds, root / name, append_records(ds, root / name, 2), train ? 50000 : 10000, "CIFAR-100");
  return ds;
}

}  // namespace mixgrad::data
