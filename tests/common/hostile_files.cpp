// Valid and hostile input files (see hostile_files.h).
#include "tests/common/hostile_files.h"

#include <unistd.h>
#include <zlib.h>

#include <stdexcept>

#include "engine/mixgrad.h"
#include "models/lra_model.h"
#include "models/vit.h"
#include "nn/serialize.h"
#include "tests/common/temp_files.h"
#include "tests/common/vit_helpers.h"

namespace mixgrad::testing {

std::vector<uint8_t> idx_file(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& payload, uint8_t type) {
  std::vector<uint8_t> b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

namespace {
// Deflates `prefix` and then `zeros` zero bytes into a gzip member.
std::vector<uint8_t> deflate_gzip(const std::vector<uint8_t>& prefix, uint64_t zeros) {
  z_stream zs{};
  if (deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::vector<uint8_t> out, chunk(1 << 16);
  const std::vector<uint8_t> zero_block(1 << 20, 0);
  const auto pump = [&](const uint8_t* data, size_t n, int flush) {
    zs.next_in = const_cast<Bytef*>(data);
    zs.avail_in = static_cast<uInt>(n);
    int rc = Z_OK;
    do {
      zs.next_out = chunk.data();
      zs.avail_out = static_cast<uInt>(chunk.size());
      rc = deflate(&zs, flush);
      out.insert(out.end(), chunk.begin(), chunk.end() - zs.avail_out);
    } while (zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
  };
  pump(prefix.data(), prefix.size(), Z_NO_FLUSH);
  for (uint64_t left = zeros; left > 0;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, zero_block.size()));
    pump(zero_block.data(), n, Z_NO_FLUSH);
    left -= n;
  }
  pump(nullptr, 0, Z_FINISH);
  deflateEnd(&zs);
  return out;
}

std::vector<uint8_t> checkpoint_bytes(const nn::Module& m, const nn::Metadata& meta, const std::string& stem) {
  TempDir dir("mixgrad_test_ckpt_");
  const auto file = dir / (stem + ".safetensors");
  nn::save_state_dict(m, file, meta);
  return read_bytes(file);
}
}  // namespace

std::vector<uint8_t> gzip_bytes(const std::vector<uint8_t>& bytes) { return deflate_gzip(bytes, 0); }
std::vector<uint8_t> gzip_bomb(const std::vector<uint8_t>& prefix, uint64_t zeros) {
  return deflate_gzip(prefix, zeros);
}

std::vector<uint8_t> safetensors_file(const std::string& header, const std::vector<uint8_t>& data, uint64_t length) {
  if (length == UINT64_MAX) length = header.size();
  std::vector<uint8_t> b;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(length >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

std::string nested_json(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::vector<uint8_t> tiny_vit_checkpoint() {
  const models::ViTConfig cfg = tiny_vit_config();
  manual_seed(1);
  models::VisionTransformer m(cfg);
  nn::Metadata meta = cfg.to_metadata();
  meta["normalize.mean"] = "0.5,0.5,0.5";  // what `vit eval` and `predict` read besides the config
  meta["normalize.std"] = "0.25,0.25,0.25";
  meta["dataset"] = "cifar10";
  return checkpoint_bytes(m, meta, "vit");
}

std::vector<uint8_t> tiny_lra_checkpoint() {
  models::LraConfig cfg;
  cfg.max_len = 8;
  cfg.embed_dim = 8;
  cfg.depth = 1;
  cfg.num_heads = 2;
  cfg.mlp_dim = 8;
  cfg.num_classes = 3;
  manual_seed(1);
  const std::unique_ptr<models::LraModel> m = models::make_lra_model(cfg);
  return checkpoint_bytes(*m, cfg.to_metadata(), "lra");
}

std::vector<uint8_t> cifar10_records(int n) {
  std::vector<uint8_t> b;
  for (int i = 0; i < n; ++i) {
    b.push_back(static_cast<uint8_t>(i % 10));
    for (int k = 0; k < 3072; ++k) b.push_back(static_cast<uint8_t>((i + k) % 256));
  }
  return b;
}

std::string listops_tsv_text() {
  return "Source\tTarget\r\n"
         "( [MAX 2 9 ( [MIN 4 7 ] ) 0 ] )\t9\r\n"
         "( [SM 1 2 ] )\t3\r\n"
         "( [MED 5 ( [MAX 1 8 ] ) 2 ] )\t5\r\n";
}

std::string pathfinder_metadata_text() {
  return "imgs/0 sample_0.png 0 1 1.8 6 5 2 1.5 3 1\n"
         "imgs/0 sample_0.png 1 0 1.8 6 5 2 1.5 3 1\n";
}

std::vector<uint8_t> as_bytes(const std::string& s) { return {s.begin(), s.end()}; }

}  // namespace mixgrad::testing
