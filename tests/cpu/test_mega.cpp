// MEGA's layers (nn/mega.h) and the MEGA / CSP-MEGA LRA encoder (models/lra_mega.h): one gated-attention layer
// against a naive float64 composition of §6.2 steps 1-8 (scores, relative bias, gates built from matmul and softmax);
// float64 finite differences of a whole MEGA block (input and every parameter) in its post-norm, pre-norm, chunked
// (L not a multiple of the chunk) and CSP variants, with padding; what CSP-MEGA does not create; parameter counts and
// the config's estimate; checkpoint metadata; bad options.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "engine/gradcheck.h"
#include "engine/mixgrad.h"
#include "models/config_metadata.h"
#include "models/lra_mega.h"
#include "nn/mega.h"
#include "tests/common/check.h"

using namespace mixgrad;
using Catch::Contains;

namespace {

nn::MegaOptions tiny_options() {
  nn::MegaOptions o;
  o.embed_dim = 4, o.zdim = 3, o.hdim = 5, o.ffn_dim = 6, o.ema_ndim = 2, o.max_positions = 7;
  o.norm_eps = 1e-5;
  return o;
}

// The relative-bias matrix [L, L] with entry (i, j) = w[P − 1 + j − i].
Tensor bias_matrix(const Tensor& w, int64_t p, int64_t l) {
  const std::vector<double> wv = w.to_vector<double>();
  std::vector<double> m(size_t(l * l));
  for (int64_t i = 0; i < l; ++i)
    for (int64_t j = 0; j < l; ++j) m[size_t(i * l + j)] = wv[size_t(p - 1 + j - i)];
  return from_vector(m, {l, l});
}

// Steps 1-8 of §6.2 for post-norm, full softmax attention, no padding, from plain ops (float64).
Tensor naive_layer(nn::MovingAverageGatedAttention& m, const Tensor& x) {
  const nn::MegaOptions& o = m.options;
  const int64_t d = o.embed_dim, z = o.zdim, v = o.hdim, l = x.size(1);
  const Tensor val = silu(linear(x, m.v_proj->weight, m.v_proj->bias));
  const Tensor mx = m.move->forward(x);
  const Tensor proj = linear(mx, m.mx_proj->weight, m.mx_proj->bias);
  const Tensor phi = sigmoid(narrow(proj, 2, 0, d));
  const Tensor zr = silu(narrow(proj, 2, d, z + v));
  const Tensor zz = narrow(zr, 2, 0, z), r = narrow(zr, 2, z, v), hx = narrow(proj, 2, d + z + v, d);
  const Tensor q = add(mul(zz, narrow(m.gamma, 0, 0, 1)), narrow(m.beta, 0, 0, 1));
  const Tensor k = add(mul(zz, narrow(m.gamma, 0, 1, 1)), narrow(m.beta, 0, 1, 1));
  const Tensor scores = add(mul_scalar(matmul(q, transpose(k, 1, 2)), 1.0 / std::sqrt(double(z))),
                            bias_matrix(m.rel_pos_bias, o.max_positions, l).reshape({1, l, l}));
  const Tensor attn = matmul(softmax(scores, -1), val);
  const Tensor h = silu(add(hx, linear(mul(attn, r), m.h_proj->weight, m.h_proj->bias)));
  const Tensor y = add(x, mul(phi, sub(h, x)));
  return m.norm->forward(y, Tensor());  // post-norm (the norm layer itself is tested on its own)
}

struct BlockCase {
  std::string name;
  bool prenorm;
  std::string attn_fn;
  int64_t chunk;
  bool csp;
  std::vector<int32_t> lengths;
};

}  // namespace

TEST_CASE("mega: a gated-attention layer equals the naive composition of its steps", "[mega]") {
  manual_seed(11);
  nn::MovingAverageGatedAttention m(tiny_options());
  m.to(DType::f64);
  const Tensor x = rand_f64({2, 7, 4}, -1, 1, false);
  NoGradGuard ng;
  REQUIRE_CLOSE(all_close(m.forward(x, Tensor()), naive_layer(m, x), {1e-10, 1e-12}));
}

TEST_CASE("mega: float64 finite differences through a whole block, every variant", "[mega]") {
  const std::vector<BlockCase> cases = {
      {"post-norm, softmax, full, padded", false, "softmax", -1, false, {7, 4}},
      {"pre-norm, laplace, full, padded", true, "laplace", -1, false, {5, 7}},
      {"post-norm, relu2, chunk 3 (L 7), padded", false, "relu2", 3, false, {7, 2}},
      {"pre-norm, softmax, chunk 4 (L 7)", true, "softmax", 4, false, {7, 7}},
      {"CSP, post-norm, padded", false, "softmax", -1, true, {6, 3}},
  };
  for (const BlockCase& c : cases) {
    INFO(c.name);
    nn::MegaOptions o = tiny_options();
    o.prenorm = c.prenorm, o.attn_fn = c.attn_fn, o.chunk = c.chunk, o.csp = c.csp;
    o.csp_schedule_length = 7, o.layer_index = 1, o.num_layers = 2;
    manual_seed(17);
    nn::MegaBlock block(o);
    block.to(DType::f64);
    const int64_t l = c.csp ? 6 : 7;
    const Tensor x = rand_f64({2, l, 4});
    const Tensor lengths = from_vector(c.lengths, {2});
    std::vector<Tensor> inputs = {x};
    for (const auto& [name, p] : block.named_parameters()) inputs.push_back(p);
    const auto f = [&](const std::vector<Tensor>& in) { return block.forward(in[0], lengths); };
    REQUIRE_CLOSE(gradcheck(f, inputs, 1e-6, {1e-5, 1e-7}));
  }
}

TEST_CASE("mega: CSP-MEGA creates no Q, K or relative bias; parameter counts match the config's", "[mega]") {
  models::LraConfig c;
  c.model = "mega", c.mixer = "gated", c.pool = "mean", c.pos = "none", c.attn_dropout = 0;
  c.vocab_size = 9, c.max_len = 20, c.embed_dim = 8, c.depth = 2, c.zdim = 4, c.hdim = 6, c.mlp_dim = 10;
  c.head_dim = 12, c.num_classes = 3, c.ema_ndim = 2, c.num_heads = 1;
  for (const std::string mixer : {"gated", "csp"})
    for (const std::string dual : {"none", "nli"}) {
      INFO("mixer " << mixer << ", dual " << dual);
      c.mixer = mixer, c.dual = dual;
      c.mixer_options = mixer == "csp" ? std::map<std::string, std::string>{{"csp_schedule", "exponential"}}
                                       : std::map<std::string, std::string>{};
      const std::unique_ptr<models::LraModel> m = models::make_lra_model(c);
      CHECK(double(m->num_parameters()) == c.approx_parameters());
      bool has_qk = false, has_bias = false;
      for (const auto& [name, p] : m->named_parameters()) {
        has_qk = has_qk || name.find("mega_layer.gamma") != std::string::npos;
        has_bias = has_bias || name.find("rel_pos_bias") != std::string::npos;
      }
      CHECK(has_qk == (mixer == "gated"));
      CHECK(has_bias == (mixer == "gated"));
      CHECK_THAT(m->describe(), Contains(mixer == "csp" ? "not created" : "softmax attention"));
      // The config round-trips through checkpoint metadata.
      const models::LraConfig back = models::LraConfig::from_metadata(c.to_metadata());
      CHECK(back.to_metadata() == c.to_metadata());
      CHECK(back.model == "mega");
    }
}

TEST_CASE("mega: bad options are clear errors", "[mega]") {
  models::LraConfig c;
  c.model = "mega", c.mixer = "gated", c.pool = "mean", c.pos = "none", c.attn_dropout = 0, c.max_len = 16;
  c.embed_dim = 8, c.mlp_dim = 8, c.depth = 1;
  CHECK_NOTHROW(c.validate());
  auto bad = [&](auto change, const std::string& what) {
    models::LraConfig b = c;
    change(b);
    CHECK_THROWS_WITH(b.validate(), Contains(what));
  };
  bad([](auto& b) { b.mixer = "softmax"; }, "model mega has no mixer \"softmax\" (it takes: gated, csp)");
  bad([](auto& b) { b.pool = "cls"; }, "pool must be mean");
  bad([](auto& b) { b.pos = "learned"; }, "pos must be none");
  bad([](auto& b) { b.chunk = 0; }, "chunk (0) must be -1");
  bad([](auto& b) { b.mixer = "csp", b.chunk = 8; }, "chunk must be -1");
  bad([](auto& b) { b.ema_ndim = 65; }, "ema_ndim (65)");
  bad([](auto& b) { b.attn_dropout = 0.1; }, "attn_dropout");
  models::Metadata m = c.to_metadata();
  m["norm"] = "groupnorm";
  CHECK_THROWS_WITH(models::LraConfig::from_metadata(m), Contains("key \"norm\""));
  m = c.to_metadata();
  m.erase("zdim");
  CHECK_THROWS_WITH(models::LraConfig::from_metadata(m), Contains("missing key \"zdim\""));
  nn::MegaOptions o = tiny_options();
  o.attn_fn = "cosine";
  CHECK_THROWS_WITH(nn::MovingAverageGatedAttention(o), Contains("cosine"));
}
