// The token_shift op as a token mixer: Linear D -> I, `shift_steps` token shifts with shared learned gates, Linear
// I -> D. Its registry entry (name, summary, typed options, factory) is what main.cpp hands to nn::register_mixer.
#pragma once
#include <memory>

#include "nn/layers.h"
#include "nn/mixer.h"

namespace custom_layer {

class TokenShiftMixer : public mixgrad::nn::TokenMixer {
 public:
  // Uses ctx.dim, ctx.inner_dim (0 = dim) and the option shift_steps.
  explicit TokenShiftMixer(const mixgrad::nn::MixerContext& ctx);
  // x [B, N, D] -> [B, N, D]; with lengths, padded tokens are zeroed before every shift, so they never reach a
  // valid token and get a zero gradient.
  mixgrad::Tensor forward(const mixgrad::Tensor& x, const mixgrad::Tensor& lengths = mixgrad::Tensor()) override;

  std::shared_ptr<mixgrad::nn::Linear> in_proj, out_proj;
  mixgrad::Tensor gate_fwd, gate_bwd;  // [I] logits of the left / right neighbour's share
  int64_t dim, inner_dim, steps;
};

// {"token_shift", summary, options {shift_steps}, factory}.
mixgrad::nn::MixerInfo token_shift_mixer_info();

}  // namespace custom_layer
