// Softmax multi-head self-attention (timm's Attention) as a token mixer: fused qkv Linear [3D, D], per-head scaled
// dot-product attention, heads merged back, output projection. Registered as "softmax" in nn/mixer.cpp.
#pragma once
#include <memory>

#include "nn/layers.h"
#include "nn/mixer.h"

namespace mixgrad::nn {

class SoftmaxAttention : public TokenMixer {
 public:
  // Uses ctx.dim, ctx.inner_dim (the qkv width, 0 = dim; num_heads must divide it), ctx.num_heads, ctx.qkv_bias,
  // ctx.attn_drop, ctx.proj_drop and ctx.causal.
  explicit SoftmaxAttention(const MixerContext& ctx);
  // x [B, N, D] -> [B, N, D]; lengths (int32 [B] on x's device) hide every padded key from every query.
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor()) override;
  // Its Linears on every token + 4 · inner · visible pairs (Q·Kᵀ and A·V).
  std::optional<double> forward_flops(int64_t n) const override;

  std::shared_ptr<Linear> qkv;   // [3I, D] (I = inner_dim): rows 0..I-1 Q, I..2I-1 K, 2I..3I-1 V; head h owns
                                 // rows h·Dh.. in each
  std::shared_ptr<Linear> proj;  // [D, I] with bias
  int64_t dim, inner_dim, num_heads, head_dim;
  double attn_drop, proj_drop;
  bool causal;
};

std::shared_ptr<TokenMixer> make_softmax_attention(const MixerContext& ctx);

}  // namespace mixgrad::nn
