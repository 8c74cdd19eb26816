// S2-MLPv2 spatial shift (specs/mixers.md §1.1–§1.3): the index formulas shared by the CPU reference
// (kernels/cpu/spatial_shift.cpp) and the CUDA kernels (kernels/cuda/spatial_shift.cu), so both read and write the
// same elements in the same order.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace mixgrad::kernels::s2 {

// The shapes every S2Attention kernel takes. z is [B, N, 3C] (mlp1's output: branch k = channels [kC, (k+1)C)),
// its tokens ordered [class token when cls = 1][grid positions in raster order i·W + j of an H×W grid], with
// N <= cls + H·W. lengths[b] (optional) is the number of valid tokens of sample b, class token included: the first
// lengths[b] − cls grid positions in raster order are present, the rest (and every token past N) is padding.
struct S2Geometry {
  int64_t B = 0, N = 0, C = 0, H = 0, W = 0;
  int64_t cls = 0;  // 1 when token 0 is a class token (not on the grid), else 0
};

// First channel of quarter q (q = 4 gives C): ⌊qC/4⌋, so Q3 takes any remainder (§1.1).
MIXGRAD_HD int64_t quarter_begin(int q, int64_t C) { return int64_t(q) * C / 4; }

// How quarter q moves in spatial_shift<variant> (variant 1 or 2; 0 = the unshifted branch): along axis 0 (rows, H)
// or 1 (columns, W), by step +1 (content to higher indices) or −1. shift1: (+1,0) (−1,0) (0,+1) (0,−1); shift2:
// (0,+1) (0,−1) (+1,0) (−1,0).
struct Shift {
  int axis, step;
};
MIXGRAD_HD Shift quarter_shift(int variant, int q) {
  const int axis = variant == 2 ? 1 - q / 2 : q / 2;
  return Shift{axis, q % 2 == 0 ? 1 : -1};
}

// Along a line of L >= 1 present positions, the position that position i reads: the clamp formula
// clamp(i − step, 0, L − 1) for a one-position move, so the edge keeps its own value (replicate-edge).
MIXGRAD_HD int64_t line_source(int64_t i, int64_t L, int step) {
  if (step > 0) return i > 0 ? i - 1 : 0;
  return i + 1 < L ? i + 1 : L - 1;
}

// The positions that read position i (at most two; the exact backward is this gather, §1.2): writes them to r and
// returns how many. +1: i + 1 (if present) and, at i = 0, 0 itself; −1: i − 1 (if i >= 1) and, at i = L − 1,
// L − 1 itself. For L = 1 both give {0}: the identity.
MIXGRAD_HD int line_readers(int64_t i, int64_t L, int step, int64_t r[2]) {
  int n = 0;
  if (step > 0) {
    if (i + 1 < L) r[n++] = i + 1;
    if (i == 0) r[n++] = 0;
  } else {
    if (i >= 1) r[n++] = i - 1;
    if (i == L - 1) r[n++] = L - 1;
  }
  return n;
}

// Present length of row i and of column j when the first ng positions of an H×W grid (raster order) are present.
// A full grid (ng = H·W) gives W and H; a partial last row shortens that row and the columns past its end.
MIXGRAD_HD int64_t row_length(int64_t i, int64_t W, int64_t ng) {
  const int64_t r = ng - i * W;
  return r < 0 ? 0 : (r > W ? W : r);
}
MIXGRAD_HD int64_t column_length(int64_t j, int64_t H, int64_t W, int64_t ng) {
  if (ng <= j) return 0;
  const int64_t l = (ng - j + W - 1) / W;
  return l > H ? H : l;
}

// Grid position (raster index g < ng) that position g reads under shift s, the line lengths taken from ng.
MIXGRAD_HD int64_t grid_source(int64_t g, Shift s, int64_t H, int64_t W, int64_t ng) {
  const int64_t i = g / W, j = g - i * W;
  if (s.axis == 0) return line_source(i, column_length(j, H, W, ng), s.step) * W + j;
  return i * W + line_source(j, row_length(i, W, ng), s.step);
}

// Grid positions that read position g under shift s (at most two, in line_readers' order); returns the count.
MIXGRAD_HD int grid_readers(int64_t g, Shift s, int64_t H, int64_t W, int64_t ng, int64_t r[2]) {
  const int64_t i = g / W, j = g - i * W;
  const int n = s.axis == 0 ? line_readers(i, column_length(j, H, W, ng), s.step, r)
                            : line_readers(j, row_length(i, W, ng), s.step, r);
  for (int k = 0; k < n; ++k) r[k] = s.axis == 0 ? r[k] * W + j : i * W + r[k];
  return n;
}

// Valid tokens of sample b: lengths[b] clamped to [0, N] (N without lengths).
MIXGRAD_HD int64_t valid_tokens(const int32_t* lengths, int64_t b, int64_t N) {
  if (!lengths) return N;
  const int64_t n = lengths[b];
  return n < 0 ? 0 : (n > N ? N : n);
}

// Present grid positions when n tokens are valid (the class token is not on the grid).
MIXGRAD_HD int64_t grid_present(int64_t n, const S2Geometry& g) {
  const int64_t ng = n - g.cls, cap = g.H * g.W;
  return ng < 0 ? 0 : (ng > cap ? cap : ng);
}

// Which spatial shift branch k of S2Attention applies: X0 = shift1, X1 = shift2, X2 unshifted (variant 0).
MIXGRAD_HD int branch_variant(int k) { return k == 0 ? 1 : (k == 1 ? 2 : 0); }

// Token (index into z's N) that valid token p reads in branch k, quarter q; ng present grid positions. The class
// token and branch 2 read themselves.
MIXGRAD_HD int64_t source_token(int64_t p, int k, int q, const S2Geometry& g, int64_t ng) {
  const int v = branch_variant(k);
  if (v == 0 || p < g.cls) return p;
  return g.cls + grid_source(p - g.cls, quarter_shift(v, q), g.H, g.W, ng);
}

// Valid tokens that read valid token p in branch k, quarter q (at most two); returns the count.
MIXGRAD_HD int reader_tokens(int64_t p, int k, int q, const S2Geometry& g, int64_t ng, int64_t r[2]) {
  const int v = branch_variant(k);
  if (v == 0 || p < g.cls) {
    r[0] = p;
    return 1;
  }
  const int n = grid_readers(p - g.cls, quarter_shift(v, q), g.H, g.W, ng, r);
  for (int i = 0; i < n; ++i) r[i] += g.cls;
  return n;
}

// Quarter of channel c (0..3).
MIXGRAD_HD int quarter_of(int64_t c, int64_t C) {
  int q = 0;
  while (q < 3 && c >= quarter_begin(q + 1, C)) ++q;
  return q;
}

}  // namespace mixgrad::kernels::s2
