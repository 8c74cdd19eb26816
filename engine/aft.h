// AFT — Attention Free Transformer (specs/mixers.md §4, Zhai et al. arXiv 2105.14103): the four differentiable
// mixing ops. Implemented in engine/ops_aft.cpp on top of kernels/cpu/aft.h and kernels/cuda/aft.h.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mixgrad {

// Which form computes Σ_t' exp(K + w')·[V | 1] (kernels/cpu/aft.cpp explains them). automatic: the GEMM form for
// AFT-full, the band form for AFT-conv and non-causal AFT-simple, the running-max scan for causal AFT-simple, and for
// AFT-local the band form when the band is at most a quarter of N wide (else the GEMM form). dense needs a bias shared
// by all channels (not AFT-conv); band runs everywhere (AFT-full as a band of width 2N − 1). Both fall back to the
// exact per-element form where den underflows.
enum class AftPath { automatic, dense, band };

// Common to every op: q, v [B, N, D] (float32/float64 on the CPU, float32 on CUDA), all on one device, same dtype;
// lengths (optional int32 [B] on that device, values in [0, N]; on a GPU clamped, not read back) makes keys
// t' >= lengths[b] invisible and sets padded outputs to 0 (padded inputs get zero gradients). causal: query t sees
// keys t' <= t only (spec §4.5). Output [B, N, D]:  Y_t = σ(Q_t) ⊙ Σ_t' exp(K_t' + w'_{t,t'})·V_t' /
// Σ_t' exp(K_t' + w'_{t,t'}), over the visible keys. Every input gets a gradient (spec §4.4).

// AFT-full: k [B, N, D], w [N, N] the pair-wise position bias (w = U V_pᵀ is built by the caller), w' = w.
Tensor aft_full(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w, const Tensor& lengths = Tensor(),
                bool causal = false, AftPath path = AftPath::automatic);

// AFT-local: as aft_full with w'_{t,t'} = w_{t,t'} when |t − t'| < window (causal: t − window < t' <= t), else 0
// (not −∞: keys outside the window still count). window >= 1.
Tensor aft_local(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w, int64_t window,
                 const Tensor& lengths = Tensor(), bool causal = false, AftPath path = AftPath::automatic);

// AFT-local's bias band straight from the factors of w = U V_pᵀ (spec §4.2) in O(N·W·R) time and O(N·W) memory
// (the dense w costs N²): u, vp [N, R] (the first N rows of U and V_p) -> [N, W] with entry (t, j) = U_t·V_p_t'
// for the key t' = t − (s' − 1) + j when 0 <= t' < N (else 0), s' = min(window, N), W = 2s' − 1 (causal: s').
// Differentiable in u and vp.
Tensor aft_local_bias(const Tensor& u, const Tensor& vp, int64_t window, bool causal = false);

// Whether AftPath::automatic runs AFT-local over N tokens with this window in the dense GEMM form: when its band
// (2·min(window, N) − 1 keys wide; causal min(window, N)) is wider than N/4. Else the band form.
bool aft_local_automatic_dense(int64_t window, int64_t N, bool causal);

// AFT-local with its bias given as that band (aft_local_bias with the same window and causal flag) instead of the
// dense [N, N] w: the same result as aft_local, and the bias gradient is the band's.
Tensor aft_local_band(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w_band, int64_t window,
                      const Tensor& lengths = Tensor(), bool causal = false, AftPath path = AftPath::automatic);

// AFT-simple: w' = 0, k [B, N, D]; O(N·D).
Tensor aft_simple(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lengths = Tensor(),
                  bool causal = false, AftPath path = AftPath::automatic);

// AFT-conv with H heads and kernel size s: k [B, N, H] (one key per head, shared by the head's D/H channels),
// kernel [H, s] the per-head position bias (already re-parameterised: spec §4.2). w'_{t,t'} = kernel[h, t' − t +
// (s−1)/2] for |t' − t| <= (s−1)/2 (s odd), else 0 — which is the paper's conv(E⊙V, e^w − 1) + Σ E⊙V form. causal:
// the one-sided kernel w'_{t,t'} = kernel[h, t' − t + s − 1] for t − s < t' <= t (any s >= 1; derived). H divides D.
Tensor aft_conv(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& kernel,
                const Tensor& lengths = Tensor(), bool causal = false);

}  // namespace mixgrad
