// AFT token mixers (specs/mixers.md §4, Zhai et al., "An Attention Free Transformer", arXiv 2105.14103):
// Q, K, V = Linear(D, I) (K: Linear(D, H) for AFT-conv) -> an AFT op of engine/aft.h -> proj = Linear(I, D) ->
// dropout, with I = ctx.inner_dim (0: D). Registered as "aft-full", "aft-local", "aft-simple" and "aft-conv" in
// nn/mixer.cpp.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "nn/layers.h"
#include "nn/mixer.h"

namespace mixgrad::nn {

enum class AftVariant { full, local, simple, conv };

// Declared options (defaults from the paper, spec §4.2 / §4.7):
//   aft_rank          (full, local) d', the rank of the factorised bias w = U V_pᵀ; 128 (the paper's ImageNet
//                     AFT-full, spec §4.2 "small (e.g. 128)").
//   aft_window        (local) s, keys with |t − t'| < s (causal: t − s < t' <= t) carry w; 32 (the best window of the
//                     paper's enwik8 sweep, Table 4 / spec §4.7).
//   aft_conv_kernel   (conv) kernel size s; 11 (the paper's AFT-conv tiny and small on ImageNet, Table 7). Odd unless
//                     the context is causal.
//   aft_conv_heads    (conv) heads H; 0 (default) = ctx.num_heads. Must divide the mixing width (the paper's
//                     ImageNet AFT-conv uses one head per channel: heads = width).
// Position biases are sized from ctx.seq_len: U, V_p [seq_len, d'] ~ N(0, 0.1²) (spec §4.2), a batch of N <= seq_len
// tokens uses their first N rows (N > seq_len is an error). AFT-conv's kernel w [H, s] ~ N(0, 1) is re-parameterised
// per head as γ·(w − mean)/(std + 1e-5) + β (population std; spec §4.2) with γ = β = 0 at init, so a fresh AFT-conv
// equals AFT-simple. ctx.causal selects the causal variants (spec §4.5); ctx.attn_drop is not used (no attention map).
std::vector<MixerOptionSpec> aft_full_options();
std::vector<MixerOptionSpec> aft_local_options();
std::vector<MixerOptionSpec> aft_conv_options();

class AftMixer : public TokenMixer {
 public:
  AftMixer(AftVariant variant, const MixerContext& ctx);
  // x [B, N, D] -> [B, N, D], N <= seq_len. lengths (int32 [B] on x's device): padded keys never reach valid
  // outputs, padded outputs are the projection of 0 and padded inputs get zero gradient.
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor()) override;
  // The four Linears on every token, then per variant (2 FLOPs per multiply-add; a key's exp(K)·[V | 1]
  // is 2·I multiply-adds): full U·V_pᵀ (2·n²·d') and 4·I per visible pair; local the band's bias (2·d' per band
  // pair), then as the op computes it: the key sums (4·I·n) and a correction of 4·I per band pair (band form), or
  // 4·I per visible pair (dense form, when the band is wider than N/4); simple 4·I·n; conv 4·I per key and per
  // band pair of its kernel.
  std::optional<double> forward_flops(int64_t n) const override;

  // AFT-conv's kernel after re-parameterisation, [H, s] (what the op receives).
  Tensor conv_kernel() const;

  AftVariant variant;
  std::shared_ptr<Linear> to_q, to_k, to_v, proj;
  Tensor pos_u, pos_v;                        // full, local: [seq_len, rank]
  Tensor conv_weight, conv_gamma, conv_beta;  // conv: [H, s], [H], [H]
  int64_t dim, inner_dim, seq_len, rank = 0, window = 0, kernel_size = 0, heads = 0;
  bool causal;
  double proj_drop;
};

std::shared_ptr<TokenMixer> make_aft_full(const MixerContext& ctx);
std::shared_ptr<TokenMixer> make_aft_local(const MixerContext& ctx);
std::shared_ptr<TokenMixer> make_aft_simple(const MixerContext& ctx);
std::shared_ptr<TokenMixer> make_aft_conv(const MixerContext& ctx);

}  // namespace mixgrad::nn
