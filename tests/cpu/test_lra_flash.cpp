// The FLASH / GAU family of `lra` (models/lra_flash.h): its presets validate on every task with the §7.3 sizes, the
// parameter estimate is exact, the model is the embedding, the GAU layers, a final norm and MEGA's head, padding
// never reaches the logits, and checkpoints round-trip through the metadata.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "apps/lra/lra_presets.h"
#include "engine/mixgrad.h"
#include "models/lra_flash.h"
#include "tests/common/check.h"

using namespace mixgrad;
using Catch::Contains;

TEST_CASE("lra flash: paper presets carry the §7.3 sizes and the estimate counts every parameter", "[lra][flash]") {
  struct Expect {
    std::string task;
    int64_t depth, dim, zdim, e;
    std::string norm;
    int64_t chunk;
  };
  const std::vector<Expect> expected = {
      {"listops", 4, 128, 64, 256, "layernorm", -1}, {"text", 4, 128, 64, 256, "scalenorm", -1},
      {"retrieval", 4, 128, 64, 256, "scalenorm", -1}, {"image", 8, 192, 128, 512, "batchnorm", -1},
      {"pathfinder", 6, 128, 64, 384, "batchnorm", -1}, {"pathx", 6, 128, 64, 384, "batchnorm", 4096}};
  for (const Expect& e : expected) {
    INFO("task " << e.task);
    const models::LraConfig c = app::lra::lra_preset(e.task, "paper", "flash").model;
    CHECK(c.model == "flash");
    CHECK(c.depth == e.depth);
    CHECK(c.embed_dim == e.dim);
    CHECK(c.zdim == e.zdim);
    CHECK(c.hdim == e.e);
    CHECK(c.head_dim == e.e);  // cls_out = e in every registered flash architecture
    CHECK(c.norm == e.norm);
    CHECK(c.chunk == e.chunk);
    CHECK(c.attn_fn == "relu2");
    manual_seed(1);
    const models::LraFlash m(c);
    CHECK(double(m.num_parameters()) == c.approx_parameters());
    CHECK_THAT(m.describe(), Contains("not FLASH's mixed-chunk"));
  }
  for (const std::string task : {"listops", "text", "retrieval", "image", "pathfinder", "pathx"}) {
    const models::LraConfig c = app::lra::lra_preset(task, "mini", "flash").model;
    manual_seed(2);
    CHECK(double(models::LraFlash(c).num_parameters()) == c.approx_parameters());
  }
}

TEST_CASE("lra flash: padded tokens never change the logits; the config round-trips and is checked",
          "[lra][flash]") {
  models::LraConfig c = app::lra::lra_preset("listops", "mini", "flash").model;
  c.embed_dim = 16, c.depth = 2, c.zdim = 8, c.hdim = 16, c.head_dim = 16, c.dropout = 0, c.max_len = 12;
  for (int64_t chunk : {int64_t(-1), int64_t(5)}) {
    INFO("chunk " << chunk);
    c.chunk = chunk;
    manual_seed(3);
    models::LraFlash m(c);
    m.eval();
    const Tensor lengths = from_vector<int32_t>({12, 7}, {2});
    std::vector<int64_t> ids(24, 0), noisy;
    for (int64_t i = 0; i < 24; ++i) ids[size_t(i)] = (i % 12) < (i < 12 ? 12 : 7) ? 1 + (i * 5) % 15 : 0;
    noisy = ids;
    for (int64_t t = 7; t < 12; ++t) noisy[size_t(12 + t)] = 1 + t % 15;
    NoGradGuard ng;
    const Tensor a = m.forward(from_vector(ids, {2, 12}), lengths);
    const Tensor b = m.forward(from_vector(noisy, {2, 12}), lengths);
    REQUIRE_CLOSE(testing::bit_equal(b, a));
  }
  c.chunk = -1;
  const models::LraConfig back = models::LraConfig::from_metadata(c.to_metadata());
  CHECK(back.model == "flash");
  CHECK(back.hdim == c.hdim);
  CHECK(back.zdim == c.zdim);
  CHECK(back.norm == c.norm);
  models::LraConfig bad = c;
  bad.pos = "sinusoidal";
  CHECK_THROWS_WITH(bad.validate(), Contains("flash has no absolute positions"));
  bad = c;
  bad.chunk = 0;
  CHECK_THROWS_WITH(bad.validate(), Contains("chunk (0)"));
  bad = c;
  bad.mixer = "csp";
  CHECK_THROWS(bad.validate());
}
