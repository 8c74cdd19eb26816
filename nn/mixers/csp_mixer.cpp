// CSP token mixer (specs/csp.md §9.1): its options, the shift table, and the forward.
#include "nn/mixers/csp_mixer.h"

#include "engine/csp.h"

namespace mixgrad::nn {

std::vector<MixerOptionSpec> csp_mixer_options() {
  using T = MixerOptionSpec::Type;
  return {
      {"csp_k", T::choice, "2", "sort-group size K (every sequence length must be a multiple of K)", {"2", "4", "8"}},
      {"csp_schedule",
       T::choice,
       "constant",
       "channel shifts: constant step (CSP-ViT) or exponential across layers (CSP-MEGA)",
       {"constant", "exponential"}},
  };
}

CspMixer::CspMixer(const MixerContext& ctx)
    : TokenMixer("CspMixer"),
      dim(ctx.dim),
      inner_dim(ctx.inner_dim > 0 ? ctx.inner_dim : ctx.dim),
      seq_len(ctx.seq_len), k(2), schedule("constant"), proj_drop(ctx.proj_drop) {
  const MixerOptions opt = ctx.options.empty() ? resolve_mixer_options("csp", {}) : ctx.options;
  MIXGRAD_CHECK(dim > 0, "CspMixer: dim must be positive, got {}", dim);
  MIXGRAD_CHECK(seq_len > 0, "CspMixer: seq_len (the number of tokens N, schedule length) must be positive, got {}",
                seq_len);
  MIXGRAD_CHECK(proj_drop >= 0 && proj_drop < 1, "CspMixer: proj_drop must be in [0, 1), got {}", proj_drop);
  MIXGRAD_CHECK(!ctx.causal,
                "CspMixer: a causal context is not supported (CSP sorts groups of tokens, so every token sees its "
                "group's later tokens)");
  k = int(opt.integer("csp_k"));
  schedule = opt.text("csp_schedule");
  if (schedule == "exponential") {
    MIXGRAD_CHECK(ctx.num_layers >= 1 && ctx.layer_index >= 0 && ctx.layer_index < ctx.num_layers,
                  "CspMixer: layer_index = {} must be in [0, num_layers = {}) for csp_schedule = exponential",
                  ctx.layer_index, ctx.num_layers);
    shifts = csp_shifts_exponential(ctx.layer_index, ctx.num_layers, inner_dim, seq_len);
  } else {
    shifts = csp_shifts_constant(inner_dim, seq_len, k);
  }
  v = register_module("v", std::make_shared<Linear>(dim, inner_dim, false));
  proj = register_module("proj", std::make_shared<Linear>(inner_dim, dim, true));
}

Tensor CspMixer::forward(const Tensor& x, const Tensor& lengths) {
  MIXGRAD_CHECK(x.dim() == 3 && x.size(2) == dim, "CspMixer: expected input [B, N, {}], got {}", dim,
                shape_str(x.shape()));
  MIXGRAD_CHECK(x.size(1) % k == 0, "CspMixer: input has N = {} tokens, not a multiple of csp_k K = {} (input {})",
                x.size(1), k, shape_str(x.shape()));
  Tensor h = csp(v->forward(x), shifts, k, lengths);
  return dropout(proj->forward(h), proj_drop, is_training());
}

std::shared_ptr<TokenMixer> make_csp_mixer(const MixerContext& ctx) { return std::make_shared<CspMixer>(ctx); }

std::optional<double> CspMixer::forward_flops(int64_t n) const { return double(n) * linear_flops_per_row(*this); }

}  // namespace mixgrad::nn
