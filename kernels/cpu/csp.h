// CSP (channel-wise sample permutation, specs/csp.md): per (b, channel) a circular shift along tokens followed by
// an ascending sort inside consecutive groups of K tokens; the CPU reference for kernels/cuda/csp.h.
#pragma once
#include <cstdint>

namespace mixgrad::kernels::cpu {

// Layout: v, y, dy, dv are [B, N, D] row-major (channels contiguous); shifts is [D] (values >= 0, used mod n_b);
// lengths is [B] with 1 <= n_b <= N, or null for n_b = N. K in {2, 4, 8}, N % K == 0 (the engine op validates;
// the kernels throw std::invalid_argument for a bad K only).
//
// Forward (rank form, spec §3/§5/§6.2): in the shifted frame U[j] = V[(j - s) mod n_b], each group of K slots
// [gK, gK + K) ∩ [0, n_b) is sorted ascending under the total order "NaN last, -0 == +0, ties keep their order";
// y rows >= n_b are 0. Values are copied, never recomputed, so the result is bit-exact on every backend.
template <class T>
void csp_forward(T* y, const T* v, const int32_t* shifts, const int32_t* lengths, int64_t B, int64_t N, int64_t D,
                 int K);

// Backward (exact permutation transpose, ranks recomputed from v): dv[b, π(j), c] = dy[b, j, c] for j < n_b, every
// dv element written exactly once (plain stores, deterministic); dv rows >= n_b are 0, dy rows >= n_b ignored.
template <class T>
void csp_backward(T* dv, const T* dy, const T* v, const int32_t* shifts, const int32_t* lengths, int64_t B,
                  int64_t N, int64_t D, int K);

// The same two passes forced through the general rank path for every group (csp_forward/csp_backward use lane-wise
// ranks through channel-major scratch for float with AVX2, else a compare-exchange network vectorised over
// channels); tests check that the paths agree bit for bit.
template <class T>
void csp_forward_general(T* y, const T* v, const int32_t* shifts, const int32_t* lengths, int64_t B, int64_t N,
                         int64_t D, int K);
template <class T>
void csp_backward_general(T* dv, const T* dy, const T* v, const int32_t* shifts, const int32_t* lengths, int64_t B,
                          int64_t N, int64_t D, int K);

}  // namespace mixgrad::kernels::cpu
