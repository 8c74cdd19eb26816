// A differentiable op defined outside mixgrad with its public custom-op API (engine/autograd.h): a learned two-way
// token shift. For x [B, N, D] and per-channel gate logits wf, wb [D]:
//
//   y[b, n] = x[b, n] + tanh(wf) ⊙ x[b, n − 1] + tanh(wb) ⊙ x[b, n + 1]   (neighbours outside 0..N−1 count as 0)
//
// Each token takes in a gated share of its left and right neighbours; applied k times, a token sees k tokens each
// way (the idea of the token shift of RWKV, Peng et al. 2023, arXiv:2305.13048, with learned gates both ways).
// CPU tensors, float32 or float64; differentiable in x, wf and wb.
#pragma once
#include "engine/mixgrad.h"

namespace custom_layer {

mixgrad::Tensor token_shift(const mixgrad::Tensor& x, const mixgrad::Tensor& wf, const mixgrad::Tensor& wb);

}  // namespace custom_layer
