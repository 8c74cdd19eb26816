// MEGA's layers (specs/lra.md §6.2): the moving-average gated attention (EMA → single-head gated attention → gated
// residual), the normalized feed-forward, and the block of one of each; with the CSP variant of csp.md §10 (A·V
// replaced by CSP(V)). Batch-first: x [B, L, d]; lengths int32 [B] (valid prefixes) on x's device or the CPU.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/ema.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/norms.h"

namespace mixgrad::nn {

struct MegaOptions {
  int64_t embed_dim = 64;          // d
  int64_t zdim = 32;               // z: queries and keys
  int64_t hdim = 128;              // v: values (and, CSP, the channels CSP permutes)
  int64_t ffn_dim = 128;           // the normalized FFN's hidden width
  int64_t ema_ndim = 16;           // EMA dimension h
  int64_t truncation = 0;          // EMA kernel length min(truncation, L); 0 = L
  std::string norm = "layernorm";  // layernorm | scalenorm | batchnorm (nn::SequenceNorm)
  bool prenorm = false;
  double norm_eps = 1e-5;
  std::string attn_fn = "softmax";  // softmax | laplace | relu2
  int64_t chunk = -1;               // attention within chunks of this many positions; -1 = full
  int64_t max_positions = 1024;     // P of the relative position bias (2P − 1 entries); >= the attention span
  double dropout = 0.0;             // on the EMA output, the candidate Ĥ and the FFN output
  double hidden_dropout = 0.0;      // on V and inside the FFN (MEGA's activation dropout)
  // CSP-MEGA (csp.md §10): O = CSP(V) instead of A·V; Q, K (and the z columns of the mx projection that only feed
  // them) and the relative position bias are not created.
  bool csp = false;
  int csp_k = 2;
  std::string csp_schedule = "exponential";
  int64_t csp_schedule_length = 1024;  // N_s of the exponential schedule (the task's longest sequence)
  int64_t layer_index = 0, num_layers = 1;
};

// Steps 1-8 of §6.2. Parameters (MEGA's names): "v_proj", "mx_proj", "h_proj" (Linear, N(0, 0.02), bias 0),
// "move" (MultiHeadEMA), "gamma" / "beta" [2, z] (the per-dimension scale/offset of Q and K; N(0, 0.02) / 0),
// "rel_pos_bias" [2P − 1] (N(0, 0.02)), "norm".
class MovingAverageGatedAttention : public Module {
 public:
  explicit MovingAverageGatedAttention(const MegaOptions& o);
  Tensor forward(const Tensor& x, const Tensor& lengths);
  // Q·Kᵀ and A·V over the pairs the chunks leave: 2 · pairs · (z + v); CSP-MEGA multiplies nothing itself. (The
  // projections and the EMA are children.)
  std::optional<double> own_forward_flops(int64_t n) const override;

  std::shared_ptr<Linear> v_proj, mx_proj, h_proj;
  std::shared_ptr<MultiHeadEMA> move;
  std::shared_ptr<SequenceNorm> norm;
  Tensor gamma, beta, rel_pos_bias;  // undefined for CSP
  MegaOptions options;
  std::vector<int32_t> csp_shifts;  // CSP: the exponential schedule of this layer, [hdim]

 private:
  Tensor mix(const Tensor& z, const Tensor& v, const Tensor& lengths);  // O = A·V, or CSP(V)
};

// r = x; x = Norm(x) if pre-norm; x = fc2(Drop_h(SiLU(fc1(x)))), dropout, + r; Norm after if post-norm.
class NormalizedFeedForward : public Module {
 public:
  explicit NormalizedFeedForward(const MegaOptions& o);
  Tensor forward(const Tensor& x, const Tensor& lengths);

  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<SequenceNorm> norm;
  MegaOptions options;
};

// One MEGA block: the gated attention, then the normalized FFN ("mega_layer", "nffn").
class MegaBlock : public Module {
 public:
  explicit MegaBlock(const MegaOptions& o);
  Tensor forward(const Tensor& x, const Tensor& lengths);

  std::shared_ptr<MovingAverageGatedAttention> mega_layer;
  std::shared_ptr<NormalizedFeedForward> nffn;
};

// Blocks applied in order, registered as "0", "1", ... (MEGA's "layers.<i>").
class MegaBlocks : public Module {
 public:
  MegaBlocks() : Module("MegaBlocks") {}
  void push_back(std::shared_ptr<MegaBlock> block);
  Tensor forward(const Tensor& x, const Tensor& lengths);
  size_t size() const { return blocks_.size(); }
  MegaBlock& operator[](size_t i) { return *blocks_.at(i); }

 private:
  std::vector<std::shared_ptr<MegaBlock>> blocks_;
};

}  // namespace mixgrad::nn
