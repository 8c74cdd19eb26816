// MLP, the pre-norm Transformer block and the block list.
#include "nn/transformer.h"

namespace mixgrad::nn {

MLP::MLP(int64_t dim, int64_t hidden, double drop_, std::string gelu_) : Layer("MLP"), drop(drop_), gelu(gelu_) {
  MIXGRAD_CHECK(drop >= 0 && drop < 1, "MLP: dropout must be in [0, 1), got {}", drop);
  MIXGRAD_CHECK(gelu == "none" || gelu == "tanh", "MLP: gelu must be \"none\" or \"tanh\", got \"{}\"", gelu);
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim));
}

Tensor MLP::forward(const Tensor& x) {
  Tensor h = dropout(mixgrad::gelu(fc1->forward(x), gelu), drop, is_training());
  return dropout(fc2->forward(h), drop, is_training());
}

TransformerBlock::TransformerBlock(const std::string& mixer_name, const MixerContext& ctx, int64_t mlp_hidden,
                                   double mlp_drop, double ln_eps, const std::string& gelu)
    : Module("TransformerBlock") {
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(ctx.dim, ln_eps));
  attn = register_module("attn", make_mixer(mixer_name, ctx));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(ctx.dim, ln_eps));
  mlp = register_module("mlp", std::make_shared<MLP>(ctx.dim, mlp_hidden, mlp_drop, gelu));
}

Tensor TransformerBlock::forward(const Tensor& x, const Tensor& lengths) {
  Tensor h = add(x, attn->forward(norm1->forward(x), lengths));
  return add(h, mlp->forward(norm2->forward(h)));
}

std::shared_ptr<TransformerBlock> TransformerBlocks::push_back(std::shared_ptr<TransformerBlock> block) {
  blocks_.push_back(block);
  return register_module(std::to_string(blocks_.size() - 1), std::move(block));
}

Tensor TransformerBlocks::forward(const Tensor& x, const Tensor& lengths) {
  Tensor h = x;
  for (auto& b : blocks_) h = b->forward(h, lengths);
  return h;
}

}  // namespace mixgrad::nn
