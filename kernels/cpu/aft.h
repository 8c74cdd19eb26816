// AFT — attention-free transformer (specs/mixers.md §4): the steps of the stable GEMM form, the band form and the
// underflow fallback, forward and backward; the CPU reference for kernels/cuda/aft.h. engine/ops_aft.cpp chains them.
#pragma once
#include <cstdint>

#include "kernels/aft_band.h"

namespace mixgrad::kernels::cpu {

// Layouts (row-major, last axis contiguous): q, k, v, y, ybar, den, dq, dk, dv, dy [B, N, D]; the packed key
// weights x and the GEMM operands/results nd, g, h [B, N, 2D] (channel c in column c, its key weight in D + c);
// row_max, coef [H, N]; aband [H, N, width]; a, da [N, N]. lengths [B] (null: all N valid) is clamped to [0, N];
// padded keys never count, padded query rows give y = 0 and zero gradients. w is read through band.bias (null when
// band.width == 0); dw is written through dw_layout.

// row_max[h, t] = m^w_t: the max of w' over the keys row t sees (in-band biases, and 0 when an out-of-band key is
// visible), by positions only (lengths play no part: the shift is a constant that cancels).
template <class T>
void aft_bias_row_max(T* row_max, const T* w, const AftBand& band, int64_t N);

// The band form's weights: aband[h, t, j] = exp(w − m^w_t) for visible in-range keys (0 otherwise), coef[h, t] =
// exp(−m^w_t) (the weight of every out-of-band key).
template <class T>
void aft_band_weights(T* aband, T* coef, const T* w, const T* row_max, const AftBand& band, int64_t N);

// The GEMM form's A = exp(w' − m^w) [N, N], 0 where the query does not see the key (band.heads == 1).
template <class T>
void aft_dense_weights(T* a, const T* w, const T* row_max, const AftBand& band, int64_t N);

// x = [E ⊙ V | E] with E = exp(K − m^K), m^K the max over the valid keys of each (sample, channel); 0 on padded keys.
template <class T>
void aft_key_weights(T* x, const T* k, const T* v, const int32_t* lengths, int64_t B, int64_t N, int64_t D);

// out[b] = A·in[b] (transposed: Aᵀ·in[b]) for every sample, A from aft_dense_weights; GEMMs through kernels/cpu/gemm.h.
// causal: A is lower-triangular (band.causal), and its zero upper triangle is skipped by row blocks.
template <class T>
void aft_dense_matmul(T* out, const T* a, const T* in, int64_t B, int64_t N, int64_t D, bool transposed, bool causal);

// The band trick (spec §4.4): out = A·in (or Aᵀ·in) with A = coef outside the band and aband inside it, as prefix and
// suffix sums of in plus an O(width) loop per row (no subtraction, so no cancellation). scan: workspace of
// aft_band_scan_elems(B, N, D) elements.
int64_t aft_band_scan_elems(int64_t B, int64_t N, int64_t D);
template <class T>
void aft_band_matmul(T* out, T* scan, const T* in, const T* aband, const T* coef, const AftBand& band, int64_t B,
                     int64_t N, int64_t D, bool transposed);

// y = σ(q) ⊙ num/den with [num | den] = nd; ybar = num/den. An element whose den is below the floor of
// kernels/aft_math.h is recomputed with the exact streaming form from k, v, w and marked by den = 0 (ybar exact).
// Padded rows: y = ybar = 0, den = 1.
template <class T>
void aft_forward_finish(T* y, T* ybar, T* den, const T* q, const T* k, const T* v, const T* nd, const T* w,
                        const AftBand& band, const int32_t* lengths, int64_t B, int64_t N, int64_t D);

// Backward, first step: g = [dnum | dden] = [Gq/den | −Gq·ybar/den] with Gq = dy ⊙ σ(q), 0 for fallback elements
// (den == 0) and padded rows; dq = dy ⊙ ybar ⊙ σ(q)(1 − σ(q)) (0 on padded rows).
template <class T>
void aft_backward_prep(T* g, T* dq, const T* dy, const T* q, const T* ybar, const T* den, const int32_t* lengths,
                       int64_t B, int64_t N, int64_t D);

// From h = Aᵀ·g: dv = E ⊙ h_num, dk = E ⊙ (h_den + v ⊙ h_num), E = x's second half.
template <class T>
void aft_backward_keys(T* dk, T* dv, const T* h, const T* x, const T* v, int64_t B, int64_t N, int64_t D);

// The GEMM form's dA = Σ_b g[b]·x[b]ᵀ [N, N]; causal: only the row blocks' dA[r0:r1, 0:r1] are written (the lower
// triangle, all that aft_dense_bias_grad reads, and a little more); the rest of da is left as it was.
template <class T>
void aft_bias_outer(T* da, const T* g, const T* x, int64_t B, int64_t N, int64_t D, bool causal);

// dw(h, t, j) = A(t, t')·Σ_{b, c of head h} (g[b, t, c]·x[b, t', c] + g[b, t, D + c]·x[b, t', D + c]) for every
// in-band key t' in range (0 for invisible ones). Writes exactly those elements of dw.
template <class T>
void aft_band_bias_grad(T* dw, const AftBiasLayout& dw_layout, const T* g, const T* x, const T* aband,
                        const AftBand& band, int64_t B, int64_t N, int64_t D);

// The same from the GEMM form: dw(0, t, j) = dA[t, t']·A[t, t'] for visible in-band keys (band.heads == 1).
template <class T>
void aft_dense_bias_grad(T* dw, const AftBiasLayout& dw_layout, const T* da, const T* a, const AftBand& band,
                         int64_t N);

// Adds the gradients of the fallback elements (den == 0) to dk, dv and dw (dw null: w has no gradient), recomputed
// with the exact streaming form. Serial on the CPU (the path is rare; sums in a fixed order).
template <class T>
void aft_fallback_backward(T* dk, T* dv, T* dw, const AftBiasLayout& dw_layout, const T* dy, const T* q, const T* k,
                           const T* v, const T* ybar, const T* den, const T* w, const AftBand& band,
                           const int32_t* lengths, int64_t B, int64_t N, int64_t D);

// AFT-local's bias band straight from the factors of w = U V_pᵀ (spec §4.2), O(N·W·R) instead of O(N²·R):
// out[t, j] = u[t]·vp[t + lo + j] for 0 <= t + lo + j < N, else 0; u, vp [N, R], out [N, W].
template <class T>
void aft_band_product(T* out, const T* u, const T* vp, int64_t N, int64_t R, int64_t lo, int64_t W);
// Its backward: du[t] = Σ_j g[t, j]·vp[t + lo + j], dvp[t'] = Σ_j g[t' − lo − j, j]·u[t' − lo − j]; every row of du
// and dvp written once (no accumulation across threads).
template <class T>
void aft_band_product_backward(T* du, T* dvp, const T* g, const T* u, const T* vp, int64_t N, int64_t R, int64_t lo,
                               int64_t W);

// Causal AFT-simple by a running-max prefix scan per (sample, channel) (spec §4.5; kernels/aft_math.h), the path
// engine/ops_aft.cpp takes for it: y, ybar as above; run_max, run_den [B, N, D] are saved for the backward.
template <class T>
void aft_simple_scan(T* y, T* ybar, T* run_max, T* run_den, const T* q, const T* k, const T* v, const int32_t* lengths,
                     int64_t B, int64_t N, int64_t D);
// Its backward by the reverse scan: dq, dk, dv from dy and what the forward saved.
template <class T>
void aft_simple_scan_backward(T* dq, T* dk, T* dv, const T* dy, const T* q, const T* k, const T* v, const T* ybar,
                              const T* run_max, const T* run_den, const int32_t* lengths, int64_t B, int64_t N,
                              int64_t D);

}  // namespace mixgrad::kernels::cpu
