// Pre-norm Transformer encoder pieces shared by the ViT and the LRA encoders: the MLP, one block with a
// pluggable token mixer (nn/mixer.h), and an ordered list of blocks registered as "0", "1", ...
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/mixer.h"

namespace mixgrad::nn {

// fc1 (dim -> hidden) -> GELU -> Dropout -> fc2 (hidden -> dim) -> Dropout (timm's Mlp). gelu: "none" (exact, erf;
// timm's) or "tanh" (the tanh approximation; flax's default, so LRA's).
class MLP : public Layer {
 public:
  MLP(int64_t dim, int64_t hidden, double drop = 0.0, std::string gelu = "none");
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Linear> fc1, fc2;
  double drop;
  std::string gelu;
};

// x = x + attn(norm1(x)); x = x + mlp(norm2(x)). Members named as in timm's Block (norm1, attn, norm2, mlp), so
// checkpoint keys read "blocks.{i}.attn.qkv.weight". The mixer comes from make_mixer(mixer_name, ctx); its own
// dropouts (ctx.attn_drop, ctx.proj_drop) are inside it.
class TransformerBlock : public Module {
 public:
  TransformerBlock(const std::string& mixer_name, const MixerContext& ctx, int64_t mlp_hidden, double mlp_drop = 0.0,
                   double ln_eps = 1e-6, const std::string& gelu = "none");
  // x [B, N, D]; lengths optional int32 [B] on x's device (valid tokens per sample), passed to the mixer.
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor());
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<TokenMixer> attn;
  std::shared_ptr<MLP> mlp;
};

// Blocks applied in order (torch.nn.ModuleList of blocks: children named "0", "1", ...).
class TransformerBlocks : public Module {
 public:
  TransformerBlocks() : Module("TransformerBlocks") {}
  std::shared_ptr<TransformerBlock> push_back(std::shared_ptr<TransformerBlock> block);
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor());
  size_t size() const { return blocks_.size(); }
  TransformerBlock& operator[](size_t i) const { return *blocks_.at(i); }

 private:
  std::vector<std::shared_ptr<TransformerBlock>> blocks_;
};

}  // namespace mixgrad::nn
