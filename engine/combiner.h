// Combiner attention (specs/mixers.md §5, arXiv 2107.05768): direct and span-summary attention in one softmax, the
// four variants of §5.2 (causal) and their non-causal counterparts. The index structure of each variant is built here
// on the host (combiner_tables) and walked by the kernels of kernels/{cpu,cuda}/combiner.h. Implemented in
// engine/ops_combiner.cpp; the rules, with the derivation of the non-causal ones, are in docs/mixers.md.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace mixgrad {

enum class CombinerVariant { fixed, logsparse, axial, mixture };
const char* combiner_variant_name(CombinerVariant v);       // "fixed", "logsparse", "axial", "mixture"
CombinerVariant combiner_variant(const std::string& name);  // an unknown name is an error listing the four

// span: Combiner-Fixed's span length s, Combiner-Axial's and -Mixture's row length m (the grid is row-major,
// position p = (p / m, p mod m)); 0 = ceil(sqrt(L)), the cost-optimal s = √L of §5.2. Ignored by Logsparse. L need
// not be a multiple of the span: the last span (row) is ragged, holding the remaining L mod s tokens.
struct CombinerLayout {
  CombinerVariant variant = CombinerVariant::fixed;
  int64_t span = 0;
  bool causal = false;
};

// The span (row) length used for L tokens: layout.span, or ceil(sqrt(L)) when it is 0 (at most L).
int64_t combiner_span_for(const CombinerLayout& layout, int64_t L);

// The index structure of kernels/combiner_index.h on the host (every vector int32; offsets have one entry more than
// rows): the spans, each query's direct and span columns, and the transposes the backward gathers over.
struct CombinerTables {
  int64_t L = 0, span = 0;
  std::vector<int32_t> span_start, span_stride, span_count, span_query;
  std::vector<int32_t> dir_off, dir_idx, col_off, col_idx;
  std::vector<int32_t> key_off, key_q, span_off, span_q, mem_off, mem_span;
  int64_t num_spans() const { return int64_t(span_start.size()); }
  // Span s's tokens in increasing order.
  std::vector<int64_t> members(int64_t s) const;
};

// Built from the rules of §5.2 (causal) and their mirror images (non-causal; docs/mixers.md). Cached: a model asks for
// the same few tables every step. L >= 1; span >= 0.
const CombinerTables& combiner_tables(const CombinerLayout& layout, int64_t L);

// q, k, v [B, H, L, d] (float32/float64 on the CPU, float32 on CUDA with d <= 128), all one device and dtype.
// lengths: optional int32 [B] on their device, sample b's valid tokens [0, lengths[b]) (CPU: each in [0, L]; GPU: a
// length is clamped to [0, L], never read back). A padded token is never a direct column, a span member or a
// pooled query; a span without a valid member is dropped from every row; padded query rows output 0; padded
// inputs get a zero gradient. scale <= 0 means 1/sqrt(d). Differentiable in q, k and v.
Tensor combiner_attention(const Tensor& q, const Tensor& k, const Tensor& v, const CombinerLayout& layout,
                          const Tensor& lengths = Tensor(), double scale = -1.0);

// Everything one forward computes, for tests: o [B, H, L, d]; lse [B, H, L] (+inf on padded rows); the span
// summaries [B, H, S, d] (query, key = max-pools or a member's query, value) with their log-sum-exp [B, H, S] and the
// argmax tokens (int32 [B, H, S, d], -1 for a span without a valid member). Not differentiable.
struct CombinerForward {
  Tensor o, lse, summary_query, summary_key, summary_value, summary_lse, query_arg, key_arg;
};
CombinerForward combiner_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const CombinerLayout& layout, const Tensor& lengths = Tensor(),
                                           double scale = -1.0);

}  // namespace mixgrad
