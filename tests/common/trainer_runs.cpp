// Trainer-suite helpers (see trainer_runs.h).
#include "tests/common/trainer_runs.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <fstream>

#include "tests/common/check.h"

namespace mixgrad::testing {

namespace fs = std::filesystem;

namespace {

void put_be32(std::ofstream& f, uint32_t v) {
  const char b[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  f.write(b, 4);
}

}  // namespace

void write_bar_idx(const fs::path& dir, const std::string& prefix, int per_class, uint32_t seed) {
  const int n = 10 * per_class;
  std::ofstream img(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary);
  std::ofstream lab(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
  put_be32(img, 2051), put_be32(img, uint32_t(n)), put_be32(img, 28), put_be32(img, 28);
  put_be32(lab, 2049), put_be32(lab, uint32_t(n));
  uint32_t s = seed;
  std::vector<char> px(784);
  for (int i = 0; i < n; ++i) {
    const int c = i % 10;
    for (int p = 0; p < 784; ++p) {
      s = s * 1664525u + 1013904223u;
      const int row = p / 28;
      int v = int(s >> 27);  // 0..31 noise
      if (row >= 2 * c + 4 && row < 2 * c + 7) v += 180;
      px[size_t(p)] = char(uint8_t(v));
    }
    img.write(px.data(), 784);
    lab.put(char(c));
  }
  REQUIRE((img.good() && lab.good()));
}

fs::path write_bar_dataset(const fs::path& dir) {
  fs::create_directories(dir);
  write_bar_idx(dir, "train", 540);
  write_bar_idx(dir, "t10k", 10);
  return dir;
}

app::TrainOptions tiny_vit_run(const fs::path& data, const fs::path& out) {
  app::TrainOptions o;
  o.data_dir = data.string();
  o.out_dir = out.string();
  o.device = "cpu";
  o.epochs = 2;
  o.batch_size = 32;
  o.lr = 2e-3;
  o.warmup = 3;
  o.train_limit = 192;  // 6 steps per epoch
  o.val_limit = 100;
  o.test_limit = 60;
  o.log_every = 4;
  o.quiet = true;
  models::ViTConfig cfg = models::vit_preset("fmnist-tiny");
  cfg.patch_size = 7, cfg.embed_dim = 32, cfg.depth = 1, cfg.num_heads = 2, cfg.mlp_hidden = 64;
  o.model_override = cfg;
  return o;
}

void require_same_tensors(const fs::path& a, const fs::path& b) {
  const nn::NamedTensors ta = nn::load_tensors(a), tb = nn::load_tensors(b);
  REQUIRE(ta.size() == tb.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    INFO(a.string() << " vs " << b.string() << ": " << ta[i].first);
    REQUIRE(ta[i].first == tb[i].first);
    REQUIRE_CLOSE(bit_equal(tb[i].second, ta[i].second));
  }
}

std::vector<app::Json> metrics_without_times(const fs::path& file) {
  std::vector<app::Json> out = app::read_metrics(file);
  for (app::Json& r : out)
    for (const char* k : {"wall_s", "eta_s", "images_per_s", "tokens_per_s", "memory_bytes", "peak_memory_bytes"})
      r.erase(k);
  return out;
}

void require_same_metrics(const fs::path& a, const fs::path& b) {
  const std::vector<app::Json> ra = metrics_without_times(a), rb = metrics_without_times(b);
  for (size_t i = 0; i < std::min(ra.size(), rb.size()); ++i) {
    INFO("record " << i << ":\n  " << ra[i].dump() << "\n  " << rb[i].dump());
    REQUIRE(ra[i] == rb[i]);
  }
  REQUIRE(ra.size() == rb.size());
}

void set_metadata(const fs::path& file, const std::string& key, const std::string& value) {
  nn::Metadata m;
  const nn::NamedTensors t = nn::load_tensors(file, &m);
  m[key] = value;
  nn::save_tensors(file, t, m);
}

void set_element(const fs::path& file, const std::string& name, int64_t index, float value) {
  nn::Metadata m;
  nn::NamedTensors t = nn::load_tensors(file, &m);
  bool found = false;
  for (auto& [n, x] : t)
    if (n == name) {
      REQUIRE(x.dtype() == DType::f32);
      REQUIRE(index < x.numel());
      x.data<float>()[index] = value;
      found = true;
    }
  REQUIRE(found);
  nn::save_tensors(file, t, m);
}

nn::Metadata metadata_of(const fs::path& file) {
  nn::Metadata m;
  (void)nn::load_tensors(file, &m);
  return m;
}

std::vector<fs::path> temporaries_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".tmp") out.push_back(e.path());
  return out;
}

}  // namespace mixgrad::testing
