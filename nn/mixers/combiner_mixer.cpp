// Combiner token mixers: options, the qkv split into heads, Combiner attention and the heads merged back.
#include "nn/mixers/combiner_mixer.h"

#include <cmath>
#include <string>

namespace mixgrad::nn {

std::vector<MixerOptionSpec> combiner_mixer_options() {
  return {{"combiner_span",
           MixerOptionSpec::Type::integer,
           "0",
           "span length (Fixed) or row length (Axial, Mixture); 0 = ceil(sqrt(seq_len)); the last span may be shorter",
           {},
           0,
           1 << 20}};
}

CombinerMixer::CombinerMixer(const MixerContext& ctx, CombinerVariant variant)
    : TokenMixer("CombinerMixer"),
      dim(ctx.dim),
      inner_dim(ctx.inner_dim > 0 ? ctx.inner_dim : ctx.dim),
      num_heads(ctx.num_heads),
      head_dim(0),
      proj_drop(ctx.proj_drop) {
  const std::string name = std::string("combiner-") + combiner_variant_name(variant);
  MIXGRAD_CHECK(dim > 0 && num_heads > 0 && inner_dim % num_heads == 0,
                "CombinerMixer ({}): num_heads ({}) must be positive and divide {} ({})", name, num_heads,
                inner_dim == dim ? "dim" : "the inner (qkv) width", inner_dim);
  MIXGRAD_CHECK(proj_drop >= 0 && proj_drop < 1, "CombinerMixer ({}): proj_drop must be in [0, 1), got {}", name,
                proj_drop);
  const MixerOptions opt = ctx.options.empty() ? resolve_mixer_options(name, {}) : ctx.options;
  layout.variant = variant;
  layout.causal = ctx.causal;
  if (variant != CombinerVariant::logsparse) {
    // Fixed once per model from its longest sequence, never from a batch's padded length: a sample's spans (and so
    // its outputs) must not depend on how long the batch around it is.
    layout.span = opt.integer("combiner_span");
    if (layout.span == 0) {
      MIXGRAD_CHECK(ctx.seq_len > 0,
                    "CombinerMixer ({}): combiner_span = 0 means ceil(sqrt(seq_len)), but the context's seq_len is {} "
                    "(expected the model's longest sequence N >= 1, or an explicit combiner_span)",
                    name, ctx.seq_len);
      layout.span = combiner_span_for(CombinerLayout{variant, 0, ctx.causal}, ctx.seq_len);
    }
  }
  head_dim = inner_dim / num_heads;
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * inner_dim, ctx.qkv_bias));
  proj = register_module("proj", std::make_shared<Linear>(inner_dim, dim, true));
}

Tensor CombinerMixer::forward(const Tensor& x, const Tensor& lengths) {
  MIXGRAD_CHECK(x.dim() == 3 && x.size(2) == dim, "CombinerMixer (combiner-{}): expected input [B, N, {}], got {}",
                combiner_variant_name(layout.variant), dim, shape_str(x.shape()));
  const int64_t B = x.size(0), N = x.size(1);
  // [B, N, 3I] -> [3, B, H, N, Dh]; q, k, v are views of its first axis.
  const Tensor heads = permute(reshape(qkv->forward(x), {B, N, 3, num_heads, head_dim}), {2, 0, 3, 1, 4});
  const auto part = [&](int64_t t) { return reshape(narrow(heads, 0, t, 1), {B, num_heads, N, head_dim}); };
  const Tensor o = combiner_attention(part(0), part(1), part(2), layout, lengths, 1.0 / std::sqrt(double(head_dim)));
  const Tensor merged = reshape(permute(o, {0, 2, 1, 3}), {B, N, inner_dim});
  return dropout(proj->forward(merged), proj_drop, is_training());
}

std::shared_ptr<TokenMixer> make_combiner_fixed(const MixerContext& ctx) {
  return std::make_shared<CombinerMixer>(ctx, CombinerVariant::fixed);
}
std::shared_ptr<TokenMixer> make_combiner_logsparse(const MixerContext& ctx) {
  return std::make_shared<CombinerMixer>(ctx, CombinerVariant::logsparse);
}
std::shared_ptr<TokenMixer> make_combiner_axial(const MixerContext& ctx) {
  return std::make_shared<CombinerMixer>(ctx, CombinerVariant::axial);
}
std::shared_ptr<TokenMixer> make_combiner_mixture(const MixerContext& ctx) {
  return std::make_shared<CombinerMixer>(ctx, CombinerVariant::mixture);
}

std::optional<double> CombinerMixer::forward_flops(int64_t n) const {
  const CombinerTables& t = combiner_tables(layout, n);
  double members = 0;
  for (const int32_t c : t.span_count) members += double(c);
  const double columns = double(t.dir_idx.size()) + double(t.col_idx.size()) + members;
  return double(n) * linear_flops_per_row(*this) + 4.0 * double(inner_dim) * columns;
}

}  // namespace mixgrad::nn
