// Vision Transformer (specs/vit.md §1–§3, §8): patch embedding, class token / position embedding, pre-norm blocks
// with a pluggable token mixer, token or mean pooling, head; config metadata and presets.
#include "models/vit.h"

#include <algorithm>
#include <cmath>

#include "models/config_metadata.h"
#include "nn/init.h"

namespace mixgrad::models {

// ---- config ---------------------------------------------------------------------------------------------------
int64_t ViTConfig::grid() const { return patch_size > 0 ? img_size / patch_size : 0; }
int64_t ViTConfig::num_patches() const { return grid() * grid(); }


std::map<std::string, std::string> ViTConfig::to_metadata() const {
  std::map<std::string, std::string> m = {
      {"arch", "vit"},
      {"mixer", mixer},
      {"img_size", std::to_string(img_size)},
      {"in_chans", std::to_string(in_chans)},
      {"patch_size", std::to_string(patch_size)},
      {"embed_dim", std::to_string(embed_dim)},
      {"depth", std::to_string(depth)},
      {"num_heads", std::to_string(num_heads)},
      {"mlp_hidden", std::to_string(mlp_hidden)},
      {"num_classes", std::to_string(num_classes)},
      {"pool", pool},
      {"qkv_bias", meta_bool(qkv_bias)},
      {"ln_eps", meta_double(ln_eps)},
      {"drop_rate", meta_double(drop_rate)},
      {"attn_drop_rate", meta_double(attn_drop_rate)},
      {"pos_drop_rate", meta_double(pos_drop_rate)},
      {"csp_layout", meta_bool(csp_layout)},
      {"init", init},
  };
  put_mixer_options(m, "ViTConfig", mixer, mixer_options);
  return m;
}


ViTConfig ViTConfig::from_metadata(const std::map<std::string, std::string>& meta) {
  // Every field is read with its bounds (the error names the key) before validate() checks how they fit together,
  // and before anything is built.
  using namespace limits;
  const MetaReader r{meta, "ViTConfig"};
  (void)r.choice("arch", {"vit"});
  ViTConfig c;
  c.mixer = r.choice("mixer", nn::mixer_names());
  c.img_size = r.integer_in("img_size", 1, kMaxImageSide);
  c.in_chans = r.integer_in("in_chans", 1, kMaxChannels);
  c.patch_size = r.integer_in("patch_size", 1, c.img_size);
  c.embed_dim = r.integer_in("embed_dim", 1, kMaxWidth);
  c.depth = r.integer_in("depth", 1, kMaxDepth);
  c.num_heads = r.integer_in("num_heads", 1, std::min(c.embed_dim, kMaxHeads));
  c.mlp_hidden = r.integer_in("mlp_hidden", 1, kMaxWidth);
  c.num_classes = r.integer_in("num_classes", 1, kMaxClasses);
  c.pool = r.choice("pool", {"token", "avg"});
  c.qkv_bias = r.boolean("qkv_bias");
  c.ln_eps = r.real_in("ln_eps", 0.0, 1.0, true);
  // Keys added after the first checkpoints keep their defaults when absent.
  const double below_one = std::nextafter(1.0, 0.0);
  if (meta.count("drop_rate")) c.drop_rate = r.real_in("drop_rate", 0.0, below_one);
  if (meta.count("attn_drop_rate")) c.attn_drop_rate = r.real_in("attn_drop_rate", 0.0, below_one);
  if (meta.count("pos_drop_rate")) c.pos_drop_rate = r.real_in("pos_drop_rate", 0.0, below_one);
  if (meta.count("csp_layout")) c.csp_layout = r.boolean("csp_layout");
  if (meta.count("init")) c.init = r.choice("init", {"timm", "csp"});
  c.mixer_options = get_mixer_options(r, c.mixer);
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(fmt::format("ViTConfig::from_metadata: {}", e.what()));
  }
  return c;
}

double ViTConfig::approx_parameters() const {
  const double d = double(embed_dim), m = double(mlp_hidden), tokens = double(num_patches() + 1);
  const double block = 4 * d * d + 2 * d * m + 9 * d + m;  // qkv + proj, MLP, norms and biases
  return double(depth) * block + d * double(in_chans) * double(patch_size) * double(patch_size) + tokens * d +
         d * double(num_classes) + double(num_classes) + 4 * d;
}

void ViTConfig::validate() const {
  using namespace limits;
  auto fail = [](const std::string& what) { throw Error("ViTConfig: " + what); };
  if (img_size <= 0 || patch_size <= 0 || in_chans <= 0)
    fail(fmt::format("img_size ({}), patch_size ({}) and in_chans ({}) must be positive", img_size, patch_size,
                     in_chans));
  if (img_size > kMaxImageSide || in_chans > kMaxChannels)
    fail(fmt::format("img_size ({}) must be at most {} and in_chans ({}) at most {}", img_size, kMaxImageSide, in_chans,
                     kMaxChannels));
  if (img_size % patch_size != 0) fail(fmt::format("patch_size {} must divide img_size {}", patch_size, img_size));
  if (embed_dim <= 0 || num_heads <= 0 || embed_dim % num_heads != 0)
    fail(fmt::format("num_heads ({}) must be positive and divide embed_dim ({})", num_heads, embed_dim));
  if (depth < 1 || mlp_hidden <= 0 || num_classes <= 0)
    fail(fmt::format("depth ({}), mlp_hidden ({}) and num_classes ({}) must be positive", depth, mlp_hidden,
                     num_classes));
  if (embed_dim > kMaxWidth || mlp_hidden > kMaxWidth || depth > kMaxDepth || num_heads > kMaxHeads ||
      num_classes > kMaxClasses)
    fail(fmt::format(
        "embed_dim ({}) and mlp_hidden ({}) must be at most {}, depth ({}) at most {}, num_heads ({}) "
        "at most {}, num_classes ({}) at most {}",
        embed_dim, mlp_hidden, kMaxWidth, depth, kMaxDepth, num_heads, kMaxHeads, num_classes, kMaxClasses));
  if (approx_parameters() > kMaxParameters)
    fail(
        fmt::format("the model would have about {:.3g} parameters, more than the limit of 2^32 (img_size {}, "
                    "patch_size {}, embed_dim {}, depth {}, mlp_hidden {}, num_classes {})",
                    approx_parameters(), img_size, patch_size, embed_dim, depth, mlp_hidden, num_classes));
  if (pool != "token" && pool != "avg") fail(fmt::format("pool must be \"token\" or \"avg\", got \"{}\"", pool));
  if (csp_layout && pool != "avg") fail("csp_layout requires pool = \"avg\"");
  if (init != "timm" && init != "csp") fail(fmt::format("init must be \"timm\" or \"csp\", got \"{}\"", init));
  for (double p : {drop_rate, attn_drop_rate, pos_drop_rate})
    if (!(p >= 0 && p < 1)) fail(fmt::format("dropout rates must be in [0, 1), got {}", p));
  if (!(ln_eps > 0 && ln_eps <= 1)) fail(fmt::format("ln_eps must be a finite number in (0, 1], got {}", ln_eps));
  const std::vector<std::string> names = nn::mixer_names();
  if (std::find(names.begin(), names.end(), mixer) == names.end())
    fail(fmt::format("unknown mixer \"{}\" (known: {})", mixer, fmt::join(names, ", ")));
  (void)nn::resolve_mixer_options(mixer, mixer_options);  // unknown options and bad values are errors here
}

std::vector<std::string> vit_preset_names() {
  return {"fmnist-tiny", "fmnist-small", "cifar10-paper", "cifar100-paper"};
}

ViTConfig vit_preset(const std::string& name) {
  ViTConfig c;  // defaults are fmnist-tiny
  if (name == "fmnist-tiny") return c;
  if (name == "fmnist-small") {
    c.depth = 6;
    c.drop_rate = 0.1;
    return c;
  }
  if (name == "cifar10-paper" || name == "cifar100-paper") {
    const bool c100 = name == "cifar100-paper";
    c.img_size = 32;
    c.in_chans = 3;
    c.patch_size = c100 ? 2 : 4;
    c.embed_dim = 512;
    c.depth = 6;
    c.num_heads = 8;
    c.mlp_hidden = 512;
    c.num_classes = c100 ? 100 : 10;
    c.pool = "avg";
    c.csp_layout = true;
    c.qkv_bias = false;
    c.drop_rate = c.attn_drop_rate = c.pos_drop_rate = 0.1;
    c.ln_eps = 1e-5;
    c.init = "csp";
    return c;
  }
  throw Error(fmt::format("vit_preset: unknown preset \"{}\" (known: {})", name, fmt::join(vit_preset_names(), ", ")));
}

// ---- patch embedding ------------------------------------------------------------------------------------------
Tensor patchify(const Tensor& x, int64_t p) {
  MIXGRAD_CHECK(x.dim() == 4, "patchify: expected images [B, C, H, W], got {}", shape_str(x.shape()));
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  MIXGRAD_CHECK(p > 0 && h % p == 0 && w % p == 0, "patchify: patch size {} must divide the image size {}x{}", p, h, w);
  const int64_t gh = h / p, gw = w / p;
  // [B, C, gy, i, gx, j] -> [B, gy, gx, C, i, j] -> [B, N, C·p·p]
  return permute(x.reshape({b, c, gh, p, gw, p}), {0, 2, 4, 1, 3, 5}).reshape({b, gh * gw, c * p * p});
}

PatchProjection::PatchProjection(int64_t in_chans, int64_t embed_dim, int64_t p) : Module("PatchProjection") {
  weight = register_parameter("weight", empty({embed_dim, in_chans, p, p}));
  bias = register_parameter("bias", empty({embed_dim}));
  nn::init::linear_default_(weight, bias);  // PyTorch's Conv2d default (fan_in = C·p·p)
}

PatchEmbed::PatchEmbed(int64_t img, int64_t p, int64_t c, int64_t d)
    : Layer("PatchEmbed"), img_size(img), patch_size(p), in_chans(c), embed_dim(d) {
  proj = register_module("proj", std::make_shared<PatchProjection>(c, d, p));
}

Tensor PatchEmbed::forward(const Tensor& x) {
  MIXGRAD_CHECK(x.dim() == 4 && x.size(1) == in_chans && x.size(2) == img_size && x.size(3) == img_size,
                "PatchEmbed: expected images [B, {}, {}, {}], got {}", in_chans, img_size, img_size,
                shape_str(x.shape()));
  MIXGRAD_CHECK(is_floating(x.dtype()), "PatchEmbed: expected floating-point images, got {}", x.dtype());
  // The [D, C, p, p] parameter viewed as the [D, C·p·p] Linear weight (reshape shares the storage).
  const Tensor w = proj->weight.reshape({embed_dim, in_chans * patch_size * patch_size});
  return linear(patchify(x, patch_size), w, proj->bias);
}

// ---- model -----------------------------------------------------------------------------------------------------
namespace {
void init_linear_timm(nn::Module& m) {
  if (auto* lin = dynamic_cast<nn::Linear*>(&m)) {
    nn::init::trunc_normal_(lin->weight, 0.02);
    if (lin->bias.defined()) nn::init::zeros_(lin->bias);
  }
  for (const auto& [name, child] : m.named_children()) init_linear_timm(*child);
}
}  // namespace

VisionTransformer::VisionTransformer(const ViTConfig& cfg) : Module("VisionTransformer"), cfg_(cfg) {
  cfg_.validate();
  const int64_t d = cfg_.embed_dim, n = cfg_.num_patches();
  const bool token = cfg_.pool == "token";
  const bool timm = cfg_.init == "timm";
  patch_embed_ =
      register_module("patch_embed", std::make_shared<PatchEmbed>(cfg_.img_size, cfg_.patch_size, cfg_.in_chans, d));
  if (token || cfg_.csp_layout) {
    cls_token_ = register_parameter("cls_token", zeros({1, 1, d}));
    if (timm)
      nn::init::normal_(cls_token_, 0.0, 1e-6);
    else
      nn::init::normal_(cls_token_, 0.0, 1.0);
  }
  pos_embed_ = register_parameter("pos_embed", zeros({1, (token || cfg_.csp_layout) ? n + 1 : n, d}));
  if (timm)
    nn::init::trunc_normal_(pos_embed_, 0.02);
  else
    nn::init::normal_(pos_embed_, 0.0, 1.0);

  nn::MixerContext ctx;
  ctx.dim = d;
  ctx.num_heads = cfg_.num_heads;
  ctx.seq_len = token ? n + 1 : n;
  ctx.grid_h = ctx.grid_w = cfg_.grid();
  ctx.has_cls_token = token;
  ctx.qkv_bias = cfg_.qkv_bias;
  ctx.attn_drop = cfg_.attn_drop_rate;
  ctx.proj_drop = cfg_.drop_rate;
  ctx.options = nn::resolve_mixer_options(cfg_.mixer, cfg_.mixer_options);
  ctx.num_layers = cfg_.depth;
  blocks_ = register_module("blocks", std::make_shared<nn::TransformerBlocks>());
  for (int64_t i = 0; i < cfg_.depth; ++i) {
    ctx.layer_index = i;
    blocks_->push_back(
        std::make_shared<nn::TransformerBlock>(cfg_.mixer, ctx, cfg_.mlp_hidden, cfg_.drop_rate, cfg_.ln_eps));
  }
  const int64_t multiple = (*blocks_)[0].attn->sequence_multiple();
  MIXGRAD_CHECK(ctx.seq_len % multiple == 0,
                "VisionTransformer: the token count N = {}{} is not a multiple of K = {}, which mixer {} needs (its "
                "sequence multiple); choose options, a patch size or a pooling that give such an N",
                ctx.seq_len, token ? fmt::format(" ({} patches + class token)", n) : "", multiple, cfg_.mixer);
  norm_ = register_module(token ? "norm" : "fc_norm", std::make_shared<nn::LayerNorm>(d, cfg_.ln_eps));
  head_ = register_module("head", std::make_shared<nn::Linear>(d, cfg_.num_classes));

  if (timm) {
    // timm's init_weights_vit_timm touches nn.Linear only (the mixers' included): trunc-normal 0.02 weights, zero
    // biases. The patch projection keeps PyTorch's Conv2d default; LayerNorms are 1 / 0 already.
    for (const auto& [name, child] : named_children()) init_linear_timm(*child);
  }
}

Tensor VisionTransformer::forward(const Tensor& images) {
  const int64_t c = cfg_.in_chans, s = cfg_.img_size;
  MIXGRAD_CHECK(images.dim() == 4 && images.size(1) == c && images.size(2) == s && images.size(3) == s,
                "VisionTransformer: expected images [B, {}, {}, {}], got {}", c, s, s, shape_str(images.shape()));
  const int64_t b = images.size(0), d = cfg_.embed_dim, n = cfg_.num_patches();
  Tensor x = patch_embed_->forward(images);  // [B, N, D]
  if (cfg_.pool == "token") {
    x = cat({expand(cls_token_, {b, 1, d}), x}, 1);
    x = add(x, pos_embed_);
  } else if (cfg_.csp_layout) {
    x = add(x, narrow(pos_embed_, 1, 0, n));  // CSP repo: rows 0..N-1, not shifted by the unused class row
  } else {
    x = add(x, pos_embed_);
  }
  x = dropout(x, cfg_.pos_drop_rate, is_training());
  x = blocks_->forward(x);
  if (cfg_.pool == "token") {
    x = narrow(x, 1, 0, 1).reshape({b, d});  // LayerNorm is per token: normalising token 0 alone is the same
  } else {
    x = mean(x, {1});
  }
  x = norm_->forward(x);
  x = dropout(x, cfg_.drop_rate, is_training());
  return head_->forward(x);
}

}  // namespace mixgrad::models
