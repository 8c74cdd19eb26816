// DCMHA token mixer (DCFormer: Xiao et al., "Improving Transformers with Dynamically Composable Multi-Head
// Attention", arXiv 2405.08553; specs/mixers.md §3): multi-head self-attention whose score and probability maps are
// mixed across heads per (query, key) by Compose, with query- and key-wise weights generated from the mixer's
// (normalised) input. Registered as "dcmha" in nn/mixer.cpp; the ops are engine/compose.h.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/mixer.h"

namespace mixgrad::nn {

// Declared options (defaults from the spec / the DCFormer++ 405M JAX config):
//   dcmha_rank     dynamic rank R (default 2, every released config), 1..8
//   dcmha_window   local window W (default 256): key s visible to query t iff t − W < s <= t (causal), |t − s| < W
//                  otherwise
//   dcmha_layers   which layers are local (L) / global (G), cycled over ctx.layer_index: LG (default: 405M config
//                  window_size [256, null]), GL, LGLL (DCFormer-2.8B), G (all global), L (all local)
//   dcmha_static   the static H×H Compose matrix, per stage (default false, as both released JAX configs)
//   dcmha_gelu     the generator's GELU: tanh (default, JAX nn.gelu) or erf (the PyTorch port)
//   dcmha_chunk    query rows per materialised score chunk (default 128, the reference's evaluation chunk)
std::vector<MixerOptionSpec> dcmha_mixer_options();

class DcmhaMixer : public TokenMixer {
 public:
  // Uses ctx.dim, ctx.inner_dim (0 = dim; num_heads must divide it), ctx.num_heads (<= 64), ctx.qkv_bias,
  // ctx.proj_drop, ctx.causal, ctx.layer_index / ctx.num_layers (the layer pattern). ctx.attn_drop is ignored
  // (DCFormer has no attention dropout, and dropping probabilities before post-Compose has no reference meaning).
  explicit DcmhaMixer(const MixerContext& ctx);
  // x [B, N, D] (the normalised block input x̂) -> [B, N, D]; lengths (int32 [B] on x's device) hide padded keys.
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor()) override;
  // qkv and proj on every token, the generator (x·dyn_projᵀ and the qkw contraction) on every token,
  // 4 · inner per visible (t, s) pair for Q·Kᵀ and P·V, and per pair and stage 2·(4R + 2)·H (spec §3.6's count) for Compose
  // (+ 2H² with the static matrix). Visible pairs follow this layer's window and the causal flag.
  std::optional<double> forward_flops(int64_t n) const override;
  // The dynamic weights of x (spec §3.3): [4, B, N, 2R + 1, H], slots [pre-q, pre-k, post-q, post-k], rows
  // w1 (RMS-normalised over H, no scale), w2, dd = tanh(x·ddW). Differentiable.
  Tensor dynamic_weights(const Tensor& x) const;

  std::shared_ptr<Linear> qkv;   // [3I, D]: rows 0..I-1 q, I..2I-1 k, 2I..3I-1 v; head h owns rows h·d.. in each
  std::shared_ptr<Linear> proj;  // [D, I] with bias
  // The generator's fused projection [4C + 4H, D] (C = 4H): rows c·C.. = dw1[:, c, :]ᵀ, rows 4C + c·H.. = ddW's
  // slot c; one GEMM x·dyn_projᵀ gives u and the dd pre-activations. Not an nn::Linear, so that the models' Linear
  // initialisers keep the spec's init (§3.3).
  Tensor dyn_proj;
  Tensor qkw;                      // [4, C, 2R, H]
  Tensor static_pre, static_post;  // [H, H] when dcmha_static, else undefined
  int64_t dim, inner_dim, num_heads, head_dim, rank, hidden, window, chunk;
  bool causal, local;
  std::string gelu;  // "tanh" or "none" (erf), as engine gelu() takes it
  double proj_drop;
};

std::shared_ptr<TokenMixer> make_dcmha_mixer(const MixerContext& ctx);

}  // namespace mixgrad::nn
