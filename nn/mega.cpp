// MEGA's moving-average gated attention, normalized FFN and block (specs/lra.md §6.2; CSP variant csp.md §10).
#include "nn/mega.h"

#include <fmt/format.h>

#include "engine/csp.h"
#include "engine/gated_attention.h"
#include "nn/init.h"

namespace mixgrad::nn {

namespace {

// MEGA's dense layers: N(0, 0.02) weights, zero biases.
std::shared_ptr<Linear> mega_linear(int64_t in, int64_t out) {
  auto l = std::make_shared<Linear>(in, out);
  init::normal_(l->weight, 0.0, 0.02);
  init::zeros_(l->bias);
  return l;
}

void check_options(const MegaOptions& o) {
  MIXGRAD_CHECK(o.embed_dim >= 1 && o.zdim >= 1 && o.hdim >= 1 && o.ffn_dim >= 1,
                "MEGA: embed_dim ({}), zdim ({}), hdim ({}) and ffn_dim ({}) must be >= 1", o.embed_dim, o.zdim, o.hdim,
                o.ffn_dim);
  MIXGRAD_CHECK(o.chunk == -1 || o.chunk >= 1, "MEGA: chunk must be -1 (full attention) or >= 1, got {}", o.chunk);
  MIXGRAD_CHECK(o.max_positions >= 1 && (o.chunk < 0 || o.chunk <= o.max_positions),
                "MEGA: max_positions ({}) must be >= 1 and hold a chunk ({})", o.max_positions, o.chunk);
  for (double p : {o.dropout, o.hidden_dropout})
    MIXGRAD_CHECK(p >= 0 && p < 1, "MEGA: dropout rates must be in [0, 1), got {}", p);
  MIXGRAD_CHECK(o.layer_index >= 0 && o.layer_index < o.num_layers, "MEGA: layer {} of {} is out of range",
                o.layer_index, o.num_layers);
  if (o.csp) {
    MIXGRAD_CHECK(o.chunk == -1, "CSP-MEGA: chunk must be -1 (CSP spans the whole sequence), got {}", o.chunk);
  } else {
    (void)parse_gated_attention_fn(o.attn_fn);
  }
}

}  // namespace

// ---- gated attention ----------------------------------------------------------------------------------------------
MovingAverageGatedAttention::MovingAverageGatedAttention(const MegaOptions& o)
    : Module("MovingAverageGatedAttention"), options(o) {
  check_options(o);
  const int64_t d = o.embed_dim, z = o.csp ? 0 : o.zdim, v = o.hdim;
  v_proj = register_module("v_proj", mega_linear(d, v));
  mx_proj = register_module("mx_proj", mega_linear(d, d + z + v + d));  // [u, (z,) r, hx]
  h_proj = register_module("h_proj", mega_linear(v, d));
  MultiHeadEMAOptions ema;
  ema.ndim = o.ema_ndim;
  ema.bidirectional = true;
  ema.truncation = o.truncation;
  move = register_module("move", std::make_shared<MultiHeadEMA>(d, ema));
  if (o.csp) {
    csp_shifts = mixgrad::csp_shifts(o.csp_schedule, v, o.csp_schedule_length, o.csp_k, o.layer_index, o.num_layers);
  } else {
    gamma = register_parameter("gamma", empty({2, o.zdim}));
    beta = register_parameter("beta", zeros({2, o.zdim}));
    rel_pos_bias = register_parameter("rel_pos_bias", empty({2 * o.max_positions - 1}));
    init::normal_(gamma, 0.0, 0.02);
    init::normal_(rel_pos_bias, 0.0, 0.02);
  }
  norm = register_module("norm", std::make_shared<SequenceNorm>(o.norm, d, o.norm_eps));
}

Tensor MovingAverageGatedAttention::mix(const Tensor& z, const Tensor& v, const Tensor& lengths) {
  if (options.csp) return csp(v, csp_shifts, options.csp_k, lengths);
  // Q = Z ⊙ κ_q + μ_q, K = Z ⊙ κ_k + μ_k.
  const Tensor q = add(mul(z, narrow(gamma, 0, 0, 1)), narrow(beta, 0, 0, 1));
  const Tensor k = add(mul(z, narrow(gamma, 0, 1, 1)), narrow(beta, 0, 1, 1));
  GatedAttentionOptions ga;
  ga.fn = parse_gated_attention_fn(options.attn_fn);
  ga.chunk = options.chunk;
  return gated_attention(q, k, v, rel_pos_bias, lengths, ga);
}

std::optional<double> MovingAverageGatedAttention::own_forward_flops(int64_t n) const {
  if (options.csp) return 0.0;
  return 2.0 * gated_attention_pairs(n, options.chunk) * double(options.zdim + options.hdim);
}

Tensor MovingAverageGatedAttention::forward(const Tensor& x, const Tensor& lengths) {
  MIXGRAD_CHECK(x.dim() == 3 && x.size(2) == options.embed_dim,
                "MovingAverageGatedAttention: expected x [B, L, {}], got {}", options.embed_dim, shape_str(x.shape()));
  const int64_t d = options.embed_dim, z = options.csp ? 0 : options.zdim, vd = options.hdim;
  const Tensor residual = x;
  const Tensor xn = options.prenorm ? norm->forward(x, lengths) : x;
  const Tensor v = dropout(silu(v_proj->forward(xn)), options.hidden_dropout, is_training());
  const Tensor mx = dropout(move->forward(xn, lengths), options.dropout, is_training());
  const std::vector<Tensor> parts = split(mx_proj->forward(mx), std::vector<int64_t>{d, z + vd, d}, 2);
  const Tensor phi = sigmoid(parts[0]);   // update gate
  const Tensor zr = silu(parts[1]);       // [Z, γ] (CSP: γ only)
  const Tensor r = narrow(zr, 2, z, vd);  // reset gate
  const Tensor o = mix(z > 0 ? narrow(zr, 2, 0, z) : Tensor(), v, lengths);
  const Tensor h = dropout(silu(add(parts[2], h_proj->forward(mul(o, r)))), options.dropout, is_training());
  const Tensor y = add(residual, mul(phi, sub(h, residual)));  // residual + φ ⊙ (Ĥ − residual)
  return options.prenorm ? y : norm->forward(y, lengths);
}

// ---- normalized FFN and block -------------------------------------------------------------------------------------
NormalizedFeedForward::NormalizedFeedForward(const MegaOptions& o) : Module("NormalizedFeedForward"), options(o) {
  check_options(o);
  fc1 = register_module("fc1", mega_linear(o.embed_dim, o.ffn_dim));
  fc2 = register_module("fc2", mega_linear(o.ffn_dim, o.embed_dim));
  norm = register_module("norm", std::make_shared<SequenceNorm>(o.norm, o.embed_dim, o.norm_eps));
}

Tensor NormalizedFeedForward::forward(const Tensor& x, const Tensor& lengths) {
  const Tensor xn = options.prenorm ? norm->forward(x, lengths) : x;
  const Tensor hidden = dropout(silu(fc1->forward(xn)), options.hidden_dropout, is_training());
  const Tensor y = add(dropout(fc2->forward(hidden), options.dropout, is_training()), x);
  return options.prenorm ? y : norm->forward(y, lengths);
}

MegaBlock::MegaBlock(const MegaOptions& o) : Module("MegaBlock") {
  mega_layer = register_module("mega_layer", std::make_shared<MovingAverageGatedAttention>(o));
  nffn = register_module("nffn", std::make_shared<NormalizedFeedForward>(o));
}

Tensor MegaBlock::forward(const Tensor& x, const Tensor& lengths) {
  return nffn->forward(mega_layer->forward(x, lengths), lengths);
}

void MegaBlocks::push_back(std::shared_ptr<MegaBlock> block) {
  blocks_.push_back(register_module(std::to_string(blocks_.size()), std::move(block)));
}

Tensor MegaBlocks::forward(const Tensor& x, const Tensor& lengths) {
  Tensor h = x;
  for (auto& b : blocks_) h = b->forward(h, lengths);
  return h;
}

}  // namespace mixgrad::nn
