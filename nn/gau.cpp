// GatedAttentionUnit (parameters, initialisation, forward), the pre-norm GAULayer and the layer list (specs/lra.md
// §6.4).
#include "nn/gau.h"

#include "nn/init.h"

namespace mixgrad::nn {

GatedAttentionUnit::GatedAttentionUnit(int64_t d, const GAUOptions& opt)
    : Module("GatedAttentionUnit"), dim(d), options(opt) {
  if (options.expansion == 0) options.expansion = 2 * d;
  const int64_t e = options.expansion, s = options.zdim;
  MIXGRAD_CHECK(d > 0, "GatedAttentionUnit: dim must be positive, got {}", d);
  MIXGRAD_CHECK(e > 0 && s > 0, "GatedAttentionUnit: expansion ({}) and zdim ({}) must be positive", e, s);
  MIXGRAD_CHECK(opt.chunk == -1 || opt.chunk >= 1, "GatedAttentionUnit: chunk = {}, expected -1 (full) or >= 1",
                opt.chunk);
  span_ = opt.chunk > 0 ? opt.chunk : opt.max_positions;
  MIXGRAD_CHECK(span_ >= 1,
                "GatedAttentionUnit: full attention needs max_positions >= 1 (the longest sequence), got {}",
                opt.max_positions);
  in_proj = register_module("in_proj", std::make_shared<Linear>(d, 2 * e + s));
  qk_weight = register_parameter("qk_weight", empty({2, s}));
  qk_bias = register_parameter("qk_bias", zeros({2, s}));
  rel_pos_bias = register_parameter("rel_pos_bias", empty({2 * span_ - 1}));
  out_proj = register_module("out_proj", std::make_shared<Linear>(e, d));
  for (Linear* lin : {in_proj.get(), out_proj.get()}) {
    init::normal_(lin->weight, 0.0, 0.02);
    init::zeros_(lin->bias);
  }
  init::normal_(qk_weight, 0.0, 0.02);
  init::normal_(rel_pos_bias, 0.0, 0.02);
}

std::optional<double> GatedAttentionUnit::own_forward_flops(int64_t n) const {
  return 2.0 * gated_attention_pairs(n, options.chunk) * double(options.zdim + options.expansion);
}

Tensor GatedAttentionUnit::forward(const Tensor& x, const Tensor& lengths) {
  MIXGRAD_CHECK(x.dim() == 3 && x.size(2) == dim, "GatedAttentionUnit: input {} must be [B, L, {}]",
                shape_str(x.shape()), dim);
  const int64_t L = x.size(1), e = options.expansion, s = options.zdim;
  MIXGRAD_CHECK(options.chunk > 0 || L <= span_,
                "GatedAttentionUnit: sequence length {} is longer than max_positions {} (the relative bias's span)",
                L, span_);
  const std::vector<Tensor> uvz = split(silu(in_proj->forward(x)), {e, e, s}, 2);
  const std::vector<Tensor> scale = split(qk_weight, 1, 0), offset = split(qk_bias, 1, 0);  // [1, s] each
  const Tensor q = add(mul(uvz[2], scale[0]), offset[0]);
  const Tensor k = add(mul(uvz[2], scale[1]), offset[1]);
  const Tensor o = gated_attention(q, k, uvz[1], rel_pos_bias, lengths, {options.fn, options.chunk});
  return out_proj->forward(mul(uvz[0], o));
}

GAULayer::GAULayer(int64_t d, const GAUOptions& options, const std::string& norm_name, double eps, double drop)
    : Module("GAULayer"), dropout(drop) {
  MIXGRAD_CHECK(drop >= 0 && drop < 1, "GAULayer: dropout must be in [0, 1), got {}", drop);
  norm = register_module("norm", std::make_shared<SequenceNorm>(norm_name, d, eps));
  gau = register_module("gau", std::make_shared<GatedAttentionUnit>(d, options));
}

Tensor GAULayer::forward(const Tensor& x, const Tensor& lengths) {
  return add(x, mixgrad::dropout(gau->forward(norm->forward(x, lengths), lengths), dropout, is_training()));
}

std::shared_ptr<GAULayer> GAULayers::push_back(std::shared_ptr<GAULayer> layer) {
  layers_.push_back(layer);
  return register_module(std::to_string(layers_.size() - 1), std::move(layer));
}

Tensor GAULayers::forward(const Tensor& x, const Tensor& lengths) {
  Tensor h = x;
  for (auto& l : layers_) h = l->forward(h, lengths);
  return h;
}

}  // namespace mixgrad::nn
