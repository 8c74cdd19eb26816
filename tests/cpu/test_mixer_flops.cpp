// TokenMixer::forward_flops: every built-in mixer states its forward FLOPs; the formulas against counts worked out
// by hand for small shapes; visible_pairs against a brute-force count; Module::own_forward_flops of the LRA families'
// modules (LSTM, EMA, MEGA and GAU attention); apps' token_flops over a model (incomplete only where a mixer has no
// formula).
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>

#include "apps/common/flops.h"
#include "engine/gated_attention.h"
#include "engine/mixgrad.h"
#include "nn/ema.h"
#include "nn/gau.h"
#include "nn/layers.h"
#include "nn/lstm.h"
#include "nn/mega.h"
#include "nn/mixer.h"

using namespace mixgrad;

namespace {

nn::MixerContext context(const std::string& mixer, int64_t dim, int64_t heads, int64_t seq_len,
                         const std::map<std::string, std::string>& options = {}, bool causal = false) {
  nn::MixerContext ctx;
  ctx.dim = dim, ctx.num_heads = heads, ctx.seq_len = seq_len, ctx.causal = causal;
  if (nn::mixer_info(mixer).needs_grid) {
    const auto side = int64_t(std::lround(std::sqrt(double(seq_len))));
    ctx.grid_h = ctx.grid_w = side;
  }
  ctx.options = nn::resolve_mixer_options(mixer, options);
  return ctx;
}

double flops_of(const std::string& mixer, int64_t dim, int64_t heads, int64_t n,
                const std::map<std::string, std::string>& options = {}, bool causal = false) {
  const auto m = nn::make_mixer(mixer, context(mixer, dim, heads, n, options, causal));
  const std::optional<double> f = m->forward_flops(n);
  REQUIRE(f.has_value());
  return *f;
}

// A mixer without a formula: one Linear, nothing else.
class NoFormulaMixer : public nn::TokenMixer {
 public:
  explicit NoFormulaMixer(int64_t dim) { lin = register_module("lin", std::make_shared<nn::Linear>(dim, dim, true)); }
  Tensor forward(const Tensor& x, const Tensor& = Tensor()) override { return lin->forward(x); }
  std::shared_ptr<nn::Linear> lin;
};

// A block: a mixer and an MLP Linear, and optionally a mixer without a formula.
class Block : public nn::Module {
 public:
  Block(std::shared_ptr<nn::TokenMixer> mixer, bool with_custom) {
    register_module("mixer", std::move(mixer));
    register_module("mlp", std::make_shared<nn::Linear>(8, 16, true));
    if (with_custom) register_module("custom", std::make_shared<NoFormulaMixer>(8));
  }
};

}  // namespace

TEST_CASE("visible_pairs: global, causal and windowed pair counts against brute force", "[mixers][flops]") {
  for (const int64_t n : {1, 2, 7, 16})
    for (const bool causal : {false, true})
      for (const int64_t w : {0, 1, 3, 20}) {
        double brute = 0;
        for (int64_t t = 0; t < n; ++t)
          for (int64_t s = 0; s < n; ++s) {
            const bool in_window = w == 0 || (causal ? t - s < w : std::llabs(t - s) < w);
            brute += (!causal || s <= t) && in_window ? 1 : 0;
          }
        INFO("n " << n << " causal " << causal << " window " << w);
        REQUIRE(nn::visible_pairs(n, causal, w) == brute);
      }
}

TEST_CASE("forward_flops: every built-in mixer has a formula that counts its Linears", "[mixers][flops]") {
  for (const std::string& name : nn::mixer_names()) {
    if (name.rfind("test_", 0) == 0) continue;  // run-time aliases registered by other test files
    INFO("mixer " << name);
    const int64_t n = 16;
    const auto m = nn::make_mixer(name, context(name, 16, 4, n));
    const std::optional<double> f = m->forward_flops(n);
    REQUIRE(f.has_value());
    REQUIRE(std::isfinite(*f));
    REQUIRE(*f >= nn::linear_flops_per_row(*m));  // every Linear acts on one row at least (S2-MLPv2's split
                                                  // attention on one pooled vector, the rest on every token)
  }
}

TEST_CASE("forward_flops: hand-counted values for small shapes", "[mixers][flops]") {
  // dim = inner = 8, 2 heads, n = 4. Softmax: qkv 2·8·24 + proj 2·8·8 = 512 per token, ·4 = 2048; Q·Kᵀ and A·V
  // 4·8 per pair, 16 pairs (causal 10).
  REQUIRE(flops_of("softmax", 8, 2, 4) == 2048 + 4 * 8 * 16);
  REQUIRE(flops_of("softmax", 8, 2, 4, {}, true) == 2048 + 4 * 8 * 10);
  // CSP: v 2·8·8 + proj 2·8·8 = 256 per token; the shift and sort are not matmuls.
  REQUIRE(flops_of("csp", 8, 2, 4, {{"csp_k", "2"}}) == 4 * 256);
  // AFT: q, k, v, proj 4·128 = 512 per token = 2048. simple: Σ_t' exp(K)·[V | 1] = 4·8 per key.
  REQUIRE(flops_of("aft-simple", 8, 2, 4) == 2048 + 4 * 8 * 4);
  // full, d' = 2: U·V_pᵀ 2·4·4·2, then 4·8 per pair.
  REQUIRE(flops_of("aft-full", 8, 2, 4, {{"aft_rank", "2"}}) == 2048 + 2 * 16 * 2 + 4 * 8 * 16);
  // local, window 2 (band pairs |t − t'| < 2: 4 + 2·3 = 10; the band is 3 wide): the bias 2·2 per band pair; at
  // n = 4 the band is wider than n/4, so the op runs the dense form, 4·8 per visible pair (16)...
  REQUIRE(flops_of("aft-local", 8, 2, 4, {{"aft_rank", "2"}, {"aft_window", "2"}}) == 2048 + 10 * 2 * 2 + 4 * 8 * 16);
  // ... at n = 16 the band form: key sums 4·8·16, then 4·8 per band pair (16 + 2·15 = 46).
  REQUIRE(flops_of("aft-local", 8, 2, 16, {{"aft_rank", "2"}, {"aft_window", "2"}}) ==
          16 * 512 + 46 * 2 * 2 + 4 * 8 * 16 + 46 * 4 * 8);
  // conv, 2 heads, kernel 3 (taps |t' − t| <= 1: 10 pairs): k is Linear(8, 2), so 3·128 + 2·8·2 = 416 per token;
  // the op expands each head's key to its channels: 4·8 per key and per band pair.
  REQUIRE(flops_of("aft-conv", 8, 2, 4, {{"aft_conv_kernel", "3"}}) == 4 * 416 + 4 * 8 * (4 + 10));
  // DCMHA, one global layer, R = 2, C = 4H = 8: qkv + proj 512 per token; the generator 2·4·8·(4C + 4H) +
  // 2·4·4C·2RH; 4·8 per pair for Q·Kᵀ and P·V; Compose 2 stages · 2·(4R + 2)·H = 40 per pair.
  const double generator = 2 * 4 * 8 * (32 + 8) + 2 * 4 * 32 * (2 * 2 * 2);
  REQUIRE(flops_of("dcmha", 8, 2, 4, {{"dcmha_layers", "G"}}) == 2048 + generator + 4 * 8 * 16 + 2 * 16 * 40);
  // The static matrices add 2H² per pair and stage.
  REQUIRE(flops_of("dcmha", 8, 2, 4, {{"dcmha_layers", "G"}, {"dcmha_static", "true"}}) ==
          2048 + generator + 4 * 8 * 16 + 2 * 16 * (40 + 8));
  // A local layer with window 2 sees 10 pairs.
  REQUIRE(flops_of("dcmha", 8, 2, 4, {{"dcmha_layers", "L"}, {"dcmha_window", "2"}}) ==
          2048 + generator + 4 * 8 * 10 + 2 * 10 * 40);
  // Combiner-Fixed, span 2 over 4 tokens (non-causal): each query reads its own span's 2 keys directly and the
  // other span's summary (3 columns); each of the 2 summaries attends over its 2 members: 4·3 + 2·2 = 16.
  REQUIRE(flops_of("combiner-fixed", 8, 2, 4, {{"combiner_span", "2"}}) == 2048 + 4 * 8 * 16);
  // S2-MLPv2 (dim = inner = 8, 2×2 grid): mlp1 2·8·24 + mlp2 2·8·8 per token, the split attention (8×8 and 24×8)
  // once.
  REQUIRE(flops_of("s2mlpv2", 8, 2, 4) == 4 * (384 + 128) + (128 + 384));
}

TEST_CASE("forward_flops: efficient mixers scale below softmax attention at long sequences", "[mixers][flops]") {
  const int64_t n = 1024;
  const double softmax = flops_of("softmax", 32, 4, n);
  for (const char* m : {"csp", "aft-simple", "aft-local", "aft-conv", "combiner-fixed", "combiner-logsparse",
                        "combiner-axial", "combiner-mixture"}) {
    INFO("mixer " << m);
    REQUIRE(flops_of(m, 32, 4, n) < softmax);
  }
  REQUIRE(flops_of("dcmha", 32, 4, n, {{"dcmha_layers", "L"}, {"dcmha_window", "64"}}) <
          flops_of("dcmha", 32, 4, n, {{"dcmha_layers", "G"}}));
}

TEST_CASE("token_flops: a model's blocks by their mixers' formulas; a mixer without one marks a lower bound",
          "[mixers][flops]") {
  const auto mixer = nn::make_mixer("softmax", context("softmax", 8, 2, 4));
  app::FlopCount c = app::token_flops(Block(mixer, false), 4);
  REQUIRE(c.complete);
  REQUIRE(c.flops == *mixer->forward_flops(4) + 4 * 2 * 8 * 16);
  c = app::token_flops(Block(mixer, true), 4);
  REQUIRE_FALSE(c.complete);
  REQUIRE(c.flops == *mixer->forward_flops(4) + 4 * 2 * 8 * 16 + 4 * 2 * 8 * 8);
}

TEST_CASE("own_forward_flops: the LSTM, the EMA, MEGA's and GAU's attention against hand counts", "[mixers][flops]") {
  SECTION("gated attention pairs: full, chunked with a shorter last chunk, chunk >= length") {
    REQUIRE(gated_attention_pairs(10, -1) == 100);
    REQUIRE(gated_attention_pairs(10, 4) == 4 * 4 + 4 * 4 + 2 * 2);
    REQUIRE(gated_attention_pairs(10, 10) == 100);
    REQUIRE(gated_attention_pairs(10, 12) == 100);
  }
  SECTION("LSTM: 2 · n · 4H · (in + H) per layer and direction") {
    const nn::LSTM lstm(3, 4, 2, true);
    // Layer 0: 2 directions · 2 · 5 · 16 · (3 + 4); layer 1 takes both directions' outputs (in = 8).
    REQUIRE(*lstm.own_forward_flops(5) == 2 * 2 * 5 * 16 * 7 + 2 * 2 * 5 * 16 * 12);
    REQUIRE(*nn::LSTM(3, 4, 1, false).own_forward_flops(5) == 2 * 5 * 16 * 7);
  }
  SECTION("EMA: the scan (k = n) and the direct convolution of a truncated kernel") {
    const nn::MultiHeadEMA scan(3, {2, true, 0});
    REQUIRE(*scan.own_forward_flops(5) == 2 * 4 * 5 * 3 * 2);  // 2 directions · 4 · n · D · ndim
    const nn::MultiHeadEMA conv(3, {2, true, 3});
    double taps = 0;  // output t sums min(k, t + 1) taps per direction
    for (int64_t t = 0; t < 5; ++t) taps += double(std::min<int64_t>(3, t + 1));
    REQUIRE(taps == 12);
    REQUIRE(*conv.own_forward_flops(5) == 2 * 2 * 3 * taps);
    REQUIRE(*conv.own_forward_flops(2) == 2 * 4 * 2 * 3 * 2);  // truncation >= n: the scan again
  }
  SECTION("MEGA: Q·Kᵀ and A·V over the chunks' pairs; CSP-MEGA multiplies nothing itself") {
    nn::MegaOptions o;
    o.embed_dim = 4, o.zdim = 3, o.hdim = 5, o.ffn_dim = 6, o.ema_ndim = 2, o.max_positions = 8, o.chunk = 2;
    REQUIRE(*nn::MovingAverageGatedAttention(o).own_forward_flops(5) == 2.0 * (4 + 4 + 1) * (3 + 5));
    o.chunk = -1;
    REQUIRE(*nn::MovingAverageGatedAttention(o).own_forward_flops(5) == 2.0 * 25 * (3 + 5));
    o.csp = true, o.csp_schedule_length = 8;
    REQUIRE(*nn::MovingAverageGatedAttention(o).own_forward_flops(5) == 0);
  }
  SECTION("GAU: Q·Kᵀ (width s) and A·V (width e = 2·dim by default)") {
    nn::GAUOptions o;
    o.zdim = 3, o.max_positions = 6;
    REQUIRE(*nn::GatedAttentionUnit(4, o).own_forward_flops(6) == 2.0 * 36 * (3 + 8));
    o.chunk = 4;
    REQUIRE(*nn::GatedAttentionUnit(4, o).own_forward_flops(6) == 2.0 * (16 + 4) * (3 + 8));
  }
}

TEST_CASE("token_flops: a MEGA block is complete: its Linears on every token plus the EMA and attention formulas",
          "[mixers][flops]") {
  nn::MegaOptions o;
  o.embed_dim = 4, o.zdim = 3, o.hdim = 5, o.ffn_dim = 6, o.ema_ndim = 2, o.max_positions = 8;
  const nn::MegaBlock block(o);
  const app::FlopCount c = app::token_flops(block, 7);
  REQUIRE(c.complete);
  const double own = *block.mega_layer->own_forward_flops(7) + *block.mega_layer->move->own_forward_flops(7);
  REQUIRE(own > 0);
  REQUIRE(c.flops == 7 * nn::linear_flops_per_row(block) + own);
}
