// The token-shift mixer and its registry entry.
#include "token_shift_mixer.h"

#include "engine/sequence.h"
#include "token_shift.h"

namespace custom_layer {

namespace nn = mixgrad::nn;
using mixgrad::Tensor;

TokenShiftMixer::TokenShiftMixer(const nn::MixerContext& ctx)
    : nn::TokenMixer("TokenShiftMixer"),
      dim(ctx.dim),
      inner_dim(ctx.inner_dim > 0 ? ctx.inner_dim : ctx.dim),
      steps(ctx.options.integer("shift_steps")) {
  MIXGRAD_CHECK(dim > 0, "TokenShiftMixer: dim must be positive, got {}", dim);
  in_proj = register_module("in_proj", std::make_shared<nn::Linear>(dim, inner_dim));
  out_proj = register_module("out_proj", std::make_shared<nn::Linear>(inner_dim, dim));
  // tanh(0.5) ≈ 0.46: every token starts with a fair share of its neighbours.
  gate_fwd = register_parameter("gate_fwd", mixgrad::full({inner_dim}, 0.5));
  gate_bwd = register_parameter("gate_bwd", mixgrad::full({inner_dim}, 0.5));
}

Tensor TokenShiftMixer::forward(const Tensor& x, const Tensor& lengths) {
  MIXGRAD_CHECK(x.dim() == 3 && x.size(2) == dim, "TokenShiftMixer: expected input [B, N, {}], got {}", dim,
                mixgrad::shape_str(x.shape()));
  Tensor h = in_proj->forward(x);
  for (int64_t s = 0; s < steps; ++s) {
    if (lengths.defined()) h = mixgrad::zero_padding(h, lengths);
    h = token_shift(h, gate_fwd, gate_bwd);
  }
  if (lengths.defined()) h = mixgrad::zero_padding(h, lengths);
  return out_proj->forward(h);
}

nn::MixerInfo token_shift_mixer_info() {
  // Fields in declaration order: name, type, default, help, choices (none), inclusive range.
  const nn::MixerOptionSpec steps{"shift_steps",
                                  nn::MixerOptionSpec::Type::integer,
                                  "2",
                                  "token shifts in a row (each reaches one token further each way)",
                                  {},
                                  1,
                                  8};
  return {"token_shift",
          "learned two-way token shift (examples/custom_layer)",
          {steps},
          [](const nn::MixerContext& ctx) -> std::shared_ptr<nn::TokenMixer> {
            return std::make_shared<TokenShiftMixer>(ctx);
          }};
}

}  // namespace custom_layer
