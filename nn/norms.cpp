// ScaleNorm, BatchNorm and SequenceNorm layers: registration, initialisation and the name → kind factory.
#include "nn/norms.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "engine/error.h"

namespace mixgrad::nn {

ScaleNorm::ScaleNorm(double e) : Layer("ScaleNorm"), eps(e) {
  MIXGRAD_CHECK(e >= 0, "ScaleNorm: eps must be non-negative, got {}", e);
  scalar = register_parameter("scalar", ones({1}));
}

BatchNorm::BatchNorm(int64_t c, double e, double m, bool affine)
    : Layer("BatchNorm"), channels(c), eps(e), momentum(m) {
  MIXGRAD_CHECK(c > 0, "BatchNorm: channels must be positive, got {}", c);
  MIXGRAD_CHECK(e >= 0, "BatchNorm: eps must be non-negative, got {}", e);
  MIXGRAD_CHECK(m >= 0 && m <= 1, "BatchNorm: momentum = {}, expected a value in [0, 1]", m);
  if (affine) {
    weight = register_parameter("weight", ones({c}));
    bias = register_parameter("bias", zeros({c}));
  }
  running_mean = register_buffer("running_mean", zeros({c}));
  running_var = register_buffer("running_var", ones({c}));
}

Tensor BatchNorm::forward(const Tensor& x, const Tensor& lengths) {
  return batch_norm(x, weight, bias, running_mean, running_var, lengths, is_training(), momentum, eps);
}

std::vector<std::string> sequence_norm_names() { return {"layernorm", "scalenorm", "batchnorm"}; }

SequenceNormKind parse_sequence_norm(const std::string& name) {
  if (name == "layernorm") return SequenceNormKind::layernorm;
  if (name == "scalenorm") return SequenceNormKind::scalenorm;
  if (name == "batchnorm") return SequenceNormKind::batchnorm;
  throw Error(fmt::format("SequenceNorm: unknown norm \"{}\" (expected one of: {})", name,
                          fmt::join(sequence_norm_names(), ", ")));
}

std::string sequence_norm_name(SequenceNormKind kind) {
  switch (kind) {
    case SequenceNormKind::layernorm:
      return "layernorm";
    case SequenceNormKind::scalenorm:
      return "scalenorm";
    case SequenceNormKind::batchnorm:
      return "batchnorm";
  }
  return "unknown";
}

SequenceNorm::SequenceNorm(SequenceNormKind kind, int64_t dim, double eps, bool affine)
    : Layer("SequenceNorm"), kind_(kind) {
  MIXGRAD_CHECK(dim > 0, "SequenceNorm: dim must be positive, got {}", dim);
  switch (kind) {
    case SequenceNormKind::layernorm:
      norm_ = register_module("norm", std::make_shared<LayerNorm>(dim, eps, affine));
      break;
    case SequenceNormKind::scalenorm:
      MIXGRAD_CHECK(affine, "SequenceNorm: scalenorm always has its scalar (affine = false is not supported)");
      norm_ = register_module("norm", std::make_shared<ScaleNorm>(eps));
      break;
    case SequenceNormKind::batchnorm:
      norm_ = register_module("norm", std::make_shared<BatchNorm>(dim, eps, 0.1, affine));
      break;
  }
}

Tensor SequenceNorm::forward(const Tensor& x, const Tensor& lengths) {
  if (kind_ == SequenceNormKind::batchnorm) return static_cast<BatchNorm&>(*norm_).forward(x, lengths);
  return norm_->forward(x);
}

}  // namespace mixgrad::nn
