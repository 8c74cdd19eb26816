// Combiner token mixers (specs/mixers.md §5, arXiv 2107.05768): a fused qkv Linear, per-head Combiner attention
// (engine/combiner.h: direct and span-summary attention in one softmax) and an output projection. Registered as
// "combiner-fixed", "combiner-logsparse", "combiner-axial" and "combiner-mixture" in nn/mixer.cpp.
#pragma once
#include <memory>
#include <vector>

#include "engine/combiner.h"
#include "nn/layers.h"
#include "nn/mixer.h"

namespace mixgrad::nn {

// Declared options (Fixed, Axial and Mixture; Logsparse has none):
//   combiner_span  0 (default) = ceil(sqrt(ctx.seq_len)), the cost-optimal span s = √L of §5.2 at the model's
//                  longest sequence (the authors' LM configs fix max_seg_len = 128 instead, which at ViT/LRA-mini
//                  lengths would leave one span and no summaries); else Fixed's span length s, Axial's and
//                  Mixture's row length m. Fixed at construction, so a batch's padded length never changes a
//                  sample's spans. N need not be a multiple: the last span (row) is ragged, so sequence_multiple()
//                  is 1.
std::vector<MixerOptionSpec> combiner_mixer_options();

class CombinerMixer : public TokenMixer {
 public:
  // Uses ctx.dim, ctx.inner_dim (0 = dim; num_heads must divide it), ctx.num_heads, ctx.qkv_bias, ctx.proj_drop and
  // ctx.causal (token i sees only tokens j <= i; off for the vit and lra encoders). ctx.attn_drop is ignored: the
  // Combiner kernels have no attention dropout.
  CombinerMixer(const MixerContext& ctx, CombinerVariant variant);
  // x [B, N, D] -> [B, N, D]; lengths (int32 [B] on x's device): padded tokens are never keys, span members or pooled
  // queries of valid tokens, and get a zero gradient.
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor()) override;
  // qkv and proj on every token, then 4 · inner per (query, column) of the softmax — direct keys and span
  // summaries — and per (summary, member) of the span summaries' own attention.
  std::optional<double> forward_flops(int64_t n) const override;

  std::shared_ptr<Linear> qkv;   // [3I, D]: rows 0..I-1 Q, I..2I-1 K, 2I..3I-1 V; head h owns rows h·Dh.. in each
  std::shared_ptr<Linear> proj;  // [D, I] with bias
  int64_t dim, inner_dim, num_heads, head_dim;
  CombinerLayout layout;
  double proj_drop;
};

std::shared_ptr<TokenMixer> make_combiner_fixed(const MixerContext& ctx);
std::shared_ptr<TokenMixer> make_combiner_logsparse(const MixerContext& ctx);
std::shared_ptr<TokenMixer> make_combiner_axial(const MixerContext& ctx);
std::shared_ptr<TokenMixer> make_combiner_mixture(const MixerContext& ctx);

}  // namespace mixgrad::nn
