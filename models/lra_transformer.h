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

#include "models/lra_model.h"
#include "nn/layers.h"
#include "nn/transformer.h"

namespace mixgrad::models {

class LraTransformer : public LraModel {
 public:
  explicit LraTransformer(const LraConfig& cfg);
  // tokens [B, L] (int64 ids, or float32 intensities 0..255 for pixels) and lengths int32 [B] (valid tokens, >= 1),
  // both on the model's device, L <= max_len -> the pooled representation [B, embed_dim].
  Tensor encode(const Tensor& tokens, const Tensor& lengths) override;
  // logits [B, num_classes]; a dual encoder takes the second document too (same encoder weights).
  Tensor forward(const Tensor& tokens, const Tensor& lengths, const Tensor& tokens2 = Tensor(),
                 const Tensor& lengths2 = Tensor()) override;

 private:
  Tensor embed(const Tensor& tokens);
  Tensor positions(int64_t n, DType dtype, Device device);  // [1, n, D]

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
