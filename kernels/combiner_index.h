// Combiner (specs/mixers.md §5): the index structure the CPU and CUDA kernels walk, and the per-sample validity rules
// both apply in one formula. Built on the host by engine/ops_combiner.cpp (one per variant, length and span).
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace mixgrad::kernels {

// Every array is int32 and lives on the kernels' device. L tokens, S spans.
//   Span s holds the tokens span_start[s] + t·span_stride[s] for t < span_count[s] (increasing). Its summary query is
//   the query of token span_query[s] (a member; Combiner-Axial's per-column row summary) or, when span_query[s] < 0
//   or that token is padding, the channel-wise max-pool of its valid members' queries; its summary key is the
//   max-pool of their keys; its value is softmax attention of the summary query over its valid members (§5.1).
//   Query i reads the direct key columns dir_idx[dir_off[i] .. dir_off[i + 1]) and the span columns
//   col_idx[col_off[i] .. col_off[i + 1]) in one softmax.
//   Transposes, so that the backward gathers instead of scattering (deterministic, no atomics): key j is a direct
//   column of the queries key_q[key_off[j] ..), span s a column of the queries span_q[span_off[s] ..), and token j a
//   member of the spans mem_span[mem_off[j] ..).
struct CombinerIndex {
  int64_t L = 0, S = 0;
  const int32_t *span_start = nullptr, *span_stride = nullptr, *span_count = nullptr, *span_query = nullptr;
  const int32_t *dir_off = nullptr, *dir_idx = nullptr, *col_off = nullptr, *col_idx = nullptr;
  const int32_t *key_off = nullptr, *key_q = nullptr, *span_off = nullptr, *span_q = nullptr;
  const int32_t *mem_off = nullptr, *mem_span = nullptr;
};

// Sample b's valid length: lengths[b] clamped to [0, L], or L without lengths (the engine op checks CPU lengths; a
// GPU length is clamped, as the fused attention kernels do).
MIXGRAD_HD int64_t combiner_length(const int32_t *lengths, int64_t b, int64_t L) {
  if (!lengths) return L;
  const int64_t n = lengths[b];
  return n < 0 ? 0 : (n > L ? L : n);
}

// The number of span s's members below len (its valid members: a prefix, since members increase).
MIXGRAD_HD int64_t combiner_valid_members(const CombinerIndex &ix, int64_t s, int64_t len) {
  const int64_t start = ix.span_start[s], stride = ix.span_stride[s], count = ix.span_count[s];
  if (start >= len) return 0;
  const int64_t n = (len - start + stride - 1) / stride;
  return n < count ? n : count;
}

// The token whose query is span s's summary query, or -1 for the max-pool (the query token is padding or unset).
MIXGRAD_HD int64_t combiner_query_token(const CombinerIndex &ix, int64_t s, int64_t len) {
  const int64_t t = ix.span_query[s];
  return t >= 0 && t < len ? t : -1;
}

}  // namespace mixgrad::kernels
