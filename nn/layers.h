// Basic layers: Linear, Sequential, activations, Dropout, LayerNorm, Embedding.
#pragma once
#include <functional>

#include "nn/module.h"

namespace mixgrad::nn {

// y = x·Wᵀ + b with weight [out, in] (PyTorch layout) and PyTorch's default initialisation.
class Linear : public Layer {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  int64_t in_features, out_features;
};

class Sequential : public Layer {
 public:
  Sequential() : Layer("Sequential") {}
  // Registered under "0", "1", ... like torch.nn.Sequential.
  template <class M> std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    layers_.push_back(m);
    return register_module(std::to_string(layers_.size() - 1), std::move(m));
  }
  Tensor forward(const Tensor& x) override;
  size_t size() const { return layers_.size(); }

 private:
  std::vector<std::shared_ptr<Layer>> layers_;
};

// An element-wise function as a layer (ReLU, GELU, SiLU, Tanh, ...), no parameters.
class Activation : public Layer {
 public:
  Activation(std::string name, std::function<Tensor(const Tensor&)> fn) : Layer(std::move(name)), fn_(std::move(fn)) {}
  Tensor forward(const Tensor& x) override { return fn_(x); }

 private:
  std::function<Tensor(const Tensor&)> fn_;
};
std::shared_ptr<Activation> ReLU();
std::shared_ptr<Activation> GELU(const std::string& approximate = "none");
std::shared_ptr<Activation> SiLU();

class Dropout : public Layer {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override { return dropout(x, p, is_training()); }
  double p;
};

class LayerNorm : public Layer {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  int64_t dim;
  double eps;
};

class Embedding : public Layer {
 public:
  Embedding(int64_t num_embeddings, int64_t dim);  // weight ~ N(0, 1) like PyTorch
  Tensor forward(const Tensor& indices) override { return embedding(weight, indices); }
  Tensor weight;
};

// One real number per position to a vector: x [...] -> x[..., None]·weight + bias [..., dim] (MEGA's
// RealNumberEmbedding, the LRA pixel tasks' real-valued input). weight ~ N(0, 1), bias ~ N(0, 0.1) as MEGA's.
class RealNumberEmbedding : public Layer {
 public:
  explicit RealNumberEmbedding(int64_t dim);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  int64_t dim;
};

}  // namespace mixgrad::nn
