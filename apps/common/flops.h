// Matmul FLOPs of one forward pass per sample, for `compare`. Counted analytically per layer from the built model,
// a multiply-add counting 2:
//   - every nn::Linear inside the encoder blocks (the mixer's projections, the MLP) acts on each of the N tokens:
//     2 · N · in · out;
//   - each block's token mixer adds its token-to-token products from mixer_mixing_flops();
//   - the apps add what lies outside the blocks (the ViT's patch projection on its N patches, classifier heads on
//     one pooled vector).
// Element-wise work, normalisation, softmax, CSP's shift and sort and the embedding look-ups are not counted.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "nn/module.h"

namespace mixgrad::app {

// 2 · in · out summed over every nn::Linear in `m` (recursively): the FLOPs of applying them all to one row.
double linear_flops_per_row(const nn::Module& m);

// The token-to-token matmuls of one block of `mixer` over n tokens with mixing width `inner`: softmax attention
// 4 · n² · inner (Q·Kᵀ and A·V, 2 · n² · inner each; causal: only the products of the lower triangle, n(n+1)/2 rows
// each), csp 0 (its mixing is a circular shift and a sort). nullopt for a mixer without a formula here: add one
// beside its registration (docs/mixers.md).
std::optional<double> mixer_mixing_flops(const std::string& mixer, int64_t n, int64_t inner, bool causal);

// The named child module of `m` (error naming it when absent).
const nn::Module& child_module(const nn::Module& m, const std::string& name);

}  // namespace mixgrad::app
