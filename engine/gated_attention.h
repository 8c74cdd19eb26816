// MEGA / GAU single-head gated-attention scores and output A·V (specs/lra.md §6.2 steps 6-7 and chunking, §6.4) as
// one differentiable op: softmax, laplace or relu² attention with a relative position bias and key padding, full or
// chunked. Implemented in engine/ops_gated_attention.cpp on top of kernels/cpu/gated_attention.h and
// kernels/cuda/gated_attention.h (where the tiling is described).
#pragma once
#include <cstdint>
#include <string>

#include "engine/tensor.h"

namespace mixgrad {

enum class GatedAttentionFn { softmax, laplace, relu2 };

struct GatedAttentionOptions {
  GatedAttentionFn fn = GatedAttentionFn::softmax;
  int64_t chunk = -1;  // -1 or >= L: full attention; else attend within non-overlapping chunks of `chunk` positions
                       // (the last chunk may be shorter)
};

// q, k [B, L, Z], v [B, L, E] (float32/float64 CPU, float32 CUDA, same device); rel_bias [2P−1] (optional; P >= the
// attention span: L for full, chunk when chunked) with score(i, j) += rel_bias[P − 1 + j − i];
// lengths int32 [B] (optional, values in [1, L], CPU or q's device; int64 is accepted too) = valid prefix per sample.
// softmax: A = softmax(q kᵀ / sqrt(Z) + bias) over valid keys of the span (padded keys −∞);
// laplace / relu2: A = f(q kᵀ / n + bias) ⊙ key_mask, n = number of valid keys in the span (>= 1),
//   laplace(x) = 0.5·(1 + erf((x − 0.707107)/(0.282095·√2))), relu2(x) = max(x, 0)².
// Returns O = A·v [B, L, E]; rows of padded queries are 0 (and get zero gradients). Gradients for q, k, v, rel_bias.
//
// n under chunking: the number of valid keys in the query's own span, i.e. min(span end, length_b) − span start,
// clamped to >= 1. Why: MEGA divides by the per-chunk count of unmasked keys when a padding mask exists and by the
// chunk's key count otherwise; its encoder pads L up to a multiple of the chunk and masks the pad, so a short last
// chunk is divided by its true length — the same number this rule gives without any padding (chunk length for whole
// chunks, the shorter length for the last one) and with padding (the valid keys). A span that is all padding has
// only padded queries, whose output is 0 whatever n is. GAU (§6.4, "n = true length") is the full-attention case.
//
// Memory: never an L×L (or span×span) tensor: the kernels work on 64×64 score tiles, softmax online (the row
// log-sum-exp is saved and the backward recomputes the scores), laplace/relu² accumulate A·V tile by tile.
// The rel_bias gradient is reduced deterministically (no float atomics).
Tensor gated_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& rel_bias = Tensor(),
                       const Tensor& lengths = Tensor(), const GatedAttentionOptions& options = {});

// The (query, key) pairs gated_attention scores for one sample of `length` positions under `chunk` (-1 or >= length:
// length²; else the full chunks' chunk² each plus the shorter last chunk's square). FLOP counts multiply by it.
double gated_attention_pairs(int64_t length, int64_t chunk);

std::string gated_attention_fn_name(GatedAttentionFn fn);            // "softmax", "laplace", "relu2"
GatedAttentionFn parse_gated_attention_fn(const std::string& name);  // clear error listing the three names

}  // namespace mixgrad
