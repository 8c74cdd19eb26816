// Token mixers: modules mapping [B, N, D] (+ optional key-padding mask) to [B, N, D], chosen by name from one registry.
// AGREED API — see docs/vit-api.md; implemented in nn/mixer.cpp.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace mixgrad::nn {

struct MixerContext {
  int64_t dim = 0, num_heads = 1, seq_len = 0;  // tokens N including a class token if present
  int64_t grid_h = 0, grid_w = 0;                // patch grid when tokens come from an image (0 otherwise)
  bool has_cls_token = false;
  bool qkv_bias = true;
  double attn_drop = 0.0, proj_drop = 0.0;
  std::map<std::string, std::string> options;    // mixer-specific ("csp_k" = "2", ...)
};

// [B, N, D] (+ optional key-padding mask [B, N] uint8, 1 = valid) -> [B, N, D]
class TokenMixer : public Module {
 public:
  using Module::Module;
  virtual Tensor forward(const Tensor& x, const Tensor& key_padding_mask = Tensor()) = 0;
};

using MixerFactory = std::function<std::shared_ptr<TokenMixer>(const MixerContext&)>;
// Unknown name: error listing the known ones. The registry is one explicit table in nn/mixer.cpp.
std::shared_ptr<TokenMixer> make_mixer(const std::string& name, const MixerContext& ctx);
std::vector<std::string> mixer_names();

}  // namespace mixgrad::nn
