// AFT token mixers (specs/mixers.md §4): options, parameters and the forward of the four variants.
#include "nn/mixers/aft_mixer.h"

#include "engine/aft.h"
#include "nn/init.h"

namespace mixgrad::nn {
namespace {

using T = MixerOptionSpec::Type;

MixerOptionSpec rank_option() {
  return {"aft_rank", T::integer, "128", "rank d' of the factorised position bias w = U V_p^T (U, V_p: [seq_len, d'])",
          {},         1,          65536};
}

const char* variant_name(AftVariant v) {
  switch (v) {
    case AftVariant::full:
      return "aft-full";
    case AftVariant::local:
      return "aft-local";
    case AftVariant::simple:
      return "aft-simple";
    case AftVariant::conv:
      return "aft-conv";
  }
  return "aft";
}

}  // namespace

std::vector<MixerOptionSpec> aft_full_options() { return {rank_option()}; }

std::vector<MixerOptionSpec> aft_local_options() {
  return {rank_option(),
          {"aft_window",
           T::integer,
           "32",
           "local window s: keys with |t - t'| < s (causal: t - s < t' <= t) carry the learned bias, the rest bias 0",
           {},
           1,
           double(int64_t{1} << 31)}};
}

std::vector<MixerOptionSpec> aft_conv_options() {
  return {{"aft_conv_kernel", T::integer, "11", "AFT-conv kernel size s (odd unless causal)", {}, 1, 4095},
          {"aft_conv_heads",
           T::integer,
           "0",
           "AFT-conv heads (one key per head); 0 = the model's number of heads",
           {},
           0,
           65536}};
}

AftMixer::AftMixer(AftVariant v, const MixerContext& ctx)
    : TokenMixer("AftMixer"),
      variant(v),
      dim(ctx.dim),
      inner_dim(ctx.inner_dim > 0 ? ctx.inner_dim : ctx.dim),
      seq_len(ctx.seq_len),
      causal(ctx.causal),
      proj_drop(ctx.proj_drop) {
  const char* name = variant_name(v);
  const MixerOptions opt = ctx.options.empty() ? resolve_mixer_options(name, {}) : ctx.options;
  MIXGRAD_CHECK(dim > 0 && inner_dim > 0, "{}: dim ({}) and the mixing width ({}) must be positive", name, dim,
                inner_dim);
  MIXGRAD_CHECK(seq_len > 0,
                "{}: seq_len (the longest sequence, which sizes the position biases) must be positive, got {}", name,
                seq_len);
  MIXGRAD_CHECK(proj_drop >= 0 && proj_drop < 1, "{}: proj_drop must be in [0, 1), got {}", name, proj_drop);
  int64_t key_width = inner_dim;
  if (v == AftVariant::full || v == AftVariant::local) {
    rank = opt.integer("aft_rank");
    pos_u = register_parameter("pos_u", empty({seq_len, rank}));
    pos_v = register_parameter("pos_v", empty({seq_len, rank}));
    init::normal_(pos_u, 0.0, 0.1);  // N(0, 10^-2) read as variance 10^-2 (spec §4.2)
    init::normal_(pos_v, 0.0, 0.1);
    if (v == AftVariant::local) window = opt.integer("aft_window");
  } else if (v == AftVariant::conv) {
    kernel_size = opt.integer("aft_conv_kernel");
    heads = opt.integer("aft_conv_heads");
    if (heads == 0) heads = ctx.num_heads;
    MIXGRAD_CHECK(heads >= 1 && inner_dim % heads == 0,
                  "aft-conv: {} heads do not divide the mixing width {} (aft_conv_heads, or the model's num_heads "
                  "when it is 0)",
                  heads, inner_dim);
    MIXGRAD_CHECK(causal || kernel_size % 2 == 1,
                  "aft-conv: aft_conv_kernel = {} must be odd (a kernel centred on the query) unless causal",
                  kernel_size);
    key_width = heads;
    conv_weight = register_parameter("conv_weight", empty({heads, kernel_size}));
    conv_gamma = register_parameter("conv_gamma", zeros({heads}));
    conv_beta = register_parameter("conv_beta", zeros({heads}));
    init::normal_(conv_weight, 0.0, 1.0);
  }
  to_q = register_module("to_q", std::make_shared<Linear>(dim, inner_dim, ctx.qkv_bias));
  to_k = register_module("to_k", std::make_shared<Linear>(dim, key_width, ctx.qkv_bias));
  to_v = register_module("to_v", std::make_shared<Linear>(dim, inner_dim, ctx.qkv_bias));
  proj = register_module("proj", std::make_shared<Linear>(inner_dim, dim, true));
}

Tensor AftMixer::conv_kernel() const {
  const Tensor centred = sub(conv_weight, mean(conv_weight, {1}, true));
  const Tensor std_dev = sqrt(mean(mul(centred, centred), {1}, true));
  const Tensor normalised = div(centred, add_scalar(std_dev, 1e-5));
  return add(mul(conv_gamma.reshape({heads, 1}), normalised), conv_beta.reshape({heads, 1}));
}

Tensor AftMixer::forward(const Tensor& x, const Tensor& lengths) {
  const char* name = variant_name(variant);
  MIXGRAD_CHECK(x.dim() == 3 && x.size(2) == dim, "{}: expected input [B, N, {}], got {}", name, dim,
                shape_str(x.shape()));
  const int64_t n = x.size(1);
  MIXGRAD_CHECK(n <= seq_len,
                "{}: input has N = {} tokens but the mixer was built for seq_len = {} (its position biases have "
                "seq_len rows; input {})",
                name, n, seq_len, shape_str(x.shape()));
  const Tensor q = to_q->forward(x), k = to_k->forward(x), v = to_v->forward(x);
  Tensor y;
  if (variant == AftVariant::full) {
    const Tensor w = matmul(pos_u.slice0(0, n), transpose(pos_v.slice0(0, n), 0, 1));
    y = aft_full(q, k, v, w, lengths, causal);
  } else if (variant == AftVariant::local) {  // only the band of U V_pᵀ: O(N·s·d') instead of O(N²·d')
    const Tensor w_band = aft_local_bias(pos_u.slice0(0, n), pos_v.slice0(0, n), window, causal);
    y = aft_local_band(q, k, v, w_band, window, lengths, causal);
  } else if (variant == AftVariant::simple) {
    y = aft_simple(q, k, v, lengths, causal);
  } else {
    y = aft_conv(q, k, v, conv_kernel(), lengths, causal);
  }
  return dropout(proj->forward(y), proj_drop, is_training());
}

std::shared_ptr<TokenMixer> make_aft_full(const MixerContext& ctx) {
  return std::make_shared<AftMixer>(AftVariant::full, ctx);
}
std::shared_ptr<TokenMixer> make_aft_local(const MixerContext& ctx) {
  return std::make_shared<AftMixer>(AftVariant::local, ctx);
}
std::shared_ptr<TokenMixer> make_aft_simple(const MixerContext& ctx) {
  return std::make_shared<AftMixer>(AftVariant::simple, ctx);
}
std::shared_ptr<TokenMixer> make_aft_conv(const MixerContext& ctx) {
  return std::make_shared<AftMixer>(AftVariant::conv, ctx);
}

std::optional<double> AftMixer::forward_flops(int64_t n) const {
  const double N = double(n), I = double(inner_dim), keys = 4.0 * I * N;  // Σ_t' exp(K_t')·[V_t' | 1]
  double mixing = 0;
  if (variant == AftVariant::full) {
    mixing = 2.0 * N * N * double(rank) + 4.0 * I * visible_pairs(n, causal);
  } else if (variant == AftVariant::local) {
    // As the op runs it (engine/aft.h): the dense GEMM over every visible pair, or the key sums once and a
    // correction per band pair.
    const double band = visible_pairs(n, causal, window);
    mixing = 2.0 * double(rank) * band +
             (aft_local_automatic_dense(window, n, causal) ? 4.0 * I * visible_pairs(n, causal) : keys + 4.0 * I * band);
  } else if (variant == AftVariant::simple) {
    mixing = keys;
  } else {  // a key per head, expanded to its channels: the op sums exp(K)·[V | 1] per channel
    const double band = visible_pairs(n, causal, causal ? kernel_size : (kernel_size + 1) / 2);
    mixing = 4.0 * I * (N + band);
  }
  return N * linear_flops_per_row(*this) + mixing;
}

}  // namespace mixgrad::nn
