// Basic layers.
#include "nn/layers.h"

#include "nn/init.h"

namespace mixgrad::nn {

Linear::Linear(int64_t in, int64_t out, bool has_bias) : Layer("Linear"), in_features(in), out_features(out) {
  MIXGRAD_CHECK(in > 0 && out > 0, "Linear: features must be positive, got in={} out={}", in, out);
  weight = register_parameter("weight", empty({out, in}));
  if (has_bias) bias = register_parameter("bias", empty({out}));
  init::linear_default_(weight, bias);
}

Tensor Linear::forward(const Tensor& x) {
  MIXGRAD_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "Linear: input {} does not end in in_features {}",
                shape_str(x.shape()), in_features);
  return linear(x, weight, bias);
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& l : layers_) h = l->forward(h);
  return h;
}

std::shared_ptr<Activation> ReLU() { return std::make_shared<Activation>("ReLU", [](const Tensor& x) { return relu(x); }); }
std::shared_ptr<Activation> GELU(const std::string& approximate) {
  return std::make_shared<Activation>("GELU", [approximate](const Tensor& x) { return gelu(x, approximate); });
}
std::shared_ptr<Activation> SiLU() { return std::make_shared<Activation>("SiLU", [](const Tensor& x) { return silu(x); }); }

Dropout::Dropout(double p_) : Layer("Dropout"), p(p_) {
  MIXGRAD_CHECK(p >= 0 && p <= 1, "Dropout: probability must be in [0, 1], got {}", p);
}

LayerNorm::LayerNorm(int64_t d, double e, bool affine) : Layer("LayerNorm"), dim(d), eps(e) {
  MIXGRAD_CHECK(d > 0, "LayerNorm: dim must be positive, got {}", d);
  if (affine) {
    weight = register_parameter("weight", ones({d}));
    bias = register_parameter("bias", zeros({d}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, {dim}, weight, bias, eps); }

Embedding::Embedding(int64_t n, int64_t d) : Layer("Embedding") {
  MIXGRAD_CHECK(n > 0 && d > 0, "Embedding: sizes must be positive, got {} x {}", n, d);
  weight = register_parameter("weight", empty({n, d}));
  init::normal_(weight, 0.0, 1.0);
}

RealNumberEmbedding::RealNumberEmbedding(int64_t d) : Layer("RealNumberEmbedding"), dim(d) {
  MIXGRAD_CHECK(d > 0, "RealNumberEmbedding: dim must be positive, got {}", d);
  weight = register_parameter("weight", empty({d}));
  bias = register_parameter("bias", empty({d}));
  init::normal_(weight, 0.0, 1.0);
  init::normal_(bias, 0.0, 0.1);
}

Tensor RealNumberEmbedding::forward(const Tensor& x) {
  MIXGRAD_CHECK(is_floating(x.dtype()), "RealNumberEmbedding: expected floating-point input, got {}", x.dtype());
  Shape s = x.shape(), row(x.dim() + 1, 1);
  s.push_back(1);
  row.back() = dim;
  return add(mul(x.reshape(s), weight.reshape(row)), bias.reshape(row));
}

}  // namespace mixgrad::nn
