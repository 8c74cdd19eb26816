// MEGA's sequence norms as layers (specs/lra.md §6.2): ScaleNorm, BatchNorm over (batch × positions) with running
// statistics as buffers, and SequenceNorm, which picks LayerNorm, ScaleNorm or BatchNorm by name (MEGA's
// SequenceNorm, state-dict names "norm.weight", "norm.scalar", "norm.running_mean", ...).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/norms.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace mixgrad::nn {

// y = x·scalar / sqrt(mean(x²) + eps) over the last dimension; one parameter "scalar" of shape [1], init 1 (MEGA's
// name and shape).
class ScaleNorm : public Layer {
 public:
  explicit ScaleNorm(double eps = 1e-5);
  Tensor forward(const Tensor& x) override { return scale_norm(x, scalar, eps); }
  Tensor scalar;
  double eps;
};

// BatchNorm over (batch × positions) per channel of x [B, L, C] (engine/norms.h batch_norm): batch statistics of the
// valid positions in training mode (updating the running statistics), the running statistics in eval mode. Names as
// PyTorch's BatchNorm1d: parameters "weight" (init 1) and "bias" (init 0) when affine; buffers "running_mean" (0) and
// "running_var" (1), saved in state_dict / checkpoints and never seen by an optimizer (Module::parameters() holds
// parameters only). PyTorch's "num_batches_tracked" counter is not kept (it only matters without a momentum).
// Padded positions' outputs are 0.
class BatchNorm : public Layer {
 public:
  explicit BatchNorm(int64_t channels, double eps = 1e-5, double momentum = 0.1, bool affine = true);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  Tensor forward(const Tensor& x, const Tensor& lengths);
  Tensor weight, bias, running_mean, running_var;
  int64_t channels;
  double eps, momentum;
};

enum class SequenceNormKind { layernorm, scalenorm, batchnorm };

// "layernorm" | "scalenorm" | "batchnorm" (error naming the choices otherwise), and back.
SequenceNormKind parse_sequence_norm(const std::string& name);
std::string sequence_norm_name(SequenceNormKind kind);
std::vector<std::string> sequence_norm_names();

// MEGA's SequenceNorm: one norm of the chosen kind, registered as "norm", over x [B, L, C]. forward(x, lengths):
// LayerNorm and ScaleNorm work per position and ignore lengths (padded rows get whatever their input gives; MEGA
// zeroes them afterwards); BatchNorm excludes padded positions from its statistics and outputs 0 there.
class SequenceNorm : public Layer {
 public:
  SequenceNorm(SequenceNormKind kind, int64_t dim, double eps = 1e-5, bool affine = true);
  SequenceNorm(const std::string& kind, int64_t dim, double eps = 1e-5, bool affine = true)
      : SequenceNorm(parse_sequence_norm(kind), dim, eps, affine) {}
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  Tensor forward(const Tensor& x, const Tensor& lengths);
  SequenceNormKind kind() const { return kind_; }
  const std::shared_ptr<Layer>& norm() const { return norm_; }

 private:
  SequenceNormKind kind_;
  std::shared_ptr<Layer> norm_;
};

}  // namespace mixgrad::nn
