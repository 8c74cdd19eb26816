// The MEGA and CSP-MEGA LRA encoders.
#include "models/lra_mega.h"

#include <fmt/format.h>

#include "engine/sequence.h"
#include "nn/mixer.h"

namespace mixgrad::models {

nn::MegaOptions mega_options(const LraConfig& cfg, int64_t index) {
  nn::MegaOptions o;
  o.embed_dim = cfg.embed_dim, o.zdim = cfg.zdim, o.hdim = cfg.hdim, o.ffn_dim = cfg.mlp_dim;
  o.ema_ndim = cfg.ema_ndim, o.truncation = cfg.truncation;
  o.norm = cfg.norm, o.prenorm = cfg.prenorm, o.norm_eps = cfg.ln_eps;
  o.attn_fn = cfg.attn_fn, o.chunk = cfg.chunk;
  o.max_positions = cfg.chunk > 0 ? cfg.chunk : cfg.max_len;
  o.dropout = cfg.dropout, o.hidden_dropout = cfg.hidden_dropout;
  o.csp = cfg.mixer == "csp";
  if (o.csp) {
    const std::map<std::string, std::string> opts = cfg.resolved_mixer_options();
    o.csp_k = std::stoi(opts.at("csp_k"));
    o.csp_schedule = opts.at("csp_schedule");
    o.csp_schedule_length = cfg.max_len;
  }
  o.layer_index = index, o.num_layers = cfg.depth;
  return o;
}

LraMega::LraMega(const LraConfig& cfg) : LraModel("LraMega", cfg) {
  MIXGRAD_CHECK(cfg_.model == "mega", "LraMega: the config is of model family {}, not mega", cfg_.model);
  cfg_.validate();
  embed_ = register_module("embed", std::make_shared<LraInputEmbedding>(cfg_));
  layers_ = register_module("layers", std::make_shared<nn::MegaBlocks>());
  for (int64_t i = 0; i < cfg_.depth; ++i) layers_->push_back(std::make_shared<nn::MegaBlock>(mega_options(cfg_, i)));
  if (cfg_.prenorm)
    final_norm_ =
        register_module("final_norm", std::make_shared<nn::SequenceNorm>(cfg_.norm, cfg_.embed_dim, cfg_.ln_eps));
  head_ = register_module("head", std::make_shared<LraMegaHead>(cfg_, cfg_.embed_dim));
  if (cfg_.mixer == "csp") seq_multiple_ = mega_options(cfg_, 0).csp_k;
}

Tensor LraMega::encode(const Tensor& tokens, const Tensor& lengths) {
  MIXGRAD_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.size(1) >= 1 && tokens.size(1) <= cfg_.max_len,
                "LraMega: expected tokens [B, L] with 1 <= L <= max_len = {}, got {}", cfg_.max_len,
                tokens.defined() ? shape_str(tokens.shape()) : std::string("undefined"));
  const int64_t b = tokens.size(0), d = cfg_.embed_dim;
  check_lengths("LraMega", lengths, b, tokens.device(), 1, tokens.size(1));
  Tensor x = dropout(embed_->forward(tokens), cfg_.dropout, is_training());  // [B, L, d]
  // CSP sorts groups of K: right-pad to a multiple (the extra positions are padding like any other).
  const int64_t n0 = x.size(1), n = (n0 + seq_multiple_ - 1) / seq_multiple_ * seq_multiple_;
  if (n != n0) x = cat({x, zeros({b, n - n0, d}, TensorOptions(x.dtype(), x.device()))}, 1);
  x = layers_->forward(zero_padding(x, lengths), lengths);
  if (final_norm_) x = final_norm_->forward(x, lengths);
  return masked_mean(x, lengths);  // pads are left out: the same as zeroing them first
}

Tensor LraMega::forward(const Tensor& tokens, const Tensor& lengths, const Tensor& tokens2, const Tensor& lengths2) {
  const Tensor u = encode(tokens, lengths);
  if (cfg_.dual == "none") {
    MIXGRAD_CHECK(!tokens2.defined(), "LraMega: a second document was given to a single-input model");
    return head_->forward(u);
  }
  MIXGRAD_CHECK(tokens2.defined() && lengths2.defined(), "LraMega: the dual encoder needs two documents");
  return head_->forward(u, encode(tokens2, lengths2));
}

std::string LraMega::describe() const {
  const LraConfig& c = cfg_;
  std::string s = fmt::format(
      "  mega{}: {} {} of length <= {}, dim {}, {} blocks, z {}, v {}, FFN {}, EMA dim {} (truncation {}), {} {}, "
      "{} classes\n",
      c.mixer == "csp" ? " (CSP-MEGA)" : "", c.input == "pixels" ? "real-valued pixels" : "tokens",
      c.input == "pixels" ? "" : fmt::format("(vocab {})", c.vocab_size), c.max_len, c.embed_dim, c.depth, c.zdim,
      c.hdim, c.mlp_dim, c.ema_ndim, c.truncation > 0 ? std::to_string(c.truncation) : std::string("none"),
      c.prenorm ? "pre-norm" : "post-norm", c.norm, c.num_classes);
  if (c.mixer == "csp") {
    const nn::MegaOptions o = mega_options(c, 0);
    s += fmt::format(
        "  mixer csp: O = CSP(V) over v = {} channels (K {}, {} schedule over N_s = {}, per-sample lengths); Q, K, "
        "the z columns of mx_proj and rel_pos_bias are not created\n",
        c.hdim, o.csp_k, o.csp_schedule, o.csp_schedule_length);
  } else {
    s += fmt::format("  mixer gated: {} attention, {}, relative position bias over {} positions\n", c.attn_fn,
                     c.chunk > 0 ? fmt::format("chunks of {}", c.chunk) : std::string("full"),
                     c.chunk > 0 ? c.chunk : c.max_len);
  }
  s += fmt::format("  masked-mean pooling, dropout {} (hidden {}), norm eps {}, head {} -> {}{}\n", c.dropout,
                   c.hidden_dropout, c.ln_eps, c.head_dim > 0 ? c.head_dim : c.mlp_dim, c.num_classes,
                   c.dual != "none" ? fmt::format(", dual encoder ({})", c.dual) : "");
  return s;
}

}  // namespace mixgrad::models
