// MEGA / GAU gated-attention scores (specs/lra.md §6.2 steps 6-7, §6.4), the CPU reference for
// kernels/cuda/gated_attention.h. Layout, spans and the functions f, f': kernels/gated_attention_math.h.
//
// Per sample b with valid prefix n_b, the sequence is cut into spans of `span` positions (one span for full
// attention); query i of span [lo, end) sees the keys j of [lo, hi), hi = min(end, n_b), with
//   s_ij = scale · q_i·k_j + rel_bias[P − 1 + j − i]
//   softmax:        A_ij = exp(s_ij − lse_i),  lse_i = log Σ_j exp(s_ij),  scale = 1/sqrt(zdim)
//   laplace, relu²: A_ij = f(s_ij),                                         scale = 1/(hi − lo)
//   out_i = Σ_j A_ij v_j for i < hi; out_i = 0 for padded queries (i >= n_b).
// Gradients: dP_ij = dout_i·v_j; ds_ij = A_ij (dP_ij − D_i), D_i = dout_i·out_i (softmax) or f'(s_ij) dP_ij; then
// dv_j = Σ_i A_ij dout_i, dq_i = scale Σ_j ds_ij k_j, dk_j = scale Σ_i ds_ij q_i, drel_bias[P − 1 + d] = Σ_{j − i = d}
// ds_ij. Padded rows get zero gradients.
//
// Memory: never a span × span tensor. Work is cut into 64-query × 64-key tiles (score tiles and the products with V,
// dout, K, Q as single-threaded GEMM calls of kernels/cpu/gemm.h); softmax is online (flash-style: running max and
// sum per row, the row's lse saved for the backward, which recomputes the scores). The forward runs one OpenMP task
// per query tile. The backward has two schedules, chosen from the shapes alone:
//  - one-pass (at least 16 (sample, span) pairs): one task per (sample, span) walks its query × key tiles once,
//    computing each ds once for dq, dk, dv and drel_bias; drel_bias partial rows are per (sample, span), width
//    2·span − 1 (about 2·B·L values in all).
//  - two-pass (fewer pairs, e.g. full attention on a small batch): pass A over query tiles (dq and drel_bias), pass B
//    over key tiles (dk, dv), recomputing the scores; drel_bias partial rows are per task group (tasks are dealt to
//    64 groups round-robin, each group adding its tasks in order into its own row of width 2P − 1).
// Every dq, dk and dv element is added in the same order by the same GEMM calls in both schedules, and the partial
// rows are added in a fixed order, so every result is bitwise the same for any number of OpenMP threads.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/gated_attention_math.h"

namespace mixgrad::kernels::cpu {

// out [B, L, E]; lse [B, L] (softmax only: written for valid rows; may be null for laplace/relu²). bias [2P − 1] or
// null, lengths [B] or null.
template <class T>
void gated_attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, const T* bias, const int32_t* lengths,
                             const GattSizes& s);

// Bytes of scratch gated_attention_backward needs (D per row and the drel_bias partial rows, all of type T).
template <class T>
size_t gated_attention_backward_workspace_bytes(const GattSizes& s);

// dq [B, L, Z], dk [B, L, Z], dv [B, L, E] and dbias [2P − 1] (when bias is given; may be null otherwise), all
// overwritten, from dout and the forward's inputs, out and lse. workspace holds at least
// gated_attention_backward_workspace_bytes<T>(s) bytes.
template <class T>
void gated_attention_backward(T* dq, T* dk, T* dv, T* dbias, T* workspace, const T* dout, const T* q, const T* k,
                              const T* v, const T* out, const T* lse, const T* bias, const int32_t* lengths,
                              const GattSizes& s);

}  // namespace mixgrad::kernels::cpu
