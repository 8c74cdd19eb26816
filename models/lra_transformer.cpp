// LRA Transformer encoder and dual encoder (specs/lra.md §6.1): config metadata, embeddings, positions, blocks,
// pooling and heads.
#include "models/lra_transformer.h"

#include <cmath>

#include "engine/sequence.h"
#include "nn/init.h"
#include "nn/mixer.h"

namespace mixgrad::models {

Tensor sinusoidal_positions(int64_t n, int64_t d) {
  MIXGRAD_CHECK(n >= 0 && d > 0 && d % 2 == 0, "sinusoidal_positions: need n >= 0 and an even d, got {} x {}", n, d);
  Tensor t = empty({n, d});
  float* p = t.data<float>();
  const int64_t half = d / 2;
  for (int64_t pos = 0; pos < n; ++pos)
    for (int64_t i = 0; i < half; ++i) {
      const double w = std::exp(-std::log(10000.0) * double(2 * i) / double(d));
      p[pos * d + 2 * i] = float(std::sin(double(pos) * w));
      p[pos * d + 2 * i + 1] = float(std::cos(double(pos) * w));
    }
  return t;
}

// ---- model ----------------------------------------------------------------------------------------------------
namespace {
// LRA's dense layers in the blocks: xavier-uniform weights, zero biases; a fused "qkv" projection [3I, D] is three
// [I, D] matrices (LRA's separate query, key and value layers), each initialised on its own fans.
void init_block_linears(nn::Module& m, const std::string& name = "") {
  if (auto* lin = dynamic_cast<nn::Linear*>(&m)) {
    const int64_t parts = name == "qkv" && lin->weight.size(0) % 3 == 0 ? 3 : 1, rows = lin->weight.size(0) / parts;
    for (int64_t k = 0; k < parts; ++k) {
      Tensor block = lin->weight.slice0(k * rows, rows);
      nn::init::xavier_uniform_(block);
    }
    if (lin->bias.defined()) nn::init::zeros_(lin->bias);
  }
  for (const auto& [child_name, child] : m.named_children()) init_block_linears(*child, child_name);
}

// The classifier head keeps flax's Dense default: lecun-normal weights (std 1/sqrt(fan_in)), zero biases.
void init_head(nn::Module& m) {
  for (const auto& [name, child] : m.named_children())
    if (auto* lin = dynamic_cast<nn::Linear*>(child.get())) {
      nn::init::normal_(lin->weight, 0.0, 1.0 / std::sqrt(double(lin->in_features)));
      nn::init::zeros_(lin->bias);
    }
}

// Dense(hidden) -> ReLU -> Dense(classes), or for a dual encoder Dense(hidden) -> ReLU -> Dense(hidden/2) -> ReLU ->
// Dense(classes) (the LRA matching head), registered as "0", "1", ... like torch.nn.Sequential.
std::shared_ptr<nn::Sequential> make_head(int64_t in, int64_t hidden, int64_t classes, bool dual) {
  auto head = std::make_shared<nn::Sequential>();
  head->push_back(std::make_shared<nn::Linear>(in, hidden));
  head->push_back(nn::ReLU());
  if (dual) {
    const int64_t half = std::max<int64_t>(hidden / 2, 1);
    head->push_back(std::make_shared<nn::Linear>(hidden, half));
    head->push_back(nn::ReLU());
    head->push_back(std::make_shared<nn::Linear>(half, classes));
  } else {
    head->push_back(std::make_shared<nn::Linear>(hidden, classes));
  }
  return head;
}
}  // namespace

LraTransformer::LraTransformer(const LraConfig& cfg) : LraModel("LraTransformer", cfg) {
  MIXGRAD_CHECK(cfg_.model == "transformer", "LraTransformer: the config is of model family {}, not transformer",
                cfg_.model);
  cfg_.validate();
  const int64_t d = cfg_.embed_dim;
  if (cfg_.input == "tokens") {
    embed_ = register_module("embed", std::make_shared<nn::Embedding>(cfg_.vocab_size, d));  // N(0, 1), as LRA's
  } else {
    pixel_embed_ = register_module("pixel_embed", std::make_shared<nn::RealNumberEmbedding>(d));
  }
  if (cfg_.pool == "cls") cls_token_ = register_parameter("cls_token", zeros({1, 1, d}));
  if (cfg_.pos == "learned") {
    pos_embed_ = register_parameter("pos_embed", empty({1, cfg_.seq_len(), d}));
    nn::init::normal_(pos_embed_, 0.0, 0.02);
  } else if (cfg_.pos == "sinusoidal") {
    sinusoid_ = sinusoidal_positions(cfg_.seq_len(), d);
  }
  nn::MixerContext ctx;
  ctx.dim = d;
  ctx.inner_dim = cfg_.qkv_dim;
  ctx.num_heads = cfg_.num_heads;
  ctx.seq_len = cfg_.seq_len();
  ctx.grid_h = cfg_.grid_h, ctx.grid_w = cfg_.grid_w;
  ctx.has_cls_token = cfg_.pool == "cls";
  ctx.qkv_bias = false;
  ctx.causal = cfg_.causal;
  ctx.num_layers = cfg_.depth;
  ctx.attn_drop = cfg_.attn_dropout;
  ctx.proj_drop = cfg_.dropout;
  ctx.options = nn::resolve_mixer_options(cfg_.mixer, cfg_.mixer_options);
  blocks_ = register_module("blocks", std::make_shared<nn::TransformerBlocks>());
  for (int64_t i = 0; i < cfg_.depth; ++i) {
    ctx.layer_index = i;
    blocks_->push_back(
        std::make_shared<nn::TransformerBlock>(cfg_.mixer, ctx, cfg_.mlp_dim, cfg_.dropout, cfg_.ln_eps));
  }
  seq_multiple_ = (*blocks_)[0].attn->sequence_multiple();
  norm_ = register_module("norm", std::make_shared<nn::LayerNorm>(d, cfg_.ln_eps));
  const int64_t head_in = cfg_.dual == "nli" ? 4 * d : cfg_.dual == "concat" ? 2 * d : d;
  head_ = register_module("head", make_head(head_in, cfg_.head_dim > 0 ? cfg_.head_dim : cfg_.mlp_dim, cfg_.num_classes,
                                            cfg_.dual != "none"));
  init_block_linears(*blocks_);
  init_head(*head_);
}

Tensor LraTransformer::embed(const Tensor& tokens) {
  if (embed_) {
    MIXGRAD_CHECK(tokens.dtype() == DType::i64, "LraTransformer: token ids must be int64, got {}", tokens.dtype());
    return embed_->forward(tokens);
  }
  MIXGRAD_CHECK(is_floating(tokens.dtype()), "LraTransformer: pixel intensities must be floating point, got {}",
                tokens.dtype());
  // e = x·w + b with x = (v/255 − mean)/std, one scalar per position.
  return pixel_embed_->forward(
      add_scalar(mul_scalar(tokens, 1.0 / (255.0 * cfg_.pixel_std)), -cfg_.pixel_mean / cfg_.pixel_std));
}

Tensor LraTransformer::positions(int64_t n, DType dtype, Device device) {
  if (pos_embed_.defined()) return narrow(pos_embed_, 1, 0, n);
  if (!sinusoid_device_.defined() || sinusoid_device_.device() != device || sinusoid_device_.dtype() != dtype)
    sinusoid_device_ = sinusoid_.to(dtype).to(device);
  return narrow(sinusoid_device_, 0, 0, n).reshape({1, n, cfg_.embed_dim});
}

Tensor LraTransformer::encode(const Tensor& tokens, const Tensor& lengths) {
  MIXGRAD_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.size(1) >= 1 && tokens.size(1) <= cfg_.max_len,
                "LraTransformer: expected tokens [B, L] with 1 <= L <= max_len = {}, got {}", cfg_.max_len,
                tokens.defined() ? shape_str(tokens.shape()) : std::string("undefined"));
  const int64_t b = tokens.size(0), d = cfg_.embed_dim;
  check_lengths("LraTransformer", lengths, b, tokens.device(), 1, tokens.size(1));
  Tensor x = embed(tokens);  // [B, L, D]
  Tensor len = lengths;
  if (cls_token_.defined()) {
    x = cat({expand(cls_token_, {b, 1, d}), x}, 1);
    len = add_to_lengths(lengths, 1);
  }
  const int64_t n0 = x.size(1);
  if (cfg_.pos != "none") x = add(x, positions(n0, x.dtype(), x.device()));
  // Right-pad to what the mixer needs (CSP's groups of K); the extra positions are padding like any other.
  const int64_t n = (n0 + seq_multiple_ - 1) / seq_multiple_ * seq_multiple_;
  if (n != n0) x = cat({x, zeros({b, n - n0, d}, TensorOptions(x.dtype(), x.device()))}, 1);
  x = dropout(x, cfg_.dropout, is_training());
  x = norm_->forward(blocks_->forward(x, len));
  if (cls_token_.defined()) return narrow(x, 1, 0, 1).reshape({b, d});
  return masked_mean(x, len);
}

Tensor LraTransformer::forward(const Tensor& tokens, const Tensor& lengths, const Tensor& tokens2,
                               const Tensor& lengths2) {
  const Tensor u = encode(tokens, lengths);
  if (cfg_.dual == "none") {
    MIXGRAD_CHECK(!tokens2.defined(), "LraTransformer: a second document was given to a single-input model");
    return head_->forward(u);
  }
  MIXGRAD_CHECK(tokens2.defined() && lengths2.defined(), "LraTransformer: the dual encoder needs two documents");
  const Tensor v = encode(tokens2, lengths2);
  const Tensor feats = cfg_.dual == "nli" ? cat({u, v, mul(u, v), sub(u, v)}, 1) : cat({u, v}, 1);
  return head_->forward(feats);
}

}  // namespace mixgrad::models
