// Softmax multi-head self-attention (timm's Attention) as a token mixer: fused qkv Linear [3D, D], per-head scaled
// dot-product attention, heads merged back, output projection. Registered as "softmax" in nn/mixer.cpp.
#pragma once
#include <memory>

#include "nn/layers.h"
#include "nn/mixer.h"

namespace mixgrad::nn {

class SoftmaxAttention : public TokenMixer {
 public:
  // Uses ctx.dim, ctx.num_heads (must divide dim), ctx.qkv_bias, ctx.attn_drop, ctx.proj_drop and ctx.causal.
  explicit SoftmaxAttention(const MixerContext& ctx);
  // x [B, N, D] -> [B, N, D]; lengths (int32 [B] on x's device) hide every padded key from every query.
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor()) override;

  std::shared_ptr<Linear> qkv;   // [3D, D]: rows 0..D-1 Q, D..2D-1 K, 2D..3D-1 V; head h owns rows h·Dh.. in each
  std::shared_ptr<Linear> proj;  // [D, D] with bias
  int64_t dim, num_heads, head_dim;
  double attn_drop, proj_drop;
  bool causal;
};

std::shared_ptr<TokenMixer> make_softmax_attention(const MixerContext& ctx);

}  // namespace mixgrad::nn
