// Matmul FLOPs of one forward pass per sample, for `compare`. Counted analytically per layer from the built model,
// a multiply-add counting 2:
//   - every token mixer by its own formula (nn::TokenMixer::forward_flops: its Linears, its token-to-token products
//     and whatever else it multiplies, for the layer it is — window, rank, variant);
//   - every other nn::Linear inside the encoder blocks (the MLP, ...) on each of the N tokens: 2 · N · in · out;
//   - what any other module multiplies itself (nn::Module::own_forward_flops: the LSTM's gates, MEGA's EMA and
//     attention, FLASH's gated attention);
//   - the apps add what lies outside the blocks (the ViT's patch projection on its N patches, classifier heads on
//     one pooled vector).
// Element-wise work, normalisation, softmax, CSP's shift and sort and the embedding look-ups are not counted.
#pragma once
#include <cstdint>
#include <string>

#include "nn/module.h"

namespace mixgrad::app {

struct FlopCount {
  double flops = 0;
  bool complete = true;  // false: a mixer without a formula was counted by its Linears only (a lower bound)
};

// `m` applied to one sample of n tokens, recursively: a token mixer by forward_flops(n) (without a formula: its
// Linears on every token, and the count is incomplete), any other nn::Linear on every token, and every module's
// own_forward_flops(n) (nullopt: the count is incomplete).
FlopCount token_flops(const nn::Module& m, int64_t n);

// The named child module of `m` (error naming it when absent).
const nn::Module& child_module(const nn::Module& m, const std::string& name);

}  // namespace mixgrad::app
