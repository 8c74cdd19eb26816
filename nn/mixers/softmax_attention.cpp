// Softmax multi-head attention mixer (specs/vit.md §1.4).
#include "nn/mixers/softmax_attention.h"

#include <cmath>

#include "engine/attention.h"

namespace mixgrad::nn {

SoftmaxAttention::SoftmaxAttention(const MixerContext& ctx)
    : TokenMixer("SoftmaxAttention"),
      dim(ctx.dim),
      inner_dim(ctx.inner_dim > 0 ? ctx.inner_dim : ctx.dim),
      num_heads(ctx.num_heads),
      head_dim(0),
      attn_drop(ctx.attn_drop),
      proj_drop(ctx.proj_drop),
      causal(ctx.causal) {
  MIXGRAD_CHECK(dim > 0 && num_heads > 0 && inner_dim % num_heads == 0,
                "SoftmaxAttention: num_heads ({}) must be positive and divide {} ({})", num_heads,
                inner_dim == dim ? "dim" : "the inner (qkv) width", inner_dim);
  MIXGRAD_CHECK(attn_drop >= 0 && attn_drop < 1 && proj_drop >= 0 && proj_drop < 1,
                "SoftmaxAttention: dropout rates must be in [0, 1), got attn_drop {} proj_drop {}", attn_drop,
                proj_drop);
  head_dim = inner_dim / num_heads;
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * inner_dim, ctx.qkv_bias));
  proj = register_module("proj", std::make_shared<Linear>(inner_dim, dim, true));
}

Tensor SoftmaxAttention::forward(const Tensor& x, const Tensor& lengths) {
  MIXGRAD_CHECK(x.dim() == 3 && x.size(2) == dim, "SoftmaxAttention: expected input [B, N, {}], got {}", dim,
                shape_str(x.shape()));
  const double p = is_training() ? attn_drop : 0.0;
  // qkv [B, N, 3D] in timm's (3, H, Dh) channel order; the output's channel is h·Dh + e.
  const Tensor o = packed_qkv_attention(qkv->forward(x), num_heads, KeyPadding{lengths}, causal, p,
                                        1.0 / std::sqrt(double(head_dim)));
  return dropout(proj->forward(o), proj_drop, is_training());
}

std::shared_ptr<TokenMixer> make_softmax_attention(const MixerContext& ctx) {
  return std::make_shared<SoftmaxAttention>(ctx);
}

std::optional<double> SoftmaxAttention::forward_flops(int64_t n) const {
  return double(n) * linear_flops_per_row(*this) + 4.0 * double(inner_dim) * visible_pairs(n, causal);
}

}  // namespace mixgrad::nn
