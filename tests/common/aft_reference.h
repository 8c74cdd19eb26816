// The direct O(N²·D) AFT formula of specs/mixers.md §4.1/§4.5 in float64 with the exact per-(t, d) max: the oracle
// the AFT kernels' GEMM, band and fallback forms are checked against.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/mixgrad.h"

namespace mixgrad::testing {

// variant: "full" (bias [N, N]), "local" (bias [N, N], window s), "simple" (no bias), "conv" (bias = kernel [H, s],
// k [B, N, H]). q, v [B, N, D]; any float dtype, any device (read back to the host). lengths: one value per sample
// (empty: all N valid); padded outputs are 0. Returns float64 [B, N, D] on the CPU.
Tensor aft_reference(const std::string& variant, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                     const std::vector<int32_t>& lengths, bool causal, int64_t window = 0);

}  // namespace mixgrad::testing
