// CSP token mixer (specs/csp.md §9.1): v = Linear(D, I, no bias) -> channel-wise sample permutation over the tokens
// -> proj = Linear(I, D) -> dropout, with I = ctx.inner_dim (0: D, the paper's block). Registered as "csp" in nn/mixer.cpp; the op itself is engine/csp.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/mixer.h"

namespace mixgrad::nn {

// Declared options:
//   csp_k          2 (default), 4 or 8: the sort-group size K; every sequence length N given to forward() must be a
//                  multiple of K (sequence_multiple(): models pad to it; the ViT checks its N at construction).
//   csp_schedule   constant (default; CSP-ViT, spec §4.1) or exponential (CSP-MEGA, spec §4.2: block
//                  ctx.layer_index of ctx.num_layers; the LRA app's default).
// The shift table is computed once here from ctx.seq_len (the schedule length N_s) and reduced mod n_b inside the op,
// so a batch may be shorter than seq_len or right-padded. Heads play no part; ctx.qkv_bias and ctx.attn_drop are
// ignored (W_v has no bias and CSP has no attention map to drop). CSP mixes every valid token with every other one,
// so a causal context is an error.
std::vector<MixerOptionSpec> csp_mixer_options();

class CspMixer : public TokenMixer {
 public:
  explicit CspMixer(const MixerContext& ctx);
  // x [B, N, D] -> [B, N, D]; N must be a multiple of K. lengths (int32 [B] on x's device, each in [1, N]): padded
  // outputs are 0 and padded inputs get a zero gradient (csp.md §6.2).
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor()) override;
  int64_t sequence_multiple() const override { return k; }
  // Its Linears on every token; the shift and sort are not matmuls.
  std::optional<double> forward_flops(int64_t n) const override;

  std::shared_ptr<Linear> v;     // [I, D], no bias (the authors' "to_qkv", which only holds V)
  std::shared_ptr<Linear> proj;  // [D, I] with bias (the authors' "to_out")
  int64_t dim, inner_dim, seq_len;
  int k;
  std::string schedule;
  std::vector<int32_t> shifts;  // [I], config rather than state: not a tensor, not in checkpoints
  double proj_drop;
};

std::shared_ptr<TokenMixer> make_csp_mixer(const MixerContext& ctx);

}  // namespace mixgrad::nn
