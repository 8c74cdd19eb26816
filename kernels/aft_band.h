// How AFT's pair-wise position bias w' (specs/mixers.md §4) is laid out for the kernels of kernels/cpu/aft.h and
// kernels/cuda/aft.h: every variant is a band of stored biases per (head, query row), 0 outside the band.
#pragma once
#include <cstdint>

namespace mixgrad::kernels {

// Element (h, t, j) of a bias band is at w[h·head_stride + t·row_stride + j + offset]. A dense [N, N] matrix is
// {0, N + 1, lo} (then (t, j) is w[t, t + lo + j]); a per-head kernel [H, s] shared by every row is {s, 0, 0}; a
// dense band [H, N, width] is {N·width, width, 0}.
struct AftBiasLayout {
  int64_t head_stride = 0, row_stride = 0, offset = 0;
};

// Row t of head h holds biases for keys t' in [t + lo, t + lo + width) (j = t' − t − lo); every other key the query
// sees has bias 0 (AFT-local's rule, spec §4.1). Channel c of D belongs to head c / (D / heads). causal: query t
// sees keys t' <= t only, and then lo <= 1 and lo + width >= 1 (the band reaches the diagonal).
//   AFT-full:   heads 1, lo −(N−1), width 2N−1, dense layout     AFT-local (window s): lo −(s−1), width 2s−1
//   (causal: width s); AFT-conv (kernel s): lo −(s−1)/2, width s (causal: lo −(s−1)), kernel layout;
//   AFT-simple: width 0 (lo 0, causal lo 1).
struct AftBand {
  int64_t heads = 1;
  int64_t lo = 0, width = 0;
  bool causal = false;
  AftBiasLayout bias;
};

}  // namespace mixgrad::kernels
