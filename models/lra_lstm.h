// The LRA LSTM baseline (specs/lra.md §6.5, MEGA's lstm_lra_encoder): the MEGA-style input embedding (tokens
// N(0, d^-1/2) with a zero pad row, pixels through a real-number embedding), input dropout, a bidirectional
// multi-layer nn::LSTM (hidden lstm_hidden per direction, depth layers, hidden_dropout between layers, xavier-uniform
// weights and zero biases) that respects each sample's length, pooling "mean" (sum of the outputs over the valid
// positions / length, MEGA's "mp") or "last" (the last layer's final forward and backward states), and MEGA's head
// (§6.2) on width 2·lstm_hidden; Retrieval encodes both documents with the same weights.
#pragma once
#include <memory>
#include <string>

#include "models/lra_model.h"
#include "nn/lstm.h"

namespace mixgrad::models {

class LraLstm : public LraModel {
 public:
  explicit LraLstm(const LraConfig& cfg);
  Tensor encode(const Tensor& tokens, const Tensor& lengths) override;  // [B, 2·lstm_hidden]
  Tensor forward(const Tensor& tokens, const Tensor& lengths, const Tensor& tokens2 = Tensor(),
                 const Tensor& lengths2 = Tensor()) override;
  std::string describe() const override;

 private:
  std::shared_ptr<LraInputEmbedding> embed_;
  std::shared_ptr<nn::LSTM> lstm_;
  std::shared_ptr<LraMegaHead> head_;
};

// About how many parameters LraLstm builds for `cfg` (embedding, LSTM, head).
double lra_lstm_parameters(const LraConfig& cfg);

}  // namespace mixgrad::models
