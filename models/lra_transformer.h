// The Long Range Arena Transformer encoder (specs/lra.md §6.1): token or real-valued pixel embeddings, sinusoidal or
// learned positions, pre-LN blocks with any registered token mixer, CLS or masked-mean pooling, the classifier head,
// and the Retrieval dual encoder ([u, v, u⊙v, u−v] or [u, v] into a three-layer head). As LRA's flax code: no qkv
// bias, xavier-uniform q / k / v / output / MLP weights (q, k and v each as its own matrix), tanh-GELU, LayerNorm eps
// 1e-6, a lecun-normal head. One difference: the attention's output projection has a bias (LRA's has none; D
// parameters per block), since mixgrad's mixers all end in one.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/module.h"
#include "nn/transformer.h"

namespace mixgrad::models {

struct LraConfig {
  std::string task = "listops";  // recorded for the app; the model itself only uses the sizes below
  std::string input = "tokens";  // "tokens" (an embedding table) or "pixels" (e = x·w + b, x = (v/255 − mean)/std)
  int64_t vocab_size = 16;       // tokens: ids in [0, vocab_size), 0 = padding
  double pixel_mean = 0.5, pixel_std = 0.5;
  int64_t max_len = 2000;  // the longest input sequence (without the class token)
  int64_t embed_dim = 512, depth = 4, num_heads = 8, qkv_dim = 0, mlp_dim = 1024;  // qkv_dim 0 = embed_dim
  std::string pool = "cls";        // "cls" (a learned vector prepended; its final state is pooled) or "mean" (masked)
  std::string pos = "sinusoidal";  // "sinusoidal", "learned" or "none"
  double dropout = 0.1, attn_dropout = 0.1, ln_eps = 1e-6;
  std::string mixer = "softmax";
  std::map<std::string, std::string> mixer_options;  // as given; resolved against the mixer's declaration
  bool causal = false;
  int64_t grid_h = 0, grid_w = 0;  // pixel tasks: the image the sequence is read from (for grid-aware mixers)
  int64_t num_classes = 10;
  std::string dual = "none";  // Retrieval: "nli" ([u, v, u⊙v, u−v]) or "concat" ([u, v]); "none" = one input
  int64_t head_dim = 0;       // classifier hidden width; 0 = mlp_dim

  int64_t seq_len() const { return max_len + (pool == "cls" ? 1 : 0); }         // tokens the blocks see at most
  std::map<std::string, std::string> to_metadata() const;                       // "arch" = "lra-transformer"
  static LraConfig from_metadata(const std::map<std::string, std::string>& m);  // errors name the key
  void validate() const;             // clear errors naming the fields, incl. the bounds of models/config_metadata.h
  double approx_parameters() const;  // about how many parameters (and position-table entries) it builds
  // The mixer options every app default and `mixer_options` resolve to (what checkpoints record).
  std::map<std::string, std::string> resolved_mixer_options() const;
};

class LraTransformer : public nn::Module {
 public:
  explicit LraTransformer(const LraConfig& cfg);
  // tokens [B, L] (int64 ids, or float32 intensities 0..255 for pixels) and lengths int32 [B] (valid tokens, >= 1),
  // both on the model's device, L <= max_len -> the pooled representation [B, embed_dim].
  Tensor encode(const Tensor& tokens, const Tensor& lengths);
  // logits [B, num_classes]; a dual encoder takes the second document too (same encoder weights).
  Tensor forward(const Tensor& tokens, const Tensor& lengths, const Tensor& tokens2 = Tensor(),
                 const Tensor& lengths2 = Tensor());
  const LraConfig& config() const { return cfg_; }

 private:
  Tensor embed(const Tensor& tokens);
  Tensor positions(int64_t n, DType dtype, Device device);  // [1, n, D]

  LraConfig cfg_;
  std::shared_ptr<nn::Embedding> embed_;                  // tokens
  std::shared_ptr<nn::RealNumberEmbedding> pixel_embed_;  // pixels
  Tensor cls_token_, pos_embed_;                          // [1, 1, D] (pool cls), [1, seq_len, D] (pos learned)
  Tensor sinusoid_;                                       // [seq_len, D] on the CPU (pos sinusoidal); not a parameter
  Tensor sinusoid_device_;                                // its copy on the model's device, made on first use
  std::shared_ptr<nn::TransformerBlocks> blocks_;
  std::shared_ptr<nn::LayerNorm> norm_;
  std::shared_ptr<nn::Sequential> head_;
  int64_t seq_multiple_ = 1;
};

// LRA's fixed sinusoidal table [n, d] (common_layers.sinusoidal_init): row p holds sin(p·ω_i) in column 2i and
// cos(p·ω_i) in column 2i + 1, ω_i = 10000^(−2i/d) (d even).
Tensor sinusoidal_positions(int64_t n, int64_t d);

}  // namespace mixgrad::models
