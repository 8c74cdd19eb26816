// The LRA model factory and the input embedding and head shared by the MEGA-style families.
#include "models/lra_model.h"

#include <cmath>

#include "models/lra_lstm.h"
#include "models/lra_mega.h"
#include "models/lra_flash.h"
#include "models/lra_transformer.h"
#include "nn/init.h"

namespace mixgrad::models {

std::unique_ptr<LraModel> make_lra_model(const LraConfig& cfg) {
  (void)lra_family(cfg.model, true);  // unknown or not built: the error lists the families
  cfg.validate();
  if (cfg.model == "transformer") return std::make_unique<LraTransformer>(cfg);
  if (cfg.model == "mega") return std::make_unique<LraMega>(cfg);
  if (cfg.model == "lstm") return std::make_unique<LraLstm>(cfg);
  if (cfg.model == "flash") return std::make_unique<LraFlash>(cfg);
  throw Error(fmt::format("make_lra_model: no constructor for the LRA model family \"{}\"", cfg.model));
}

LraInputEmbedding::LraInputEmbedding(const LraConfig& cfg)
    : Module("LraInputEmbedding"),
      pixels_(cfg.input == "pixels"),
      pixel_mean_(cfg.pixel_mean),
      pixel_std_(cfg.pixel_std) {
  const int64_t d = cfg.embed_dim;
  if (pixels_) {  // MEGA's RealNumberEmbedding: w ~ N(0, 1), b ~ N(0, 0.1)
    weight_ = register_parameter("weight", empty({d}));
    bias_ = register_parameter("bias", empty({d}));
    nn::init::normal_(weight_, 0.0, 1.0);
    nn::init::normal_(bias_, 0.0, 0.1);
    return;
  }
  weight_ = register_parameter("weight", empty({cfg.vocab_size, d}));
  nn::init::normal_(weight_, 0.0, 1.0 / std::sqrt(double(d)));
  Tensor pad = weight_.slice0(0, 1);
  nn::init::zeros_(pad);
}

Tensor LraInputEmbedding::forward(const Tensor& tokens) {
  if (!pixels_) {
    MIXGRAD_CHECK(tokens.dtype() == DType::i64, "LraInputEmbedding: token ids must be int64, got {}", tokens.dtype());
    return embedding(weight_, tokens);
  }
  MIXGRAD_CHECK(is_floating(tokens.dtype()), "LraInputEmbedding: pixel intensities must be floating point, got {}",
                tokens.dtype());
  const int64_t d = weight_.size(0);
  const Tensor x = add_scalar(mul_scalar(tokens, 1.0 / (255.0 * pixel_std_)), -pixel_mean_ / pixel_std_);
  Shape s = x.shape(), row(x.dim() + 1, 1);
  s.push_back(1);
  row.back() = d;
  return add(mul(x.reshape(s), weight_.reshape(row)), bias_.reshape(row));
}

Tensor pair_features(const Tensor& u, const Tensor& v, const std::string& dual) {
  MIXGRAD_CHECK(dual == "nli" || dual == "concat", "pair_features: dual must be nli or concat, got \"{}\"", dual);
  return dual == "nli" ? cat({u, v, mul(u, v), sub(u, v)}, 1) : cat({u, v}, 1);
}

LraMegaHead::LraMegaHead(const LraConfig& cfg, int64_t width)
    : Module("LraMegaHead"), dual_(cfg.dual), dropout_(cfg.dropout) {
  const int64_t in = cfg.dual == "nli" ? 4 * width : cfg.dual == "concat" ? 2 * width : width;
  const int64_t hidden = cfg.head_dim > 0 ? cfg.head_dim : cfg.mlp_dim;
  dense_ = register_module("dense", std::make_shared<nn::Linear>(in, hidden));
  out_proj_ = register_module("out_proj", std::make_shared<nn::Linear>(hidden, cfg.num_classes, false));
  nn::init::xavier_uniform_(dense_->weight);
  nn::init::zeros_(dense_->bias);
  nn::init::xavier_uniform_(out_proj_->weight);
}

Tensor LraMegaHead::forward(const Tensor& u, const Tensor& v) {
  MIXGRAD_CHECK(v.defined() == (dual_ != "none"), "LraMegaHead: {} pooled document(s) given, the head takes {}",
                v.defined() ? 2 : 1, dual_ != "none" ? 2 : 1);
  const Tensor feats = v.defined() ? pair_features(u, v, dual_) : u;
  return out_proj_->forward(gelu(dropout(dense_->forward(feats), dropout_, is_training())));
}

}  // namespace mixgrad::models
