// Untrusted input files that are not what they claim, and outputs that must not replace anything but a regular file:
// FIFOs, directories and devices as inputs (a clear "not a regular file", never a hang, bad_alloc or "not found"),
// temporaries never renamed over a FIFO, directory, symlink or device, errno reasons, a gzip bomb stopped at the size
// the IDX header allows, empty data sets, CIFAR files cut at a record boundary, and the mlp's 28×28 check.

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "apps/common/report.h"
#include "apps/data/cifar.h"
#include "apps/data/idx.h"
#include "apps/data/listops.h"
#include "apps/data/split.h"
#include "apps/vit/vit_app.h"
#include "engine/file_io.h"
#include "engine/safetensors.h"
#include "nn/serialize.h"
#include "tests/common/hostile_files.h"
#include "tests/common/temp_files.h"

namespace fs = std::filesystem;
using namespace mixgrad;
using Catch::Contains;

namespace {

struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("mixgrad_test_harden_") {}
};

// A FIFO at `p` (nothing ever opens its write end, so a blocking open for reading would hang the test).
fs::path make_fifo(const fs::path& p) {
  REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
  return p;
}

// Runs `fn` and returns its mixgrad::Error message; FAILs when it throws anything else or nothing, or takes > 5 s.
template <class F>
std::string error_of(F&& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string msg;
  try {
    fn();
    FAIL("expected a mixgrad::Error, nothing was thrown");
  } catch (const Error& e) {
    msg = e.what();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(secs < 5.0);
  return msg;
}

}  // namespace

TEST_CASE("inputs that are not regular files are refused at once, naming the file and its kind", "[hardening]") {
  TempDir dir;
  const fs::path fifo = make_fifo(dir / "images.fifo");
  const fs::path folder = dir / "a_directory";
  fs::create_directories(folder);

  SECTION("FIFO as --images, --checkpoint, a text file") {
    CHECK_THAT(error_of([&] { data::read_idx(fifo); }),
               Contains("images.fifo") && Contains("not a regular file") && Contains("FIFO"));
    CHECK_THAT(error_of([&] { nn::load_tensors(fifo); }), Contains("images.fifo") && Contains("FIFO"));
    CHECK_THAT(error_of([&] { data::read_listops_tsv(fifo, 16, nullptr, nullptr); }),
               Contains("images.fifo") && Contains("not a regular file"));
  }
  SECTION("a directory is not read as a 2^63-byte file") {
    CHECK_THAT(error_of([&] { data::read_idx(folder); }),
               Contains("a_directory") && Contains("not a regular file (it is a directory)"));
    CHECK_THAT(error_of([&] { safetensors::read_safetensors(folder); }),
               Contains("a_directory") && Contains("directory"));
  }
  SECTION("a device is a device, not a missing file") {
    CHECK_THAT(error_of([&] { data::read_idx("/dev/null"); }),
               Contains("/dev/null") && Contains("character device") && !Contains("not found"));
    CHECK_THAT(error_of([&] { nn::load_tensors("/dev/zero"); }), Contains("/dev/zero") && Contains("character device"));
  }
  SECTION("--data folders whose files are FIFOs or devices") {
    make_fifo(dir / "train-images-idx3-ubyte");
    testing::write_bytes(dir / "train-labels-idx1-ubyte", testing::idx_file({1}, {0}));
    CHECK_THAT(error_of([&] { data::load_mnist_like(dir.path, true); }),
               Contains("train-images-idx3-ubyte") && Contains("not a regular file"));
    REQUIRE(::symlink("/dev/null", (dir / "test_batch.bin").c_str()) == 0);
    CHECK_THAT(error_of([&] { data::load_cifar10(dir.path, false); }),
               Contains("test_batch.bin") && Contains("character device"));
  }
  SECTION("a missing file names the errno reason") {
    CHECK_THAT(error_of([&] { data::read_idx(dir / "absent"); }),
               Contains("absent") && Contains("No such file or directory"));
  }
}

TEST_CASE("outputs replace a regular file or nothing, never a device, FIFO, directory or symlink", "[hardening]") {
  TempDir dir;
  const std::vector<float> v = {1, 2, 3};
  const std::vector<safetensors::TensorRecord> recs = {{"x", "F32", {3}, v.data(), 12}};

  SECTION("/dev/full is refused before any temporary is made") {
    CHECK_THAT(error_of([] { io::require_replaceable("/dev/full"); }),
               Contains("/dev/full") && Contains("character device") && Contains("refusing to replace"));
    struct stat st {};
    REQUIRE(::stat("/dev/full", &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
  }
  SECTION("a FIFO, a directory and a symlink stay what they were") {
    const fs::path fifo = make_fifo(dir / "out.fifo");
    CHECK_THAT(error_of([&] { safetensors::write_safetensors(fifo, recs); }),
               Contains("out.fifo") && Contains("FIFO") && Contains("refusing to replace"));
    CHECK(fs::is_fifo(fifo));
    CHECK_FALSE(fs::exists(dir / "out.fifo.tmp"));
    fs::create_directories(dir / "out_dir");
    CHECK_THAT(error_of([&] { app::write_text_atomic(dir / "out_dir", "{}"); }), Contains("directory"));
    CHECK(fs::is_directory(dir / "out_dir"));
    fs::create_symlink(dir / "target.json", dir / "link.json");
    CHECK_THAT(error_of([&] { app::write_text_atomic(dir / "link.json", "{}"); }), Contains("symbolic link"));
    CHECK(fs::is_symlink(dir / "link.json"));
  }
  SECTION("vit predict --out FIFO: an error, and nothing replaced") {
    // A real checkpoint and images; only the output is hostile.
    testing::write_bytes(dir / "model.safetensors", testing::tiny_vit_checkpoint());
    std::vector<uint8_t> pixels(2 * 3 * 8 * 8, 100);
    testing::write_bytes(dir / "images", testing::idx_file({2, 3, 8, 8}, pixels));
    app::PredictOptions p;
    p.checkpoint = (dir / "model.safetensors").string();
    p.images = (dir / "images").string();
    p.out = make_fifo(dir / "logits.fifo").string();
    p.device = "cpu";
    CHECK_THAT(error_of([&] { app::run_predict(p); }), Contains("logits.fifo") && Contains("not a regular file"));
    CHECK(fs::is_fifo(p.out));
    p.out = (dir / "logits.safetensors").string();  // the same command with a plain output works
    CHECK(app::run_predict(p) == 2);
  }
  SECTION("an output that cannot be created gives the errno reason") {
    CHECK_THAT(error_of([&] { safetensors::write_safetensors(dir / "missing" / "x.safetensors", recs); }),
               Contains("x.safetensors.tmp") && Contains("No such file or directory"));
    CHECK_THAT(error_of([&] { app::write_text_atomic(dir / "missing" / "r.json", "{}"); }),
               Contains("r.json.tmp") && Contains("No such file or directory"));
  }
  SECTION("a stale temporary is replaced, a regular output overwritten") {
    testing::write_bytes(dir / "r.json.tmp", {1, 2, 3});
    testing::write_bytes(dir / "r.json", {4});
    app::write_text_atomic(dir / "r.json", "{}");
    CHECK(testing::read_bytes(dir / "r.json") == std::vector<uint8_t>{'{', '}'});
    CHECK_FALSE(fs::exists(dir / "r.json.tmp"));
  }
}

TEST_CASE("a gzip bomb stops at the size the IDX header announces", "[hardening][idx]") {
  TempDir dir;
  const fs::path f = dir / "train-images-idx3-ubyte.gz";
  // Header 10×28×28 (7,840 bytes), then 64 MiB of zeros: a ~65 KB file.
  const std::vector<uint8_t> header = testing::idx_file({10, 28, 28}, {});
  testing::write_bytes(f, testing::gzip_bomb(header, uint64_t(64) << 20));
  CHECK(fs::file_size(f) < 1'000'000);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = error_of([&] { data::read_idx(f); });
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 1.0);
  CHECK_THAT(msg, Contains("train-images-idx3-ubyte.gz") && Contains("trailing bytes") && Contains("10×28×28 = 7840") &&
                      Contains("stopped inflating"));

  SECTION("a header announcing more than the documented cap is refused before inflating the data") {
    testing::write_bytes(f, testing::gzip_bytes(testing::idx_file({70000, 200, 200}, {1, 2, 3})));
    CHECK_THAT(error_of([&] { data::read_idx(f); }),
               Contains("70000×200×200") && Contains("at most 1073741824 bytes") && Contains("gzip -d"));
  }
  SECTION("a gzip file within the cap still loads") {
    testing::write_bytes(f, testing::gzip_bytes(testing::idx_file({2, 2}, {1, 2, 3, 4})));
    CHECK(data::read_idx(f).data == std::vector<uint8_t>{1, 2, 3, 4});
  }
}

TEST_CASE("empty data sets and short CIFAR files are clear errors or logged counts", "[hardening][data]") {
  TempDir dir;
  SECTION("an IDX data set with no images") {
    testing::write_bytes(dir / "t10k-images-idx3-ubyte", testing::idx_file({0, 28, 28}, {}));
    testing::write_bytes(dir / "t10k-labels-idx1-ubyte", testing::idx_file({0}, {}));
    CHECK_THAT(error_of([&] { data::load_mnist_like(dir.path, false); }),
               Contains("t10k-images-idx3-ubyte") && Contains("holds no images") && Contains("at least one"));
  }
  SECTION("images of 0 pixels") {
    testing::write_bytes(dir / "t10k-images-idx3-ubyte", testing::idx_file({2, 0, 28}, {}));
    testing::write_bytes(dir / "t10k-labels-idx1-ubyte", testing::idx_file({2}, {0, 1}));
    CHECK_THAT(error_of([&] { data::load_mnist_like(dir.path, false); }), Contains("0×28 pixels"));
  }
  SECTION("a CIFAR file cut at a record boundary: loaded, and the count logged") {
    // The bytes cannot tell a cut file from a deliberate subset, so this is a warning (kept in ds.warnings and
    // printed to stderr) rather than an error; vit's CIFAR split then needs the full 50,000 training images.
    testing::write_bytes(dir / "test_batch.bin", testing::cifar10_records(3));
    const data::QuietWarnings quiet;
    const data::ImageDataset ds = data::load_cifar10(dir.path, false);
    CHECK(ds.n == 3);
    REQUIRE(ds.warnings.size() == 1);
    CHECK_THAT(ds.warnings[0], Contains("test_batch.bin: 3 records") && Contains("holds 10000"));
    CHECK_THAT(error_of([] { data::split_cifar(49999); }),
               Contains("49999 images") && Contains("expected the full training set of 50000"));
  }
  SECTION("a training set that validation would empty") {
    CHECK_THAT(error_of([] {
                 data::split_last_per_class({0, 1, 0, 1}, 2, 2);
               }),
               Contains("all 4 images are held out for validation"));
    CHECK_THAT(error_of([] {
                 data::split_last_per_class({0, 1, 0}, 2, 2);
               }),
               Contains("class 1 has 1 images, fewer than the 2"));
  }
}

TEST_CASE("mlp rejects images that are not 28x28 and names the flag", "[hardening][mlp]") {
  TempDir dir;
  // 14×56 images hold 784 pixels too: the old mlp accepted them as if they were 28×28.
  for (const char* prefix : {"train", "t10k"}) {
    testing::write_bytes(dir / (std::string(prefix) + "-images-idx3-ubyte"),
                         testing::idx_file({2, 14, 56}, std::vector<uint8_t>(2 * 14 * 56, 9)));
    testing::write_bytes(dir / (std::string(prefix) + "-labels-idx1-ubyte"), testing::idx_file({2}, {0, 1}));
  }
  const std::string cmd =
      std::string(MIXGRAD_BINARY_DIR) + "/bin/mlp --device cpu --data " + dir.path.string() + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = ::pclose(pipe);
  INFO(out);
  CHECK(status != 0);
  CHECK_THAT(out, Contains("--data " + dir.path.string()) && Contains("1x14x56") && Contains("expects 1x28x28"));
}
