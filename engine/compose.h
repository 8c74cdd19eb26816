// DCMHA — dynamically composable multi-head attention (specs/mixers.md §3): the Compose op on attention scores and
// the chunked DCMHA attention core. Implemented in engine/ops_compose.cpp on kernels/cpu/compose.h and
// kernels/cuda/compose.h plus the batched GEMMs of kernels/{cpu,cuda}/gemm.h.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mixgrad {

// Which keys each query sees (self-attention over N tokens): s < lengths[b] (lengths: optional int32 [B] on the
// inputs' device; a CPU length outside [0, N] is an error, on a GPU the kernels clamp it, nothing is read back);
// causal: s <= t; window W > 0: t − W < s <= t when causal (DCFormer's JAX rule), |t − s| < W otherwise (derived);
// window 0 = global. A query with no visible key outputs 0 and passes no gradient.
struct DcmhaMask {
  Tensor lengths;
  bool causal = false;
  int64_t window = 0;
};

// The dynamic weights of one layer: dyn [4, B, N, 2R + 1, H], slots [pre-query, pre-key, post-query, post-key],
// rows 0..R-1 = w1 (RMS-normalised), R..2R-1 = w2, 2R = dd (spec §3.3). Query-side slots are read at t, key-side at s.
enum class ComposeStage { pre, post };

// One Compose stage on full scores a [B, H, N, N] (spec §3.2): a'[:, t, s] = a[:, t, s]·𝒲(t, s) at every visible
// (t, s), 0 at invisible ones (both stages: the pre stage's masked values are never read by the softmax after it).
// ws: optional static [H, H] matrix. float32/float64 on the CPU, float32 on CUDA; H <= 64, R <= 8. Differentiable
// in a, dyn and ws.
Tensor compose(const Tensor& a, const Tensor& dyn, const Tensor& ws, ComposeStage stage, const DcmhaMask& mask = {});

// DCMHA attention (spec §3.1) on q, k, v [B, H, N, d]: Lg = scale·q·kᵀ, pre-Compose, masked softmax, post-Compose
// (0 at invisible keys), O = P''·v → [B, H, N, d]. Evaluated in query chunks of `chunk` rows with materialised
// [B, H, chunk, keys] scores (§3.6 Option A; kernels/cpu/compose.cpp says how, and what memory it takes); the
// backward recomputes each chunk and keeps only q, k, v and dyn. ws_pre / ws_post: optional static [H, H] matrices.
// scale <= 0 means 1/√d. Differentiable in q, k, v, dyn, ws_pre and ws_post.
Tensor dcmha_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dyn, const Tensor& ws_pre,
                       const Tensor& ws_post, const DcmhaMask& mask = {}, int64_t chunk = 128, double scale = -1.0);

}  // namespace mixgrad
