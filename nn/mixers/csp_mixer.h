// CSP token mixer (specs/csp.md §9.1): v = Linear(D, D, no bias) -> channel-wise sample permutation over the tokens
// -> proj = Linear(D, D) -> dropout. Registered as "csp" in nn/mixer.cpp; the op itself is engine/csp.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/mixer.h"

namespace mixgrad::nn {

// Options (MixerContext::options, all strings; unknown "csp_*" keys are an error):
//   csp_k          "2" (default), "4" or "8": the sort-group size K; ctx.seq_len must be a multiple of K.
//   csp_schedule   "constant" (default; CSP-ViT, spec §4.1) or "exponential" (CSP-MEGA, spec §4.2), which also
//                  needs csp_layer (this block's index l, 0-based) and csp_num_layers (L). A model that builds its
//                  blocks in a loop passes the index by copying its MixerContext per block and setting
//                  options["csp_layer"] = std::to_string(i), options["csp_num_layers"] = std::to_string(depth).
// The shift table is computed once here from ctx.seq_len (the schedule length N_s) and reduced mod n_b inside the op,
// so a batch may be shorter than seq_len or right-padded. Heads (ctx.num_heads) play no part; ctx.qkv_bias and
// ctx.attn_drop are ignored (W_v has no bias and CSP has no attention map to drop).
class CspMixer : public TokenMixer {
 public:
  explicit CspMixer(const MixerContext& ctx);
  // x [B, N, D] -> [B, N, D]. key_padding_mask [B, N] uint8 (1 = valid) must be a prefix (1…1 0…0) with at least one
  // valid token per sample; it becomes the op's per-sample lengths (padded outputs are 0, padded inputs get a zero
  // gradient). N must be a multiple of K.
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask = Tensor()) override;

  std::shared_ptr<Linear> v;     // [D, D], no bias (the authors' "to_qkv", which only holds V)
  std::shared_ptr<Linear> proj;  // [D, D] with bias (the authors' "to_out")
  int64_t dim, seq_len;
  int k;
  std::string schedule;
  std::vector<int32_t> shifts;  // [D], config rather than state: not a tensor, not in checkpoints
  double proj_drop;
};

std::shared_ptr<TokenMixer> make_csp_mixer(const MixerContext& ctx);

// The per-sample valid lengths of a prefix key-padding mask [B, N] uint8 (csp_mask_lengths, engine/csp.h): int32 [B]
// on the mask's device. A CPU mask is checked at once (errors name the sample and position of a non-prefix mask or an
// empty sample) and gives an undefined tensor when every sample is full length; a CUDA mask is checked on the device
// (errors at the next read-back) and always gives lengths.
Tensor csp_lengths_from_mask(const Tensor& key_padding_mask, int64_t batch, int64_t seq);

}  // namespace mixgrad::nn
