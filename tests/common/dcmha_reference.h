// Independent references for the DCMHA tests (tests/cpu/test_dcmha.cpp, tests/cuda/test_cuda_dcmha.cpp): the
// visibility mask as a tensor, Compose by the explicit per-(t, s) H×H matrix 𝒲 (specs/mixers.md §3.2), and the
// whole DCMHA attention composed from plain engine ops (matmul, masked_fill, softmax) with autograd's gradients.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/compose.h"
#include "engine/mixgrad.h"

namespace mixgrad::testing {

// visible[b][t][s] of the spec's rule (lengths as a host vector; empty = every key valid).
std::vector<uint8_t> dcmha_visibility(int64_t B, int64_t N, const std::vector<int32_t>& lengths, bool causal,
                                      int64_t window);

// Compose of one stage by explicit matrices, in double on the host: out[b, :, t, s] = a[b, :, t, s]·𝒲(t, s) with
// 𝒲 = I + ws + qw1ᵀqw2 + diag(qdd) + kw1ᵀkw2 + diag(kdd); 0 where visibility says invisible. a [B, H, N, N],
// dyn [4, B, N, 2R + 1, H], ws [H, H] or undefined. Returns float64.
Tensor compose_by_matrix(const Tensor& a, const Tensor& dyn, const Tensor& ws, ComposeStage stage,
                         const std::vector<uint8_t>& visible);

// Compose of one stage from differentiable engine ops (matmul for the rank-R terms, broadcasting for the diagonal
// gates); invisible entries set to 0 by masked_fill with `invisible` (uint8 [B, 1, N, N]).
Tensor compose_composite(const Tensor& a, const Tensor& dyn, const Tensor& ws, ComposeStage stage,
                         const Tensor& invisible);

// DCMHA attention (spec §3.1) from engine ops on full N×N scores; gradients by autograd (the softmax backward's
// explicit D). Same arguments as dcmha_attention, with the mask as host values.
Tensor dcmha_composite(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dyn, const Tensor& ws_pre,
                       const Tensor& ws_post, const std::vector<int32_t>& lengths, bool causal, int64_t window,
                       double scale);

// uint8 [B, 1, N, N] tensor, 1 where visible == 0.
Tensor dcmha_invisible_mask(int64_t B, int64_t N, const std::vector<uint8_t>& visible);

}  // namespace mixgrad::testing
