// The FLASH family of the LRA app (`lra train --model flash`, specs/lra.md §6.4): a stack of GAU layers (nn/gau.h)
// with FULL or CHUNKED quadratic attention (relu² by default) — not FLASH's mixed-chunk attention (quadratic inside
// chunks plus linear attention across them), whose chunk sizes and extra Q/K transforms the spec leaves unconfirmed.
// The MEGA repository's `flash` layer is likewise GAU with quadratic attention.
//
// Encoder as MEGA's (§6.2 "Encoder"): token embedding ~ N(0, d^-1/2) with a zero pad row, or a real-number embedding
// for pixels; no absolute positions (the GAU's relative bias b_rel carries position); embedding dropout; pads zeroed;
// N layers x + Dropout(GAU(Norm(x))) (always pre-norm); a final Norm; masked-mean pooling; MEGA's head; Retrieval
// through the shared encoder and [u, v, u⊙v, u−v] or [u, v]. Config fields: embed_dim d, hdim e (expansion), zdim s,
// depth, norm, attn_fn, chunk, dropout, head_dim (cls_out), ln_eps (the norms' eps).
#pragma once
#include <memory>
#include <string>

#include "models/lra_model.h"
#include "nn/gau.h"
#include "nn/norms.h"

namespace mixgrad::models {

class LraFlash : public LraModel {
 public:
  explicit LraFlash(const LraConfig& cfg);
  Tensor encode(const Tensor& tokens, const Tensor& lengths) override;
  Tensor forward(const Tensor& tokens, const Tensor& lengths, const Tensor& tokens2 = Tensor(),
                 const Tensor& lengths2 = Tensor()) override;
  std::string describe() const override;

 private:
  std::shared_ptr<LraInputEmbedding> embed_;
  std::shared_ptr<nn::GAULayers> layers_;
  std::shared_ptr<nn::SequenceNorm> final_norm_;
  std::shared_ptr<LraMegaHead> head_;
};

}  // namespace mixgrad::models
