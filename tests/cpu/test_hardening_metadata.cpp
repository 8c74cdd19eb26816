// Model metadata from a checkpoint is untrusted: every field is checked with its bounds before anything is built,
// and the error names the file (through the apps) and the key. Shape arithmetic on sizes from outside is
// overflow-checked. Command-line ranges say which flag, what was wrong and what was expected.

#include <catch2/catch.hpp>
#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "apps/lra/lra_app.h"
#include "apps/vit/vit_app.h"
#include "engine/mixgrad.h"
#include "models/config_metadata.h"
#include "models/lra_transformer.h"
#include "models/vit.h"
#include "nn/serialize.h"
#include "tests/common/hostile_files.h"
#include "tests/common/temp_files.h"
#include "tests/common/vit_helpers.h"

namespace fs = std::filesystem;
using namespace mixgrad;
using Catch::Contains;

namespace {

struct BadField {
  std::string key, value, expect;  // `expect`: a part of the message besides the key
};

// from_metadata of `meta` with key = value: a mixgrad::Error naming the key, thrown in well under a second.
template <class Config>
void require_rejected(const nn::Metadata& valid, const BadField& f) {
  nn::Metadata m = valid;
  m[f.key] = f.value;
  INFO(f.key << " = " << f.value);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(Config::from_metadata(m), Error);
  CHECK_THROWS_WITH(Config::from_metadata(m), Contains("\"" + f.key + "\"") && Contains(f.expect));
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 1.0);
}

}  // namespace

TEST_CASE("ViT metadata: every field is bounded before the model is built", "[hardening][metadata]") {
  const nn::Metadata valid = testing::tiny_vit_config().to_metadata();  // img 8, patch 4, D 16, 2 heads
  REQUIRE_NOTHROW(models::ViTConfig::from_metadata(valid));
  for (const BadField& f : std::vector<BadField>{
           {"mlp_hidden", "4611686018427387904", "expected an integer in [1, 65536]"},  // 2^62: overflowed shape_numel
           {"depth", "1000000000", "expected an integer in [1, 1024]"},                 // 76 s and 3.6 GiB before
           {"ln_eps", "inf", "not finite"},
           {"ln_eps", "0", "expected a number in (0, 1]"},
           {"ln_eps", "nan", "not finite"},
           {"num_heads", "64", "expected an integer in [1, 16]"},  // more heads than channels
           {"num_heads", "0", "out of range"},
           {"embed_dim", "-16", "out of range"},
           {"img_size", "99999999999999999999999", "is not an integer"},
           {"patch_size", "16", "expected an integer in [1, 8]"},  // larger than the image
           {"in_chans", "1e3", "is not an integer"},
           {"num_classes", "0", "out of range"},
           {"pool", "max", "is not one of token, avg"},
           {"mixer", "mamba", "is not one of"},
           {"drop_rate", "1", "expected a number in [0,"},
           {"qkv_bias", "maybe", "not a boolean"},
       })
    require_rejected<models::ViTConfig>(valid, f);
  // Fields that fit one by one but not together name the fields too.
  nn::Metadata m = valid;
  m["num_heads"] = "3";  // does not divide 16
  CHECK_THROWS_WITH(models::ViTConfig::from_metadata(m),
                    Contains("num_heads (3)") && Contains("divide embed_dim (16)"));
  m = valid;
  m["patch_size"] = "3";  // does not divide 8
  CHECK_THROWS_WITH(models::ViTConfig::from_metadata(m), Contains("patch_size 3 must divide img_size 8"));
  m = valid;
  m["embed_dim"] = "65536";
  m["num_heads"] = "1";
  m["depth"] = "1024";  // every field in range, but ~2^44 parameters
  CHECK_THROWS_WITH(models::ViTConfig::from_metadata(m), Contains("parameters, more than the limit of 2^32"));
  // Mixer options are checked against the registry's declared values and name the option.
  m = testing::tiny_vit_config().to_metadata();
  m["mixer"] = "csp";
  m["mixer_options"] = "csp_k";
  m["csp_k"] = "3";
  CHECK_THROWS_WITH(models::ViTConfig::from_metadata(m), Contains("csp_k") && Contains("one of 2, 4, 8"));
}

TEST_CASE("LRA metadata: every field is bounded before the model is built", "[hardening][metadata]") {
  models::LraConfig c;
  c.max_len = 16;
  c.embed_dim = 8;
  c.num_heads = 2;
  c.mlp_dim = 8;
  c.depth = 1;
  const nn::Metadata valid = c.to_metadata();
  REQUIRE_NOTHROW(models::LraConfig::from_metadata(valid));
  for (const BadField& f : std::vector<BadField>{
           {"qkv_dim", "4611686018427387904", "expected an integer in [0, 65536]"},
           {"head_dim", "-1", "out of range"},
           {"grid_h", "9223372036854775807", "out of range"},  // grid_h × grid_w overflowed
           {"vocab_size", "1", "expected an integer in [2,"},
           {"pixel_std", "0", "expected a number in (0,"},
           {"pixel_mean", "nan", "not finite"},
           {"ln_eps", "inf", "not finite"},
           {"num_heads", "9", "expected an integer in [1, 8]"},
           {"depth", "1e9", "is not an integer"},
           {"dual", "triple", "is not one of none, nli, concat"},
           {"pos", "rotary", "is not one of"},
           {"dropout", "-0.5", "out of range"},
       })
    require_rejected<models::LraConfig>(valid, f);
  nn::Metadata m = valid;
  m["grid_h"] = "3";
  m["grid_w"] = "5";
  CHECK_THROWS_WITH(models::LraConfig::from_metadata(m), Contains("grid 3x5 must hold max_len = 16"));
  m = valid;
  m["vocab_size"] = "16777216";
  m["embed_dim"] = "65536";  // a 2^40-entry embedding table
  CHECK_THROWS_WITH(models::LraConfig::from_metadata(m), Contains("more than the limit of 2^32"));
}

TEST_CASE("hostile model metadata in a checkpoint: the app's error names the file and the key",
          "[hardening][metadata]") {
  testing::TempDir dir("mixgrad_test_harden_meta_");
  const fs::path file = dir / "ckpt.safetensors";
  nn::NamedTensors none;
  nn::Metadata meta = testing::tiny_vit_config().to_metadata();
  meta["mlp_hidden"] = "4611686018427387904";
  nn::save_tensors(file, none, meta);
  app::EvalOptions e;
  e.checkpoint = file.string();
  e.device = "cpu";
  e.dataset = "cifar10";
  e.data_dir = dir.path.string();
  CHECK_THROWS_AS(app::run_eval(e), Error);
  CHECK_THROWS_WITH(app::run_eval(e), Contains("ckpt.safetensors") && Contains("\"mlp_hidden\"") &&
                                          Contains("expected an integer in [1, 65536]"));
  // Normalisation values are checked too (a std of 0 divided every pixel by zero).
  testing::write_bytes(file, testing::tiny_vit_checkpoint());
  nn::Metadata good;
  const nn::NamedTensors weights = nn::load_tensors(file, &good);
  good["normalize.std"] = "0.25,0,0.25";
  nn::save_tensors(file, weights, good);
  CHECK_THROWS_WITH(app::run_eval(e), Contains("ckpt.safetensors") && Contains("normalize.std of channel 1"));
}

TEST_CASE("shape arithmetic on outside sizes is overflow-checked", "[hardening][tensor]") {
  const int64_t big = int64_t(1) << 40;
  CHECK_THROWS_AS(shape_numel({big, big}), Error);
  CHECK_THROWS_WITH(shape_numel({big, big}), Contains("[1099511627776, 1099511627776]") && Contains("overflows"));
  CHECK(shape_numel({0, big, big}) == 0);
  CHECK(shape_numel({big, 0, big, big}) == 0);
  CHECK(shape_numel({3, 4}) == 12);
  CHECK_THROWS_WITH(empty({int64_t(1) << 62, 8}), Contains("overflows") || Contains("more than 2^64 bytes"));
  CHECK_THROWS_AS(empty({int64_t(1) << 61, 4}, TensorOptions(DType::f64)), Error);  // 2^63 elements × 8 bytes
  const Tensor t = zeros({4, 6});
  CHECK_THROWS_AS(t.reshape({big, big, -1}), Error);
}

TEST_CASE("command-line ranges name the flag, the problem and the bound", "[hardening][cli]") {
  const auto parse = [](std::vector<const char*> args) {
    args.insert(args.begin(), "vit");
    std::ostringstream out, err;
    const app::CliCommand c = app::parse_cli(int(args.size()), args.data(), out, err);
    CHECK(c.exit_code > 0);
    return err.str();
  };
  CHECK_THAT(parse({"train", "--epochs", "abc"}),
             Contains("--epochs") && Contains("'abc' is not an integer") && Contains("[1, 1000000]"));
  CHECK_THAT(parse({"train", "--epochs", "0"}), Contains("--epochs") && Contains("0 is out of range"));
  CHECK_THAT(parse({"train", "--epochs", "99999999999999999999"}), Contains("--epochs") && Contains("out of range"));
  const std::string lr = parse({"train", "--lr", "inf"});
  CHECK_THAT(lr, Contains("--lr") && Contains("'inf' is not finite") && Contains("> 0"));
  CHECK(lr.size() < 300);  // no 309-digit DBL_MAX
  CHECK_THAT(parse({"train", "--depth", "5000"}), Contains("--depth") && Contains("[1, 1024]"));
}
