// The LRA model families behind one interface: LraModel (tokens and lengths in, logits out; the Retrieval dual form
// takes the second document too) and make_lra_model(config), which builds the family the config names. Also the
// pieces the MEGA-style families share (specs/lra.md §6.2): the input embedding and the classifier head.
#pragma once
#include <memory>

#include "models/lra_config.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace mixgrad::models {

class LraModel : public nn::Module {
 public:
  LraModel(std::string type_name, const LraConfig& cfg) : Module(std::move(type_name)), cfg_(cfg) {}
  // tokens [B, L] (int64 ids, or float32 intensities 0..255 for pixels) and lengths int32 [B] (valid tokens, >= 1),
  // both on the model's device, L <= max_len -> the pooled representation [B, width] of one document.
  virtual Tensor encode(const Tensor& tokens, const Tensor& lengths) = 0;
  // logits [B, num_classes]; a dual encoder (config().dual != "none") takes the second document too (same encoder).
  virtual Tensor forward(const Tensor& tokens, const Tensor& lengths, const Tensor& tokens2 = Tensor(),
                         const Tensor& lengths2 = Tensor()) = 0;
  const LraConfig& config() const { return cfg_; }
  // Lines for `lra info` about what this model builds beyond the config's sizes (may be empty).
  virtual std::string describe() const { return ""; }

 protected:
  LraConfig cfg_;
};

// The family cfg.model names (cfg validated first; an unknown family, or one not built yet, is a clear error).
std::unique_ptr<LraModel> make_lra_model(const LraConfig& cfg);

// The input of the MEGA-style encoders (§6.2 "Encoder"): tokens through an embedding table ~ N(0, d^-1/2) whose pad
// row (id 0) starts at zero; pixels (intensities 0..255) normalised to (v/255 − mean)/std and through a
// RealNumberEmbedding. Parameters "weight" (tokens: [vocab, d]; pixels: [d]) and, for pixels, "bias".
class LraInputEmbedding : public nn::Module {
 public:
  explicit LraInputEmbedding(const LraConfig& cfg);
  Tensor forward(const Tensor& tokens);  // [B, L] -> [B, L, d]

 private:
  bool pixels_;
  double pixel_mean_, pixel_std_;
  Tensor weight_, bias_;
};

// MEGA's classifier (§6.2 "Head"): logits = Linear(cls_out → classes, no bias)(GELU(Dropout(Linear(in → cls_out)))),
// in = width, or for Retrieval 4·width ([u, v, u⊙v, u−v], dual "nli") or 2·width ([u, v], "concat"); cls_out =
// head_dim (0 = mlp_dim); xavier-uniform weights, zero bias. Parameters "dense.weight/bias", "out_proj.weight".
class LraMegaHead : public nn::Module {
 public:
  LraMegaHead(const LraConfig& cfg, int64_t width);
  // u [B, width] (and v for a dual encoder) -> logits [B, classes].
  Tensor forward(const Tensor& u, const Tensor& v = Tensor());

 private:
  std::string dual_;
  double dropout_;
  std::shared_ptr<nn::Linear> dense_, out_proj_;
};

// The features of a pair of pooled documents: [u, v, u⊙v, u−v] ("nli") or [u, v] ("concat").
Tensor pair_features(const Tensor& u, const Tensor& v, const std::string& dual);

}  // namespace mixgrad::models
