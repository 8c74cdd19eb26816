// Data pipeline: IDX (real Debian Fashion-MNIST and corrupt files), CIFAR binaries, augmentation, splits, loader.
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "apps/data/augment.h"
#include "apps/data/cifar.h"
#include "apps/data/idx.h"
#include "apps/data/image_batches.h"
#include "apps/data/loader.h"
#include "apps/data/sequence_batches.h"
#include "apps/data/split.h"
#include "tests/common/temp_files.h"

namespace fs = std::filesystem;
using namespace mixgrad::data;
using Catch::Contains;

namespace {

// This file's scratch directories: <temp>/mixgrad_test_data_<pid>_<n>.
struct TempDir : mixgrad::testing::TempDir {
  TempDir() : mixgrad::testing::TempDir("mixgrad_test_data_") {}
};
using mixgrad::testing::read_bytes;
using mixgrad::testing::write_bytes;

void write_gzip(const fs::path& p, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(p.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

// IDX bytes: magic 00 00 type ndim, big-endian dims, then payload.
std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& payload,
                               uint8_t type = 0x08) {
  std::vector<uint8_t> b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// n images of h×w with pixel (i, k) = (i*7 + k) % 256, labels i % 10.
void write_mnist_like(const fs::path& dir, const std::string& prefix, uint32_t n, uint32_t h, uint32_t w, bool gz) {
  std::vector<uint8_t> pixels(size_t(n) * h * w), labels(n);
  for (size_t i = 0; i < n; ++i) {
    labels[i] = static_cast<uint8_t>(i % 10);
    for (size_t k = 0; k < size_t(h) * w; ++k) pixels[i * h * w + k] = static_cast<uint8_t>((i * 7 + k) % 256);
  }
  const auto images = idx_bytes({n, h, w}, pixels), lab = idx_bytes({n}, labels);
  const std::string suffix = gz ? ".gz" : "";
  if (gz) {
    write_gzip(dir / (prefix + "-images-idx3-ubyte.gz"), images);
    write_gzip(dir / (prefix + "-labels-idx1-ubyte.gz"), lab);
  } else {
    write_bytes(dir / (prefix + "-images-idx3-ubyte"), images);
    write_bytes(dir / (prefix + "-labels-idx1-ubyte"), lab);
  }
}

fs::path fashion_dir_or_fail() {
  const fs::path dir = default_fashion_mnist_dir();
  if (!fs::exists(dir / "train-images-idx3-ubyte.gz") && !fs::exists(dir / "train-images-idx3-ubyte"))
    FAIL("Fashion-MNIST not found in " << dir.string()
                                       << ": install the Debian package dataset-fashion-mnist (the project's "
                                          "scripts do) or set MIXGRAD_FASHION_MNIST_DIR");
  return dir;
}

std::vector<int64_t> class_counts(const std::vector<int64_t>& labels, int64_t k) {
  std::vector<int64_t> c(static_cast<size_t>(k), 0);
  for (int64_t l : labels) ++c[static_cast<size_t>(l)];
  return c;
}

ImageDataset synthetic_dataset(int64_t n, int64_t c, int64_t h, int64_t w, int64_t classes = 10) {
  ImageDataset ds;
  ds.n = n;
  ds.channels = c;
  ds.height = h;
  ds.width = w;
  ds.num_classes = classes;
  ds.pixels.resize(static_cast<size_t>(n * c * h * w));
  for (size_t i = 0; i < ds.pixels.size(); ++i) ds.pixels[i] = static_cast<uint8_t>((i * 31 + 7) % 256);
  for (int64_t i = 0; i < n; ++i) ds.labels.push_back(i % classes);
  return ds;
}

}  // namespace

// ---------------------------------------------------------------------------------------------- Fashion-MNIST

TEST_CASE("Fashion-MNIST train split from the Debian files", "[data][idx][fmnist]") {
  const fs::path dir = fashion_dir_or_fail();
  const ImageDataset ds = load_mnist_like(dir, /*train=*/true);
  REQUIRE(ds.n == 60000);
  REQUIRE(ds.channels == 1);
  REQUIRE(ds.height == 28);
  REQUIRE(ds.width == 28);
  REQUIRE(ds.num_classes == 10);
  REQUIRE(ds.pixels.size() == size_t(60000) * 784);
  const std::vector<int64_t> first16(ds.labels.begin(), ds.labels.begin() + 16);
  CHECK(first16 == std::vector<int64_t>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9, 5, 5, 7, 9});
  int64_t sum0 = 0, nonzero0 = 0;
  for (int k = 0; k < 784; ++k) {
    sum0 += ds.pixels[static_cast<size_t>(k)];
    nonzero0 += ds.pixels[static_cast<size_t>(k)] != 0;
  }
  CHECK(sum0 == 76247);
  CHECK(nonzero0 == 433);
  CHECK(std::accumulate(ds.pixels.begin(), ds.pixels.end(), int64_t(0)) == 3431114169LL);
  CHECK(class_counts(ds.labels, 10) == std::vector<int64_t>(10, 6000));

  const TrainValSplit split = split_last_per_class(ds.labels, 10);
  CHECK(split.train.size() == 55000);
  CHECK(split.val.size() == 5000);
  std::vector<int64_t> val_labels;
  for (int64_t i : split.val) val_labels.push_back(ds.labels[static_cast<size_t>(i)]);
  CHECK(class_counts(val_labels, 10) == std::vector<int64_t>(10, 500));
}

TEST_CASE("Fashion-MNIST test split from the Debian files", "[data][idx][fmnist]") {
  const fs::path dir = fashion_dir_or_fail();
  const ImageDataset ds = load_mnist_like(dir, /*train=*/false);
  REQUIRE(ds.n == 10000);
  const std::vector<int64_t> first16(ds.labels.begin(), ds.labels.begin() + 16);
  CHECK(first16 == std::vector<int64_t>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5, 7, 3, 4, 1});
  int64_t sum0 = 0, nonzero0 = 0;
  for (int k = 0; k < 784; ++k) {
    sum0 += ds.pixels[static_cast<size_t>(k)];
    nonzero0 += ds.pixels[static_cast<size_t>(k)] != 0;
  }
  CHECK(sum0 == 33456);
  CHECK(nonzero0 == 267);
  CHECK(class_counts(ds.labels, 10) == std::vector<int64_t>(10, 1000));

  const IdxArray header_check = read_idx(dir / "t10k-labels-idx1-ubyte.gz");
  CHECK(header_check.dims == std::vector<int64_t>{10000});
}

TEST_CASE("default_fashion_mnist_dir honours MIXGRAD_FASHION_MNIST_DIR", "[data][idx]") {
  const char* old = std::getenv("MIXGRAD_FASHION_MNIST_DIR");
  const std::string saved = old ? old : "";
  ::setenv("MIXGRAD_FASHION_MNIST_DIR", "/some/where", 1);
  CHECK(default_fashion_mnist_dir() == fs::path("/some/where"));
  ::unsetenv("MIXGRAD_FASHION_MNIST_DIR");
  CHECK(default_fashion_mnist_dir() == fs::path("/usr/share/datasets/fashion-mnist"));
  if (old) ::setenv("MIXGRAD_FASHION_MNIST_DIR", saved.c_str(), 1);
}

// ------------------------------------------------------------------------------------------- synthetic IDX

TEST_CASE("IDX: plain and gzip files load identically", "[data][idx]") {
  TempDir plain, gz;
  write_mnist_like(plain.path, "train", 23, 5, 4, false);
  write_mnist_like(gz.path, "train", 23, 5, 4, true);
  const ImageDataset a = load_mnist_like(plain.path, true), b = load_mnist_like(gz.path, true);
  CHECK(a.n == 23);
  CHECK(a.height == 5);
  CHECK(a.width == 4);
  CHECK(a.pixels == b.pixels);
  CHECK(a.labels == b.labels);
  CHECK(a.pixels[size_t(3 * 20 + 2)] == (3 * 7 + 2) % 256);
  CHECK(a.labels[17] == 7);
}

TEST_CASE("IDX: gzip with several members is inflated whole", "[data][idx]") {
  TempDir dir;
  const auto bytes = idx_bytes({6}, {1, 2, 3, 4, 5, 6});
  const std::vector<uint8_t> first(bytes.begin(), bytes.begin() + 7), second(bytes.begin() + 7, bytes.end());
  write_gzip(dir / "a.gz", first);
  write_gzip(dir / "b.gz", second);
  auto joined = read_bytes(dir / "a.gz");
  const auto tail = read_bytes(dir / "b.gz");
  joined.insert(joined.end(), tail.begin(), tail.end());
  write_bytes(dir / "joined", joined);
  CHECK(read_idx(dir / "joined").data == std::vector<uint8_t>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("IDX: corrupt files give clear errors", "[data][idx][errors]") {
  TempDir dir;
  const fs::path f = dir / "x-idx1-ubyte";

  SECTION("bad magic") {
    write_bytes(f, {0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 5});
    REQUIRE_THROWS_WITH(read_idx(f), Contains("x-idx1-ubyte") && Contains("bad magic") && Contains("expected 0x00 0x00"));
  }
  SECTION("unsupported element type is named") {
    write_bytes(f, idx_bytes({1}, {0, 0, 0, 0}, 0x0D));
    REQUIRE_THROWS_WITH(read_idx(f), Contains("0x0d") && Contains("float32") && Contains("expected 0x08 (uint8)"));
  }
  SECTION("truncated data") {
    write_bytes(f, idx_bytes({60000, 28, 28}, std::vector<uint8_t>(1000)));
    REQUIRE_THROWS_WITH(read_idx(f), Contains("x-idx1-ubyte: truncated: header says 60000×28×28 = 47040000 bytes") &&
                                         Contains("has 1000"));
  }
  SECTION("trailing bytes") {
    write_bytes(f, idx_bytes({3}, {1, 2, 3, 4}));
    REQUIRE_THROWS_WITH(read_idx(f), Contains("trailing bytes") && Contains("3 = 3 bytes") && Contains("has 4"));
  }
  SECTION("truncated header") {
    write_bytes(f, {0, 0, 8, 3, 0, 0});
    REQUIRE_THROWS_WITH(read_idx(f), Contains("truncated header") && Contains("16 header bytes"));
  }
  SECTION("file shorter than the magic") {
    write_bytes(f, {0, 0});
    REQUIRE_THROWS_WITH(read_idx(f), Contains("too short") && Contains("has 2 bytes"));
  }
  SECTION("gzip garbage") {
    std::vector<uint8_t> junk = {0x1f, 0x8b};
    for (int i = 0; i < 200; ++i) junk.push_back(static_cast<uint8_t>(i * 37 + 11));
    write_bytes(f, junk);
    REQUIRE_THROWS_WITH(read_idx(f), Contains("x-idx1-ubyte") && Contains("gzip data is corrupt"));
  }
  SECTION("truncated gzip") {
    write_gzip(dir / "full.gz", idx_bytes({4000}, std::vector<uint8_t>(4000, 7)));
    auto gz = read_bytes(dir / "full.gz");
    gz.resize(gz.size() / 2);
    write_bytes(f, gz);
    REQUIRE_THROWS_WITH(read_idx(f), Contains("gzip stream is truncated"));
  }
  SECTION("gzip with trailing garbage") {
    write_gzip(f, idx_bytes({2}, {1, 2}));
    auto gz = read_bytes(f);
    gz.push_back(0x42);
    write_bytes(f, gz);
    REQUIRE_THROWS_WITH(read_idx(f), Contains("trailing garbage"));
  }
  SECTION("gzip of a truncated IDX payload names the decompressed size") {
    write_gzip(f, idx_bytes({10, 2, 2}, std::vector<uint8_t>(12)));
    REQUIRE_THROWS_WITH(read_idx(f), Contains("truncated") && Contains("10×2×2 = 40") && Contains("decompressed"));
  }
  SECTION("missing file") {
    REQUIRE_THROWS_WITH(read_idx(dir / "nope"), Contains("nope") && Contains("cannot open"));
  }
}

TEST_CASE("load_mnist_like: structural errors", "[data][idx][errors]") {
  TempDir dir;
  SECTION("missing files name the paths and the package") {
    REQUIRE_THROWS_WITH(load_mnist_like(dir.path, true),
                        Contains((dir.path / "train-images-idx3-ubyte").string()) &&
                            Contains("train-images-idx3-ubyte.gz") &&
                            Contains("install the Debian package dataset-fashion-mnist or pass --data DIR / set "
                                     "MIXGRAD_FASHION_MNIST_DIR"));
    REQUIRE_THROWS_WITH(load_mnist_like(dir / "absent", false),
                        Contains("t10k-images-idx3-ubyte") && Contains("does not exist"));
  }
  SECTION("images with the wrong number of dims") {
    write_bytes(dir / "train-images-idx3-ubyte", idx_bytes({4, 9}, std::vector<uint8_t>(36)));
    write_bytes(dir / "train-labels-idx1-ubyte", idx_bytes({4}, {0, 1, 2, 3}));
    REQUIRE_THROWS_WITH(load_mnist_like(dir.path, true), Contains("3 dimensions") && Contains("4×9"));
  }
  SECTION("labels with the wrong number of dims") {
    write_bytes(dir / "train-images-idx3-ubyte", idx_bytes({2, 2, 2}, std::vector<uint8_t>(8)));
    write_bytes(dir / "train-labels-idx1-ubyte", idx_bytes({2, 1}, {0, 1}));
    REQUIRE_THROWS_WITH(load_mnist_like(dir.path, true), Contains("labels must have 1 dimension"));
  }
  SECTION("image and label counts differ") {
    write_mnist_like(dir.path, "t10k", 5, 3, 3, true);
    write_gzip(dir / "t10k-labels-idx1-ubyte.gz", idx_bytes({4}, {0, 1, 2, 3}));
    REQUIRE_THROWS_WITH(load_mnist_like(dir.path, false),
                        Contains("has 5 images") && Contains("has 4 labels") && Contains("expected equal counts"));
  }
  SECTION("label out of range") {
    write_bytes(dir / "train-images-idx3-ubyte", idx_bytes({3, 1, 1}, {0, 0, 0}));
    write_bytes(dir / "train-labels-idx1-ubyte", idx_bytes({3}, {0, 10, 1}));
    REQUIRE_THROWS_WITH(load_mnist_like(dir.path, true), Contains("label 10 at index 1") && Contains("0..9"));
  }
}

// ------------------------------------------------------------------------------------------------------ CIFAR

namespace {
// A CIFAR record: label byte(s) then 3072 pixels, pixel k = (seed + k) % 256.
void append_record(std::vector<uint8_t>& out, std::vector<uint8_t> labels, int seed) {
  out.insert(out.end(), labels.begin(), labels.end());
  for (int k = 0; k < 3072; ++k) out.push_back(static_cast<uint8_t>((seed + k) % 256));
}
}  // namespace

TEST_CASE("CIFAR-10 binary batches", "[data][cifar]") {
  TempDir dir;
  const fs::path root = dir / "cifar-10-batches-bin";
  fs::create_directories(root);
  int record = 0;
  for (int b = 1; b <= 5; ++b) {
    std::vector<uint8_t> bytes;
    for (int r = 0; r < b; ++r, ++record) append_record(bytes, {static_cast<uint8_t>(record % 10)}, record);
    write_bytes(root / ("data_batch_" + std::to_string(b) + ".bin"), bytes);
  }
  std::vector<uint8_t> test;
  append_record(test, {9}, 100);
  append_record(test, {3}, 101);
  write_bytes(root / "test_batch.bin", test);

  const ImageDataset train = load_cifar10(dir.path, true);  // found in the release's sub-folder
  CHECK(train.n == 15);
  CHECK(train.channels == 3);
  CHECK(train.height == 32);
  CHECK(train.width == 32);
  CHECK(train.num_classes == 10);
  CHECK(train.labels[14] == 4);
  CHECK(train.image(14)[0] == 14);
  CHECK(train.image(14)[3071] == (14 + 3071) % 256);
  const ImageDataset t = load_cifar10(root, false);
  CHECK(t.labels == std::vector<int64_t>{9, 3});
  CHECK(t.image(1)[1024] == (101 + 1024) % 256);  // first G-plane byte

  SECTION("size not a multiple of the record") {
    test.resize(test.size() - 5);
    write_bytes(root / "test_batch.bin", test);
    REQUIRE_THROWS_WITH(load_cifar10(root, false), Contains("test_batch.bin") && Contains("size 6141 bytes") &&
                                                       Contains("3073-byte record") && Contains("3068 bytes left over"));
  }
  SECTION("label out of range") {
    test[0] = 10;
    write_bytes(root / "test_batch.bin", test);
    REQUIRE_THROWS_WITH(load_cifar10(root, false), Contains("record 0: label 10 is out of range, expected 0..9"));
  }
  SECTION("missing batch") {
    fs::remove(root / "data_batch_4.bin");
    REQUIRE_THROWS_WITH(load_cifar10(root, true), Contains("data_batch_4.bin"));
  }
  SECTION("missing directory") {
    REQUIRE_THROWS_WITH(load_cifar10(dir / "none", true), Contains("CIFAR-10 binary file not found") &&
                                                              Contains("data_batch_1.bin"));
  }
}

TEST_CASE("CIFAR-100 binary files use the fine label", "[data][cifar]") {
  TempDir dir;
  std::vector<uint8_t> bytes;
  append_record(bytes, {3, 77}, 5);
  append_record(bytes, {19, 99}, 6);
  write_bytes(dir / "train.bin", bytes);
  const ImageDataset ds = load_cifar100(dir.path, true);
  CHECK(ds.n == 2);
  CHECK(ds.num_classes == 100);
  CHECK(ds.labels == std::vector<int64_t>{77, 99});
  CHECK(ds.image(1)[0] == 6);

  SECTION("fine label out of range") {
    bytes[1] = 100;
    write_bytes(dir / "train.bin", bytes);
    REQUIRE_THROWS_WITH(load_cifar100(dir.path, true), Contains("label 100 is out of range, expected 0..99"));
  }
  SECTION("coarse label out of range") {
    bytes[0] = 20;
    write_bytes(dir / "train.bin", bytes);
    REQUIRE_THROWS_WITH(load_cifar100(dir.path, true), Contains("coarse label 20"));
  }
  SECTION("a CIFAR-10 sized file is not a whole number of CIFAR-100 records") {
    bytes.resize(3073 * 2);
    write_bytes(dir / "test.bin", bytes);
    REQUIRE_THROWS_WITH(load_cifar100(dir.path, false), Contains("not a multiple of the 3074-byte record"));
  }
}

// ----------------------------------------------------------------------------------------------- augmentation

namespace {
// Straightforward reference: pad with zeros, crop at (dy, dx), flip, then (x/255 - mean)/std.
std::vector<float> reference_augment(const uint8_t* src, int64_t C, int64_t H, int64_t W, int64_t P,
                                     const AugmentDraw& d, const ChannelStats& s) {
  const int64_t PH = H + 2 * P, PW = W + 2 * P;
  std::vector<float> out(static_cast<size_t>(C * H * W));
  for (int64_t c = 0; c < C; ++c) {
    std::vector<uint8_t> padded(static_cast<size_t>(PH * PW), 0);
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) padded[static_cast<size_t>((y + P) * PW + x + P)] = src[(c * H + y) * W + x];
    const float mean = s.mean.size() == 1 ? s.mean[0] : s.mean[static_cast<size_t>(c)];
    const float sd = s.stddev.size() == 1 ? s.stddev[0] : s.stddev[static_cast<size_t>(c)];
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const int64_t cx = d.flip ? W - 1 - x : x;
        const uint8_t v = padded[static_cast<size_t>((y + d.dy) * PW + cx + d.dx)];
        out[static_cast<size_t>((c * H + y) * W + x)] = (static_cast<float>(v) / 255.0f - mean) / sd;
      }
  }
  return out;
}
}  // namespace

TEST_CASE("augmentation matches the pad-crop-flip-normalise reference", "[data][augment]") {
  const ImageDataset ds = synthetic_dataset(4, 3, 5, 7);
  AugmentConfig cfg;
  cfg.crop_padding = 2;
  cfg.horizontal_flip = true;
  cfg.stats = cifar10_stats();
  const Augmenter aug(cfg, 3, 5, 7);
  std::vector<float> got(static_cast<size_t>(aug.image_numel()));
  for (int64_t dy = 0; dy <= 4; ++dy)
    for (int64_t dx = 0; dx <= 4; ++dx)
      for (bool flip : {false, true}) {
        const AugmentDraw d{dy, dx, flip};
        aug.apply(ds.image(1), d, got.data());
        CHECK(got == reference_augment(ds.image(1), 3, 5, 7, 2, d, cfg.stats));
      }
  aug.normalize(ds.image(2), got.data());
  CHECK(got == reference_augment(ds.image(2), 3, 5, 7, 0, AugmentDraw{}, cfg.stats));
  CHECK_THROWS_WITH(aug.apply(ds.image(0), AugmentDraw{5, 0, false}, got.data()), Contains("outside [0, 4]"));
}

TEST_CASE("augmentation draws depend only on (seed, epoch, index)", "[data][augment]") {
  AugmentConfig cfg;
  cfg.crop_padding = 2;
  cfg.horizontal_flip = true;
  const Augmenter aug(cfg, 1, 28, 28);
  std::vector<AugmentDraw> forward, backward(1000);
  for (int64_t i = 0; i < 1000; ++i) forward.push_back(aug.draw(42, 3, i));
  for (int64_t i = 999; i >= 0; --i) backward[static_cast<size_t>(i)] = aug.draw(42, 3, i);
  int flips = 0, same_next_epoch = 0;
  std::set<int64_t> dys, dxs;
  for (size_t i = 0; i < 1000; ++i) {
    CHECK((forward[i].dy == backward[i].dy && forward[i].dx == backward[i].dx && forward[i].flip == backward[i].flip));
    flips += forward[i].flip;
    dys.insert(forward[i].dy);
    dxs.insert(forward[i].dx);
    const AugmentDraw e = aug.draw(42, 4, static_cast<int64_t>(i));
    same_next_epoch += (e.dy == forward[i].dy && e.dx == forward[i].dx && e.flip == forward[i].flip);
  }
  CHECK(dys == std::set<int64_t>{0, 1, 2, 3, 4});
  CHECK(dxs == std::set<int64_t>{0, 1, 2, 3, 4});
  CHECK(flips > 430);
  CHECK(flips < 570);
  CHECK(same_next_epoch < 60);  // 1/50 expected by chance

  AugmentConfig no_flip = cfg;
  no_flip.horizontal_flip = false;
  const Augmenter crop_only(no_flip, 1, 28, 28);
  for (int64_t i = 0; i < 200; ++i) {
    const AugmentDraw a = crop_only.draw(42, 3, i), b = aug.draw(42, 3, i);
    CHECK(!a.flip);
    CHECK((a.dy == b.dy && a.dx == b.dx));  // switching flip off does not move the crops
  }
}

TEST_CASE("augmentation config is validated", "[data][augment][errors]") {
  AugmentConfig cfg;
  cfg.stats = cifar10_stats();
  REQUIRE_THROWS_WITH(Augmenter(cfg, 1, 28, 28), Contains("mean has 3 values, expected 1 or 1"));
  cfg.stats = {{0.5f}, {0.0f}};
  REQUIRE_THROWS_WITH(Augmenter(cfg, 1, 28, 28), Contains("stddev > 0"));
  cfg.stats = fashion_mnist_stats();
  cfg.crop_padding = -1;
  REQUIRE_THROWS_WITH(Augmenter(cfg, 1, 28, 28), Contains("crop_padding -1"));
}

// ------------------------------------------------------------------------------------------- splits, shuffle

TEST_CASE("validation splits", "[data][split]") {
  std::vector<int64_t> labels;
  for (int i = 0; i < 700; ++i) labels.push_back((i * 3) % 7);  // 100 per class, interleaved
  const TrainValSplit s = split_last_per_class(labels, 7, 20);
  CHECK(s.val.size() == 140);
  CHECK(s.train.size() == 560);
  std::vector<int64_t> all = s.train;
  all.insert(all.end(), s.val.begin(), s.val.end());
  std::sort(all.begin(), all.end());
  std::vector<int64_t> iota(700);
  std::iota(iota.begin(), iota.end(), 0);
  CHECK(all == iota);
  CHECK(std::is_sorted(s.val.begin(), s.val.end()));
  // Every validation image comes after every training image of its class.
  for (int64_t v : s.val)
    for (int64_t t : s.train)
      if (labels[static_cast<size_t>(t)] == labels[static_cast<size_t>(v)]) REQUIRE(t < v);
  std::vector<int64_t> val_labels;
  for (int64_t v : s.val) val_labels.push_back(labels[static_cast<size_t>(v)]);
  CHECK(class_counts(val_labels, 7) == std::vector<int64_t>(7, 20));

  REQUIRE_THROWS_WITH(split_last_per_class(labels, 7, 101), Contains("class 0 has 100 images"));
  REQUIRE_THROWS_WITH(split_last_per_class({0, 9}, 7, 0), Contains("label 9 at index 1"));

  const TrainValSplit c = split_cifar();
  CHECK(c.train.size() == 45000);
  CHECK(c.val.size() == 5000);
  CHECK(c.val.front() == 45000);
  CHECK(c.val.back() == 49999);
  CHECK(c.train.back() == 44999);
  REQUIRE_THROWS_WITH(split_cifar(10000), Contains("45000..49999") && Contains("10000 images"));
}

TEST_CASE("epoch shuffle is a seeded permutation", "[data][split]") {
  std::vector<int64_t> idx(1000);
  std::iota(idx.begin(), idx.end(), 5);
  const auto a = shuffle_for_epoch(idx, 7, 0), b = shuffle_for_epoch(idx, 7, 0);
  const auto c = shuffle_for_epoch(idx, 7, 1), d = shuffle_for_epoch(idx, 8, 0);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a != d);
  CHECK(a != idx);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == idx);
  CHECK(shuffle_for_epoch({}, 1, 1).empty());
  CHECK(shuffle_for_epoch({3}, 1, 1) == std::vector<int64_t>{3});
}

// ----------------------------------------------------------------------------------------------------- loader

namespace {
std::vector<Batch> drain(BatchLoader& loader) {
  std::vector<Batch> out;
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}
LoaderConfig train_config(int64_t batch) {
  LoaderConfig cfg;
  cfg.batch_size = batch;
  cfg.seed = 11;
  cfg.epoch = 2;
  return cfg;
}
AugmentConfig train_augmentation() {
  AugmentConfig a;
  a.crop_padding = 2;
  a.horizontal_flip = true;
  a.stats = {{0.5f}, {0.5f}};
  return a;
}
}  // namespace

TEST_CASE("loader yields every index once per epoch, deterministically", "[data][loader]") {
  const ImageDataset images = synthetic_dataset(103, 1, 6, 6);
  const ImageBatches ds(images, train_augmentation());
  std::vector<int64_t> indices(images.n);
  std::iota(indices.begin(), indices.end(), 0);
  const LoaderConfig cfg = train_config(10);

  BatchLoader loader(ds, indices, cfg);
  CHECK(loader.num_batches() == 11);
  const std::vector<Batch> batches = drain(loader);
  REQUIRE(batches.size() == 11);
  CHECK(batches.back().size == 3);
  CHECK(!loader.next().has_value());  // stays exhausted
  std::vector<int64_t> seen;
  const Augmenter aug(train_augmentation(), 1, 6, 6);
  std::vector<float> expected(36);
  for (const Batch& b : batches) {
    REQUIRE(b.images.size() == size_t(b.size) * 36);
    for (int64_t r = 0; r < b.size; ++r) {
      const int64_t i = b.indices[static_cast<size_t>(r)];
      seen.push_back(i);
      CHECK(b.labels[static_cast<size_t>(r)] == images.labels[static_cast<size_t>(i)]);
      aug.augment(images.image(i), cfg.seed, cfg.epoch, i, expected.data());
      CHECK(std::equal(expected.begin(), expected.end(), b.images.begin() + r * 36));
    }
  }
  CHECK(seen == loader.order());
  auto sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == indices);
  CHECK(seen != indices);

  BatchLoader again(ds, indices, cfg);
  const std::vector<Batch> batches2 = drain(again);
  REQUIRE(batches2.size() == batches.size());
  for (size_t k = 0; k < batches.size(); ++k) {
    CHECK(batches2[k].indices == batches[k].indices);
    CHECK(batches2[k].images == batches[k].images);
  }

  LoaderConfig next_epoch = cfg;
  next_epoch.epoch = 3;
  BatchLoader other(ds, indices, next_epoch);
  CHECK(other.order() != loader.order());
}

TEST_CASE("loader resumes at batch k with the uninterrupted epoch's batches", "[data][loader]") {
  const ImageDataset images = synthetic_dataset(50, 3, 4, 4);
  const ImageBatches ds(images, train_augmentation());
  std::vector<int64_t> indices;
  for (int64_t i = 0; i < 50; i += 2) indices.push_back(i);  // a subset, like a train split
  LoaderConfig cfg = train_config(4);
  BatchLoader full(ds, indices, cfg);
  const std::vector<Batch> all = drain(full);
  REQUIRE(all.size() == 7);
  for (int64_t k : {0, 1, 5, 6, 7}) {
    LoaderConfig resumed = cfg;
    resumed.start_batch = k;
    BatchLoader loader(ds, indices, resumed);
    const std::vector<Batch> tail = drain(loader);
    REQUIRE(tail.size() == all.size() - static_cast<size_t>(k));
    for (size_t j = 0; j < tail.size(); ++j) {
      CHECK(tail[j].indices == all[static_cast<size_t>(k) + j].indices);
      CHECK(tail[j].images == all[static_cast<size_t>(k) + j].images);
      CHECK(tail[j].labels == all[static_cast<size_t>(k) + j].labels);
    }
  }
  cfg.start_batch = 8;
  REQUIRE_THROWS_WITH(BatchLoader(ds, indices, cfg), Contains("start_batch 8 is outside [0, 7]"));
}

TEST_CASE("loader options: drop_last, no shuffle, evaluation transform", "[data][loader]") {
  const ImageDataset images = synthetic_dataset(10, 1, 3, 3);
  const ImageBatches ds(images, train_augmentation());
  std::vector<int64_t> indices(10);
  std::iota(indices.begin(), indices.end(), 0);
  LoaderConfig cfg = train_config(4);
  cfg.drop_last = true;
  cfg.shuffle = false;
  cfg.augment = false;
  BatchLoader loader(ds, indices, cfg);
  const auto batches = drain(loader);
  REQUIRE(batches.size() == 2);
  CHECK(batches[1].indices == std::vector<int64_t>{4, 5, 6, 7});
  const Augmenter aug(train_augmentation(), 1, 3, 3);
  std::vector<float> expected(9);
  aug.normalize(images.image(5), expected.data());
  CHECK(std::equal(expected.begin(), expected.end(), batches[1].images.begin() + 9));

  BatchLoader empty(ds, {}, cfg);
  CHECK(!empty.next().has_value());
  REQUIRE_THROWS_WITH(BatchLoader(ds, {0, 10}, cfg), Contains("index 10 at position 1 is outside the dataset [0, 10)"));
  cfg.batch_size = 0;
  REQUIRE_THROWS_WITH(BatchLoader(ds, indices, cfg), Contains("batch_size 0"));
}

TEST_CASE("loader rethrows worker exceptions on the consumer side", "[data][loader][errors]") {
  const ImageDataset images = synthetic_dataset(40, 1, 2, 2);
  const ImageBatches ds(images, train_augmentation());
  std::vector<int64_t> indices(40);
  std::iota(indices.begin(), indices.end(), 0);
  LoaderConfig cfg = train_config(5);
  int calls = 0;  // only touched by the worker thread
  cfg.on_batch = [&calls](Batch&) {
    if (++calls == 3) throw std::runtime_error("transform failed on batch 3");
  };
  BatchLoader loader(ds, indices, cfg);
  REQUIRE(loader.next().has_value());
  REQUIRE(loader.next().has_value());
  REQUIRE_THROWS_WITH(loader.next(), "transform failed on batch 3");
  REQUIRE_THROWS_WITH(loader.next(), "transform failed on batch 3");
}

TEST_CASE("loader destruction mid-epoch is clean", "[data][loader]") {
  const ImageDataset images = synthetic_dataset(2000, 1, 8, 8);
  const ImageBatches ds(images, train_augmentation());
  std::vector<int64_t> indices(2000);
  std::iota(indices.begin(), indices.end(), 0);
  for (int64_t capacity : {1, 2, 4}) {
    for (int taken = 0; taken < 4; ++taken) {
      LoaderConfig cfg = train_config(16);
      cfg.queue_capacity = capacity;
      BatchLoader loader(ds, indices, cfg);
      for (int t = 0; t < taken; ++t) REQUIRE(loader.next().has_value());
    }  // destructor joins a worker blocked on a full queue
  }
  std::atomic<int> produced{0};
  {
    LoaderConfig cfg = train_config(16);
    cfg.queue_capacity = 2;
    cfg.on_batch = [&produced](Batch&) { ++produced; };
    BatchLoader loader(ds, indices, cfg);
    REQUIRE(loader.next().has_value());
  }
  CHECK(produced.load() <= 4);  // bounded queue: the worker never ran far ahead
}

// ---------------------------------------------------------------------------------------------- sequence batches

namespace {
SequenceSet three_sequences(bool paired) {
  SequenceSet s;
  s.num_classes = 3, s.vocab_size = 10;
  const std::vector<std::vector<int32_t>> a = {{1, 2, 3}, {4}, {5, 6, 7, 8, 9}}, b = {{9, 9}, {8, 8, 8}, {7}};
  for (size_t i = 0; i < a.size(); ++i)
    if (paired)
      s.add_pair(a[i], b[i], int64_t(i));
    else
      s.add(a[i], int64_t(i));
  return s;
}
}  // namespace

TEST_CASE("sequence batches: right padding to the batch maximum or a fixed length, lengths, pairs", "[data][loader]") {
  const SequenceSet set = three_sequences(false);
  LoaderConfig cfg;
  cfg.batch_size = 2;
  cfg.shuffle = false;
  // Batch maximum rounded up to a multiple of 4: batch 0 holds samples of 3 and 1 tokens -> length 4.
  const SequenceBatches dyn(set, {0, 4});
  BatchLoader loader(dyn, {0, 1, 2}, cfg);
  std::optional<Batch> b = loader.next();
  REQUIRE(b.has_value());
  CHECK(b->seq_len == 4);
  CHECK(b->tokens == std::vector<int32_t>{1, 2, 3, 0, 4, 0, 0, 0});
  CHECK(b->lengths == std::vector<int32_t>{3, 1});
  CHECK(b->labels == std::vector<int64_t>{0, 1});
  CHECK(b->images.empty());
  CHECK(b->tokens2.empty());
  b = loader.next();
  CHECK(b->seq_len == 8);  // 5 tokens -> 8
  CHECK(b->lengths == std::vector<int32_t>{5});
  // A fixed length pads every batch to it; a second document gets its own padded block.
  const SequenceSet pairs = three_sequences(true);
  const SequenceBatches fixed(pairs, {6, 1});
  Batch batch;
  batch.size = 2;
  fixed.fill(batch, {2, 1}, BatchRequest{});
  CHECK(batch.seq_len == 6);
  CHECK(batch.tokens == std::vector<int32_t>{5, 6, 7, 8, 9, 0, 4, 0, 0, 0, 0, 0});
  CHECK(batch.seq_len2 == 6);
  CHECK(batch.tokens2 == std::vector<int32_t>{7, 0, 0, 0, 0, 0, 8, 8, 8, 0, 0, 0});
  CHECK(batch.lengths2 == std::vector<int32_t>{1, 3});
  // Bad configurations and samples.
  CHECK_THROWS_WITH(SequenceBatches(set, {4, 1}), Contains("sample 2 has 5 tokens, more than the fixed length 4"));
  CHECK_THROWS_WITH(SequenceBatches(set, {6, 4}), Contains("fixed length 6 is not a multiple of 4"));
  CHECK_THROWS_WITH(SequenceBatches(set, {0, 0}), Contains("padding multiple 0"));
  SequenceSet with_empty = set;
  with_empty.add(std::vector<int32_t>{}, 1);
  CHECK_THROWS_WITH(SequenceBatches(with_empty, {}), Contains("sample 3 is empty"));
}
