// CSP — channel-wise sample permutation (specs/csp.md): the differentiable op and its host-side shift schedules.
// Implemented in engine/ops_csp.cpp on top of kernels/cpu/csp.h and kernels/cuda/csp.h.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace mixgrad {

// Y = gsort_K(roll_shifts(V)) per (sample, channel): V is [B, N, D] (float32/float64 CPU, float32 CUDA), channels
// contiguous; shifts has D values >= 0 (used mod n_b); k in {2, 4, 8} with N % k == 0. lengths (optional, int32 or
// int64 [B], on the CPU or on V's device; CPU lengths are checked at the call, lengths on the GPU are checked there
// and a bad one is reported at the next read-back) gives valid prefixes n_b in [1, N]: the rotation
// happens inside the prefix, a partial last group is sorted among its valid elements, padded outputs are 0 and
// padded inputs get a zero gradient. Sort order: NaN last, -0 == +0, ties keep their shifted-frame order. Only V
// receives a gradient (an exact permutation gather, ranks recomputed from V).
Tensor csp(const Tensor& v, const std::vector<int32_t>& shifts, int k, const Tensor& lengths = Tensor());

// Valid lengths of a prefix key-padding mask [B, N] (uint8, nonzero = valid, valid tokens first) as int32 [B] on the
// mask's device, for csp's `lengths`. On the CPU a row that is not a prefix, or has no valid token, is an error naming
// the row and positions; on CUDA the lengths are computed and checked on the device (no read-back) and such a row is
// reported at the next read-back. `who` starts the error messages.
Tensor csp_mask_lengths(const Tensor& mask, const std::string& who = "csp_mask_lengths");

// The transpose of csp for a fixed V (what the tape node runs): dV with dV[b, π(j), c] = dY[b, j, c], 0 on padded
// rows. dy must have V's shape, dtype and device. Not differentiable.
Tensor csp_backward(const Tensor& dy, const Tensor& v, const std::vector<int32_t>& shifts, int k,
                    const Tensor& lengths = Tensor());

// Constant-step schedule (spec §4.1, CSP-ViT): s_0 = 0, s_c = K·(c − 1) mod N for c >= 1 (0, 0, K, 2K, ...).
std::vector<int32_t> csp_shifts_constant(int64_t D, int64_t N, int K);

// Exponential cross-layer schedule (spec §4.2, CSP-MEGA): s_{l,i} = ceil(pow(N_s, (l·D + i) / (L·D))) mod N_s,
// computed in double exactly as specified. layer l in [0, L), num_layers L >= 1, N_s >= 1.
std::vector<int32_t> csp_shifts_exponential(int64_t layer, int64_t num_layers, int64_t D, int64_t N_s);

// By name: "constant" → csp_shifts_constant(D, N, K); "exponential" → csp_shifts_exponential(layer, num_layers, D,
// N) with N the schedule length N_s. Any other name is an error.
std::vector<int32_t> csp_shifts(const std::string& schedule, int64_t D, int64_t N, int K, int64_t layer = 0,
                                int64_t num_layers = 1);

}  // namespace mixgrad
