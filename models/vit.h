// Vision Transformer with a pluggable token mixer, timm parameter names, and the named presets of specs/vit.md.
// Implemented in models/vit.cpp.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/module.h"
#include "nn/transformer.h"

namespace mixgrad::models {

struct ViTConfig {
  int64_t img_size = 28, in_chans = 1, patch_size = 4, embed_dim = 64, depth = 4, num_heads = 4, mlp_hidden = 128,
          num_classes = 10;
  // "token" (cls token, `norm` then token 0) or "avg" (mean of patch tokens, then `fc_norm`)
  std::string pool = "token";
  bool qkv_bias = true;
  double ln_eps = 1e-6, drop_rate = 0.0, attn_drop_rate = 0.0, pos_drop_rate = 0.0;
  bool csp_layout = false;    // CSP-repo parity: keep cls_token [1,1,D] and pos_embed [1,N+1,D] with pool=avg
  std::string init = "timm";  // "timm" (trunc-normal 0.02) or "csp" (randn pos/cls, PyTorch-default Linear)
  std::string mixer = "softmax";
  std::map<std::string, std::string> mixer_options;  // as given (e.g. --mixer-opt); checked against the mixer's declaration

  int64_t grid() const;  // img_size / patch_size
  int64_t num_patches() const;
  std::map<std::string, std::string> to_metadata() const;                     // specs/vit.md §2 metadata keys
  static ViTConfig from_metadata(const std::map<std::string, std::string>&);  // inverse; errors name a missing/bad key
  void validate() const;             // clear errors naming the fields, including the bounds of models/config_metadata.h
  double approx_parameters() const;  // about how many parameters the config builds (the 2^32 bound)
};

// "fmnist-tiny", "fmnist-small", "cifar10-paper", "cifar100-paper"; unknown: error listing the names.
ViTConfig vit_preset(const std::string& name);
std::vector<std::string> vit_preset_names();

// [B, C, H, W] -> [B, N, C·p·p] (specs/vit.md §1.2): token n = gy·(W/p) + gx, feature f = c·p² + i·p + j holds
// x[b, c, gy·p + i, gx·p + j] (channel slowest). Built from reshape + permute, so its backward is the inverse scatter.
Tensor patchify(const Tensor& images, int64_t patch_size);

// The parameters of PyTorch's Conv2d(C, D, kernel = stride = p): weight [D, C, p, p], bias [D].
class PatchProjection : public nn::Module {
 public:
  PatchProjection(int64_t in_chans, int64_t embed_dim, int64_t patch_size);
  Tensor weight, bias;
};

// patchify, then E = P · W_peᵀ + b with W_pe = proj.weight viewed as [D, C·p·p] (same storage): [B,C,H,W] -> [B,N,D].
class PatchEmbed : public nn::Layer {
 public:
  PatchEmbed(int64_t img_size, int64_t patch_size, int64_t in_chans, int64_t embed_dim);
  Tensor forward(const Tensor& images) override;  // error names the expected [B, C, H, W]
  std::shared_ptr<PatchProjection> proj;
  int64_t img_size, patch_size, in_chans, embed_dim;
};

class VisionTransformer : public nn::Module {
 public:
  explicit VisionTransformer(const ViTConfig& cfg);
  // [B, C, H, W] float -> logits [B, num_classes]; the error names the expected shape.
  Tensor forward(const Tensor& images);
  const ViTConfig& config() const { return cfg_; }

 private:
  ViTConfig cfg_;
  std::shared_ptr<PatchEmbed> patch_embed_;
  Tensor cls_token_, pos_embed_;  // cls_token_ undefined with pool = avg unless csp_layout
  std::shared_ptr<nn::TransformerBlocks> blocks_;
  std::shared_ptr<nn::LayerNorm> norm_;  // "norm" (pool = token) or "fc_norm" (pool = avg)
  std::shared_ptr<nn::Linear> head_;
};

}  // namespace mixgrad::models
