// S2-MLPv2's token mixer, S2Attention (specs/mixers.md §1.3; Yu et al., arXiv 2108.01072): z = mlp1(x) with
// mlp1 = Linear(D, 3I); branches X0 = spatial_shift1(z[..., 0:I]), X1 = spatial_shift2(z[..., I:2I]),
// X2 = z[..., 2I:3I] on the token grid; split attention over the three branches (a = Σ over tokens and branches,
// ĥ = W2·GELU(W1·a), a softmax over the branches per channel); out = Σ_k ā_k X_k; y = dropout(mlp2(out)) with
// mlp2 = Linear(I, D). I = ctx.inner_dim (0: D, the paper's block). Registered as "s2mlpv2" in nn/mixer.cpp; the
// ops are engine/s2mlp.h. Inside a TransformerBlock (x + mixer(LN(x)), x + MLP(LN(x))) it is the S2-MLPv2 block of
// §1.4.
//
// The token grid. The mixer needs ctx.grid_h × ctx.grid_w (ViT patches; LRA pixel tasks): a context without one
// (LRA text tasks, grid 0) is an error at construction. Tokens fill the grid in raster order.
//   Class token (ctx.has_cls_token, token 0): it has no grid position, so it is passed through unshifted — in every
//   branch it reads its own row of z, it is never the source of a shifted grid token — and it takes part in split
//   attention like any token (its three rows count in a; it receives Σ_k ā_k X_k). So the class token sees the
//   image only through the branch weights ā; mean pooling (`--pool avg`) is the S2-MLPv2 model's head (§1.4).
//   Key padding (lengths): the first lengths[b] tokens are valid, i.e. the grid's first lengths[b] − cls positions
//   in raster order; a partial last row is a row of the valid grid, and every shift replicates the edge of the
//   valid part of its row or column (§1.2 with the valid length as L). Valid outputs never read padding, padding
//   gets a zero gradient, and full lengths equal no lengths. A sequence shorter than the grid is read the same way.
// No options (§1 fixes k = 3 branches and the sum). Heads play no part; ctx.qkv_bias and ctx.attn_drop are ignored
// (mlp1 always has a bias, as in the reference); ctx.proj_drop is applied after mlp2. A causal context is an error.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/s2mlp.h"
#include "nn/layers.h"
#include "nn/mixer.h"

namespace mixgrad::nn {

std::vector<MixerOptionSpec> s2mlpv2_mixer_options();  // none

// The split attention's two bias-free Linears (the reference's SplitAttention: mlp1 [I, I], mlp2 [3I, I]).
class S2SplitAttentionWeights : public Module {
 public:
  explicit S2SplitAttentionWeights(int64_t channels);
  std::shared_ptr<Linear> mlp1, mlp2;
};

class S2MlpV2Mixer : public TokenMixer {
 public:
  explicit S2MlpV2Mixer(const MixerContext& ctx);
  // x [B, N, D] -> [B, N, D] with N <= cls + grid_h·grid_w; lengths: int32 [B] on x's device, each in [1, N].
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor()) override;
  // mlp1 and mlp2 on every token, the split attention's two Linears once (on the pooled vector).
  std::optional<double> forward_flops(int64_t n) const override;
  // The split attention's intermediate a, ā and out for input x (tests; same computation as forward).
  S2SplitAttention split_attention_of(const Tensor& x, const Tensor& lengths = Tensor());

  std::shared_ptr<Linear> mlp1;                              // [3I, D] with bias
  std::shared_ptr<S2SplitAttentionWeights> split_attention;  // W1 [I, I], W2 [3I, I]
  std::shared_ptr<Linear> mlp2;                              // [D, I] with bias
  int64_t dim, inner_dim;
  S2Grid grid;
  double proj_drop;
};

std::shared_ptr<TokenMixer> make_s2mlpv2_mixer(const MixerContext& ctx);

}  // namespace mixgrad::nn
