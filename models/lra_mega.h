// The MEGA encoder for the LRA tasks (specs/lra.md §6.2) and CSP-MEGA (`--model mega --mixer csp`, §6.3 and csp.md
// §10): token embedding N(0, d^-1/2) with a zero pad row, or a RealNumberEmbedding for pixels; no absolute
// positions; embedding dropout; pads zeroed; N MEGA blocks; a final norm when pre-norm; masked-mean pooling; MEGA's
// head (models/lra_model.h LraMegaHead); Retrieval: the shared encoder on both documents.
#pragma once
#include <memory>

#include "models/lra_model.h"
#include "nn/mega.h"

namespace mixgrad::models {

class LraMega : public LraModel {
 public:
  explicit LraMega(const LraConfig& cfg);
  Tensor encode(const Tensor& tokens, const Tensor& lengths) override;  // [B, d]
  Tensor forward(const Tensor& tokens, const Tensor& lengths, const Tensor& tokens2 = Tensor(),
                 const Tensor& lengths2 = Tensor()) override;
  std::string describe() const override;

 private:
  std::shared_ptr<LraInputEmbedding> embed_;
  std::shared_ptr<nn::MegaBlocks> layers_;
  std::shared_ptr<nn::SequenceNorm> final_norm_;  // pre-norm only
  std::shared_ptr<LraMegaHead> head_;
  int64_t seq_multiple_ = 1;  // CSP: its sort-group size K (sequences are right-padded to a multiple)
};

// The MEGA layer options of an LRA config's layer `index` (what LraMega builds; the tests build single layers).
nn::MegaOptions mega_options(const LraConfig& cfg, int64_t index);

}  // namespace mixgrad::models
