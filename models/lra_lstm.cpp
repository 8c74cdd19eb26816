// LraLstm: the LSTM baseline's encoder, pooling and head (specs/lra.md §6.5).
#include "models/lra_lstm.h"

#include "engine/sequence.h"
#include "nn/init.h"

namespace mixgrad::models {

LraLstm::LraLstm(const LraConfig& cfg) : LraModel("LraLstm", cfg) {
  embed_ = register_module("embed", std::make_shared<LraInputEmbedding>(cfg));
  lstm_ = register_module(
      "lstm", std::make_shared<nn::LSTM>(cfg.embed_dim, cfg.lstm_hidden, cfg.depth, true, cfg.hidden_dropout));
  for (int64_t k = 0; k < cfg.depth; ++k)
    for (LstmDirection w : lstm_->layer(k)) {  // handles share the parameters' storage
      nn::init::xavier_uniform_(w.w_ih);
      nn::init::xavier_uniform_(w.w_hh);
      nn::init::zeros_(w.b_ih);
      nn::init::zeros_(w.b_hh);
    }
  head_ = register_module("head", std::make_shared<LraMegaHead>(cfg, 2 * cfg.lstm_hidden));
}

Tensor LraLstm::encode(const Tensor& tokens, const Tensor& lengths) {
  MIXGRAD_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.size(1) <= cfg_.max_len,
                "LraLstm: tokens must be [B, L] with L <= max_len = {}, got {}", cfg_.max_len,
                tokens.defined() ? shape_str(tokens.shape()) : std::string("(undefined)"));
  const Tensor x = dropout(embed_->forward(tokens), cfg_.dropout, is_training());
  const nn::LSTM::Output out = lstm_->forward(x, lengths);
  if (cfg_.lstm_pool == "mean") return masked_mean(out.y, lengths);
  // h_n is [layers·2, B, H], layer-major with the forward direction first: the last layer's two states.
  const Tensor last = out.h_n.slice0(2 * (cfg_.depth - 1), 2);  // [2, B, H]
  return transpose(last, 0, 1).reshape({tokens.size(0), 2 * cfg_.lstm_hidden});
}

Tensor LraLstm::forward(const Tensor& tokens, const Tensor& lengths, const Tensor& tokens2, const Tensor& lengths2) {
  const bool dual = cfg_.dual != "none";
  MIXGRAD_CHECK(tokens2.defined() == dual, "LraLstm: {} document(s) given, the model (dual = {}) takes {}",
                tokens2.defined() ? 2 : 1, cfg_.dual, dual ? 2 : 1);
  const Tensor u = encode(tokens, lengths);
  return head_->forward(u, dual ? encode(tokens2, lengths2) : Tensor());
}

std::string LraLstm::describe() const {
  return fmt::format(
      "bidirectional LSTM: {} layer(s) x 2 directions, hidden {} per direction, pooling {} ({})\n", cfg_.depth,
      cfg_.lstm_hidden, cfg_.lstm_pool,
      cfg_.lstm_pool == "mean" ? "masked mean of the outputs" : "the last layer's final forward and backward states");
}

double lra_lstm_parameters(const LraConfig& c) {
  const double d = double(c.embed_dim), h = double(c.lstm_hidden);
  double lstm = 0;
  for (int64_t k = 0; k < c.depth; ++k) {
    const double in = k == 0 ? d : 2 * h;
    lstm += 2 * (4 * h * in + 4 * h * h + 8 * h);
  }
  const double embedding = c.input == "tokens" ? double(c.vocab_size) * d : 2 * d;
  const double width = 2 * h, head_in = c.dual == "nli" ? 4 * width : c.dual == "concat" ? 2 * width : width;
  const double hidden = double(c.head_dim > 0 ? c.head_dim : c.mlp_dim);
  return embedding + lstm + head_in * hidden + hidden + hidden * double(c.num_classes);
}

}  // namespace mixgrad::models
