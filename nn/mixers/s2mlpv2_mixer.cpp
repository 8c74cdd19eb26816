// S2-MLPv2's S2Attention token mixer (specs/mixers.md §1.3): construction checks and the forward.
#include "nn/mixers/s2mlpv2_mixer.h"

namespace mixgrad::nn {

std::vector<MixerOptionSpec> s2mlpv2_mixer_options() { return {}; }

S2SplitAttentionWeights::S2SplitAttentionWeights(int64_t channels) : Module("S2SplitAttention") {
  mlp1 = register_module("mlp1", std::make_shared<Linear>(channels, channels, false));
  mlp2 = register_module("mlp2", std::make_shared<Linear>(channels, 3 * channels, false));
}

S2MlpV2Mixer::S2MlpV2Mixer(const MixerContext& ctx)
    : TokenMixer("S2MlpV2Mixer"),
      dim(ctx.dim),
      inner_dim(ctx.inner_dim > 0 ? ctx.inner_dim : ctx.dim),
      proj_drop(ctx.proj_drop) {
  MIXGRAD_CHECK(dim > 0, "S2MlpV2Mixer: dim must be positive, got {}", dim);
  MIXGRAD_CHECK(ctx.grid_h > 0 && ctx.grid_w > 0,
                "S2MlpV2Mixer (mixer s2mlpv2): needs the tokens' 2-D grid (grid_h × grid_w, e.g. image patches or the "
                "pixels of an LRA image task) to shift along rows and columns, got grid {} × {}; a sequence without "
                "a grid (LRA text tasks) cannot use this mixer",
                ctx.grid_h, ctx.grid_w);
  const int64_t cls = ctx.has_cls_token ? 1 : 0, capacity = cls + ctx.grid_h * ctx.grid_w;
  MIXGRAD_CHECK(ctx.seq_len <= capacity,
                "S2MlpV2Mixer (mixer s2mlpv2): seq_len = {} tokens do not fit the {} × {} grid{} ({} tokens)",
                ctx.seq_len, ctx.grid_h, ctx.grid_w, cls ? " plus the class token" : "", capacity);
  MIXGRAD_CHECK(proj_drop >= 0 && proj_drop < 1, "S2MlpV2Mixer: proj_drop must be in [0, 1), got {}", proj_drop);
  MIXGRAD_CHECK(!ctx.causal,
                "S2MlpV2Mixer (mixer s2mlpv2): a causal context is not supported (the shifts read the next row and "
                "column, and the split attention sums over every token)");
  grid = S2Grid{ctx.grid_h, ctx.grid_w, ctx.has_cls_token};
  mlp1 = register_module("mlp1", std::make_shared<Linear>(dim, 3 * inner_dim, true));
  split_attention = register_module("split_attention", std::make_shared<S2SplitAttentionWeights>(inner_dim));
  mlp2 = register_module("mlp2", std::make_shared<Linear>(inner_dim, dim, true));
}

S2SplitAttention S2MlpV2Mixer::split_attention_of(const Tensor& x, const Tensor& lengths) {
  MIXGRAD_CHECK(x.defined() && x.dim() == 3 && x.size(2) == dim, "S2MlpV2Mixer: expected input [B, N, {}], got {}", dim,
                x.defined() ? shape_str(x.shape()) : "undefined");
  const int64_t capacity = (grid.cls_token ? 1 : 0) + grid.h * grid.w;
  MIXGRAD_CHECK(
      x.size(1) <= capacity, "S2MlpV2Mixer: input {} has N = {} tokens, more than the {} × {} grid{} holds ({})",
      shape_str(x.shape()), x.size(1), grid.h, grid.w, grid.cls_token ? " plus the class token" : "", capacity);
  return s2_split_attention(mlp1->forward(x), split_attention->mlp1->weight, split_attention->mlp2->weight, grid,
                            lengths);
}

Tensor S2MlpV2Mixer::forward(const Tensor& x, const Tensor& lengths) {
  return dropout(mlp2->forward(split_attention_of(x, lengths).out), proj_drop, is_training());
}

std::shared_ptr<TokenMixer> make_s2mlpv2_mixer(const MixerContext& ctx) { return std::make_shared<S2MlpV2Mixer>(ctx); }

std::optional<double> S2MlpV2Mixer::forward_flops(int64_t n) const {
  return double(n) * (linear_flops_per_row(*mlp1) + linear_flops_per_row(*mlp2)) +
         linear_flops_per_row(*split_attention);
}

}  // namespace mixgrad::nn
