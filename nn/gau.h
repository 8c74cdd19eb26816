// The gated attention unit (GAU) of FLASH (specs/lra.md §6.4) and its pre-norm residual layer, built on the
// gated_attention op (engine/gated_attention.h): one GAU stands in for a Transformer block's attention + MLP.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/gated_attention.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/norms.h"

namespace mixgrad::nn {

struct GAUOptions {
  int64_t expansion = 0;  // e, the width of U and V; 0 = 2·dim (FLASH's default)
  int64_t zdim = 128;     // s, the width of the shared representation Z (queries and keys)
  GatedAttentionFn fn = GatedAttentionFn::relu2;
  int64_t chunk = -1;  // -1: full attention; else within non-overlapping chunks of this many positions
  // P of the relative bias (2P − 1 scalars): the longest span attended, i.e. the longest sequence for full
  // attention; for chunked attention the chunk is used (and max_positions ignored).
  int64_t max_positions = 0;
};

// x [B, L, dim] → (U ⊙ A·V) W_o + b_o with [U, V, Z] = SiLU(x W + b) split (e, e, s), Q = Z ⊙ γ_q + β_q,
// K = Z ⊙ γ_k + β_k and A = relu²(Q Kᵀ / n + b_rel) over the valid keys of the span (n = their count; padded keys
// get 0; other functions as gated_attention). Parameters: "in_proj" [2e + s, dim] (+ bias), "qk_weight" and
// "qk_bias" [2, s] (row 0 queries, row 1 keys), "rel_pos_bias" [2P − 1], "out_proj" [dim, e] (+ bias).
// Initialisation as MEGA's gated attention (specs/lra.md §6.2; FLASH's own is not in the spec): projections
// N(0, 0.02) with zero biases, γ ~ N(0, 0.02), β = 0, b_rel ~ N(0, 0.02). lengths (optional int32 [B], valid prefix
// per sample, on the CPU or x's device): padded positions are never attended to; their output rows are b_o.
class GatedAttentionUnit : public Module {
 public:
  GatedAttentionUnit(int64_t dim, const GAUOptions& options);
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor());
  int64_t span() const { return span_; }  // P
  // Q·Kᵀ and A·V over the pairs the chunks leave: 2 · pairs · (s + e) (the projections are children).
  std::optional<double> own_forward_flops(int64_t n) const override;

  std::shared_ptr<Linear> in_proj, out_proj;
  Tensor qk_weight, qk_bias, rel_pos_bias;
  int64_t dim;
  GAUOptions options;

 private:
  int64_t span_;
};

// FLASH's layer, always pre-norm: x + Dropout(GAU(Norm(x))) with the norm a SequenceNorm ("layernorm", "scalenorm"
// or "batchnorm"; BatchNorm leaves padded positions out of its statistics). Children "norm" and "gau".
class GAULayer : public Module {
 public:
  GAULayer(int64_t dim, const GAUOptions& options, const std::string& norm = "layernorm", double eps = 1e-5,
           double dropout = 0.0);
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor());
  std::shared_ptr<SequenceNorm> norm;
  std::shared_ptr<GatedAttentionUnit> gau;
  double dropout;
};

// GAU layers applied in order (children "0", "1", ..., like a torch.nn.ModuleList).
class GAULayers : public Module {
 public:
  GAULayers() : Module("GAULayers") {}
  std::shared_ptr<GAULayer> push_back(std::shared_ptr<GAULayer> layer);
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor());
  size_t size() const { return layers_.size(); }
  GAULayer& operator[](size_t i) const { return *layers_.at(i); }

 private:
  std::vector<std::shared_ptr<GAULayer>> layers_;
};

}  // namespace mixgrad::nn
