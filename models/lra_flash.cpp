// LraFlash: the GAU encoder, pooling and head of the FLASH family (models/lra_flash.h).
#include "models/lra_flash.h"

#include <fmt/format.h>

#include "engine/gated_attention.h"
#include "engine/sequence.h"

namespace mixgrad::models {

LraFlash::LraFlash(const LraConfig& cfg) : LraModel("LraFlash", cfg) {
  const int64_t d = cfg.embed_dim;
  embed_ = register_module("embed", std::make_shared<LraInputEmbedding>(cfg));
  const nn::GAUOptions gau{cfg.hdim, cfg.zdim, parse_gated_attention_fn(cfg.attn_fn), cfg.chunk, cfg.max_len};
  layers_ = register_module("layers", std::make_shared<nn::GAULayers>());
  for (int64_t i = 0; i < cfg.depth; ++i)
    layers_->push_back(std::make_shared<nn::GAULayer>(d, gau, cfg.norm, cfg.ln_eps, cfg.dropout));
  final_norm_ = register_module("final_norm", std::make_shared<nn::SequenceNorm>(cfg.norm, d, cfg.ln_eps));
  head_ = register_module("head", std::make_shared<LraMegaHead>(cfg, d));
}

Tensor LraFlash::encode(const Tensor& tokens, const Tensor& lengths) {
  MIXGRAD_CHECK(tokens.dim() == 2 && tokens.size(1) <= cfg_.max_len,
                "LraFlash: tokens {} must be [B, L] with L <= max_len {}", shape_str(tokens.shape()), cfg_.max_len);
  Tensor x = zero_padding(dropout(embed_->forward(tokens), cfg_.dropout, is_training()), lengths);
  x = final_norm_->forward(layers_->forward(x, lengths), lengths);
  return masked_mean(x, lengths);  // the pads' rows are left out of the sum
}

Tensor LraFlash::forward(const Tensor& tokens, const Tensor& lengths, const Tensor& tokens2, const Tensor& lengths2) {
  const bool dual = cfg_.dual != "none";
  MIXGRAD_CHECK(tokens2.defined() == dual && lengths2.defined() == dual,
                "LraFlash: dual \"{}\" takes {} document(s), got {}", cfg_.dual, dual ? 2 : 1,
                tokens2.defined() ? 2 : 1);
  const Tensor u = encode(tokens, lengths);
  return dual ? head_->forward(u, encode(tokens2, lengths2)) : head_->forward(u);
}

std::string LraFlash::describe() const {
  const std::string attention =
      cfg_.chunk > 0 ? fmt::format("within chunks of {} positions", cfg_.chunk) : std::string("over the whole sequence");
  return fmt::format(
      "  flash: {} GAU layers x + Dropout(GAU({}(x))), e {}, s {}, {} attention {} (quadratic; not FLASH's "
      "mixed-chunk linear attention), relative bias of {} offsets\n",
      cfg_.depth, cfg_.norm, cfg_.hdim, cfg_.zdim, cfg_.attn_fn, attention,
      2 * (cfg_.chunk > 0 ? cfg_.chunk : cfg_.max_len) - 1);
}

}  // namespace mixgrad::models
