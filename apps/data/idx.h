// IDX files (MNIST, Fashion-MNIST): the raw reader, gzip or plain, and the image/label data set built from them.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mixgrad::data {

// Image classification data in memory: pixels are uint8 in [n, channels, height, width] (C order).
// Shared by every image reader (IDX, CIFAR).
struct ImageDataset {
  int64_t n = 0, channels = 0, height = 0, width = 0, num_classes = 0;
  std::vector<uint8_t> pixels;  // [n, c, h, w]
  std::vector<int64_t> labels;  // [n], each in [0, num_classes)
  std::vector<std::string> warnings;  // what the reader logged to stderr (e.g. a CIFAR file with fewer records)

  int64_t image_numel() const { return channels * height * width; }
  const uint8_t* image(int64_t i) const { return pixels.data() + i * image_numel(); }
};

// Where the readers' warnings go besides ImageDataset::warnings (a logged count, e.g. a short CIFAR file): stderr as
// "mixgrad: warning: ...", unless a QuietWarnings is alive (tests that load such files on purpose).
void log_data_warning(const std::string& message);
struct QuietWarnings {
  QuietWarnings();
  ~QuietWarnings();
  QuietWarnings(const QuietWarnings&) = delete;
  QuietWarnings& operator=(const QuietWarnings&) = delete;
};

// One IDX array: big-endian dims and uint8 data in C order.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// Reads a plain or gzip-compressed IDX file (gzip detected by its magic bytes, not by the name).
// Only element type 0x08 (uint8) is accepted; the file must hold exactly header + product(dims) bytes. A gzip file is
// inflated only as far as its header says (at most 1 GiB; one byte more is the "trailing bytes" error), so a gzip
// bomb fails fast. A path that is not a regular file is an error, never a hang.
IdxArray read_idx(const std::filesystem::path& path);

// Loads `train-images-idx3-ubyte[.gz]` + `train-labels-idx1-ubyte[.gz]` (train) or the `t10k-` pair (test)
// from `dir`: 1 channel, 10 classes. Checks 3-D images, 1-D labels, equal counts, at least one image of at least
// 1x1 pixels, and labels < 10.
ImageDataset load_mnist_like(const std::filesystem::path& dir, bool train);

// $MIXGRAD_FASHION_MNIST_DIR if set and non-empty, else /usr/share/datasets/fashion-mnist (Debian package).
std::filesystem::path default_fashion_mnist_dir();

}  // namespace mixgrad::data
