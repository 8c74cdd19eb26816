// DCMHA token mixer (specs/mixers.md §3): options, the dynamic weight generator and the forward.
#include "nn/mixers/dcmha_mixer.h"

#include <cmath>

#include "engine/compose.h"
#include "nn/init.h"

namespace mixgrad::nn {

std::vector<MixerOptionSpec> dcmha_mixer_options() {
  using T = MixerOptionSpec::Type;
  return {
      {"dcmha_rank", T::integer, "2", "dynamic rank R of the query- and key-wise Compose terms", {}, 1, 8},
      {"dcmha_window",
       T::integer,
       "256",
       "local window W of the local layers: t - W < s <= t when causal, |t - s| < W otherwise",
       {},
       1,
       1e9},
      {"dcmha_layers",
       T::choice,
       "LG",
       "local (L) / global (G) layer pattern, cycled over the layers",
       {"LG", "GL", "LGLL", "G", "L"}},
      {"dcmha_static", T::boolean, "false", "add the static H x H Compose matrix to both stages", {}},
      {"dcmha_gelu",
       T::choice,
       "tanh",
       "GELU of the weight generator: tanh approximation (JAX) or exact erf",
       {"tanh", "erf"}},
      {"dcmha_chunk", T::integer, "128", "query rows per materialised chunk of attention scores", {}, 1, 1e9},
  };
}

DcmhaMixer::DcmhaMixer(const MixerContext& ctx)
    : TokenMixer("DcmhaMixer"),
      dim(ctx.dim),
      inner_dim(ctx.inner_dim > 0 ? ctx.inner_dim : ctx.dim),
      num_heads(ctx.num_heads),
      head_dim(0),
      rank(2),
      hidden(0),
      window(0),
      chunk(128),
      causal(ctx.causal),
      local(false),
      gelu("tanh"),
      proj_drop(ctx.proj_drop) {
  const MixerOptions opt = ctx.options.empty() ? resolve_mixer_options("dcmha", {}) : ctx.options;
  MIXGRAD_CHECK(dim > 0 && num_heads > 0 && inner_dim % num_heads == 0,
                "DcmhaMixer: num_heads ({}) must be positive and divide {} ({})", num_heads,
                inner_dim == dim ? "dim" : "the inner (qkv) width", inner_dim);
  MIXGRAD_CHECK(num_heads <= 64, "DcmhaMixer: num_heads = {} exceeds the Compose kernels' limit of 64 heads",
                num_heads);
  MIXGRAD_CHECK(proj_drop >= 0 && proj_drop < 1, "DcmhaMixer: proj_drop must be in [0, 1), got {}", proj_drop);
  MIXGRAD_CHECK(ctx.num_layers >= 1 && ctx.layer_index >= 0 && ctx.layer_index < ctx.num_layers,
                "DcmhaMixer: layer_index = {} must be in [0, num_layers = {})", ctx.layer_index, ctx.num_layers);
  head_dim = inner_dim / num_heads;
  rank = opt.integer("dcmha_rank");
  chunk = opt.integer("dcmha_chunk");
  gelu = opt.text("dcmha_gelu") == "erf" ? "none" : "tanh";
  const std::string& pattern = opt.text("dcmha_layers");
  local = pattern[size_t(ctx.layer_index) % pattern.size()] == 'L';
  window = local ? opt.integer("dcmha_window") : 0;
  hidden = 4 * num_heads;  // C = 4H (spec §3.1)

  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * inner_dim, ctx.qkv_bias));
  proj = register_module("proj", std::make_shared<Linear>(inner_dim, dim, true));
  // Init (spec §3.3, the JAX training code): DCMHA starts as plain MHA up to ~1e-2-relative Compose terms.
  const double D = double(dim), C = double(hidden), H = double(num_heads), R = double(rank);
  dyn_proj = register_parameter("dyn_proj", zeros({4 * hidden + 4 * num_heads, dim}));
  Tensor dw1 = dyn_proj.slice0(0, 4 * hidden), ddw = dyn_proj.slice0(4 * hidden, 4 * num_heads);
  init::normal_(dw1, 0.0, std::sqrt(2.0 / (D + C)));
  init::normal_(ddw, 0.0, std::sqrt(2.0 / (D + H)) * 0.005);
  qkw = register_parameter("qkw", zeros({4, hidden, 2 * rank, num_heads}));
  init::normal_(qkw, 0.0, std::sqrt(1.0 / C) * 2.0 / (H + R) * 0.01);
  if (opt.boolean("dcmha_static")) {
    static_pre = register_parameter("static_pre", zeros({num_heads, num_heads}));
    static_post = register_parameter("static_post", zeros({num_heads, num_heads}));
    init::normal_(static_pre, 0.0, std::sqrt(2.0 / (2.0 * H)) * 0.1);
    init::normal_(static_post, 0.0, std::sqrt(2.0 / (2.0 * H)) * 0.1);
  }
}

Tensor DcmhaMixer::dynamic_weights(const Tensor& x) const {
  MIXGRAD_CHECK(x.dim() == 3 && x.size(2) == dim, "DcmhaMixer: expected input [B, N, {}], got {}", dim,
                shape_str(x.shape()));
  const int64_t B = x.size(0), N = x.size(1), H = num_heads, C = hidden, R = rank;
  const Tensor z = linear(x, dyn_proj);  // [B, N, 4C + 4H]: u of the four slots, then the dd pre-activations
  const Tensor u = permute(narrow(z, 2, 0, 4 * C).reshape({B * N, 4, C}), {1, 0, 2});  // [4, BN, C]
  const Tensor w = matmul(mixgrad::gelu(u, gelu), qkw.reshape({4, C, 2 * R * H})).reshape({4, B, N, 2 * R, H});
  const Tensor w1 = rms_norm(narrow(w, 3, 0, R), {H}, Tensor(), 1e-6);  // RMSNorm over H, no scale, w1 only
  const Tensor dd = permute(tanh(narrow(z, 2, 4 * C, 4 * H)).reshape({B * N, 4, H}), {1, 0, 2});  // [4, BN, H]
  return cat({w1, narrow(w, 3, R, R), dd.reshape({4, B, N, 1, H})}, 3);
}

Tensor DcmhaMixer::forward(const Tensor& x, const Tensor& lengths) {
  MIXGRAD_CHECK(x.dim() == 3 && x.size(2) == dim && x.size(0) >= 1 && x.size(1) >= 1,
                "DcmhaMixer: expected input [B, N, {}] with B, N >= 1, got {}", dim, shape_str(x.shape()));
  const int64_t B = x.size(0), N = x.size(1);
  // [B, N, 3, H, d] -> [3, B, H, N, d]; q, k, v are views of its three leading slices.
  const Tensor qkv5 = permute(qkv->forward(x).reshape({B, N, 3, num_heads, head_dim}), {2, 0, 3, 1, 4});
  const Shape hs{B, num_heads, N, head_dim};
  const Tensor q = narrow(qkv5, 0, 0, 1).reshape(hs), k = narrow(qkv5, 0, 1, 1).reshape(hs),
               v = narrow(qkv5, 0, 2, 1).reshape(hs);
  const Tensor o = dcmha_attention(q, k, v, dynamic_weights(x), static_pre, static_post,
                                   DcmhaMask{lengths, causal, window}, chunk, 1.0 / std::sqrt(double(head_dim)));
  const Tensor merged = permute(o, {0, 2, 1, 3}).reshape({B, N, inner_dim});
  return dropout(proj->forward(merged), proj_drop, is_training());
}

std::shared_ptr<TokenMixer> make_dcmha_mixer(const MixerContext& ctx) { return std::make_shared<DcmhaMixer>(ctx); }

std::optional<double> DcmhaMixer::forward_flops(int64_t n) const {
  const double H = double(num_heads), R = double(rank), C = double(hidden), N = double(n);
  const double generator = 2.0 * N * double(dim) * (4.0 * C + 4.0 * H) + 2.0 * N * 4.0 * C * 2.0 * R * H;
  const double pairs = visible_pairs(n, causal, window);
  const double compose = 2.0 * pairs * (2.0 * (4.0 * R + 2.0) * H + (static_pre.defined() ? 2.0 * H * H : 0.0));
  return N * linear_flops_per_row(*this) + generator + 4.0 * double(inner_dim) * pairs + compose;
}

}  // namespace mixgrad::nn
