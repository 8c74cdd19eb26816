// Scaled dot-product attention as one engine op (composite path now; the fused flash-style path replaces its body later).
// AGREED API — see docs/vit-api.md; implemented in engine/ops_attention.cpp.
#pragma once
#include "engine/tensor.h"

namespace mixgrad {

// q [B,H,T,d], k/v [B,H,Tk,d] (float32/float64 CPU, float32 CUDA). attn_mask: optional uint8 tensor broadcastable to
// [B,H,T,Tk], nonzero = may attend (PyTorch boolean-mask semantics), e.g. a key-padding mask viewed as [B,1,1,Tk].
// causal: key j visible to query i iff j <= i + (Tk - T). scale <= 0 means 1/sqrt(d). Fully masked rows give zero
// output and zero gradient (never NaN). dropout_p applies to the probabilities in training.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask = Tensor(),
                                    bool causal = false, double dropout_p = 0.0, double scale = -1.0);

}  // namespace mixgrad
