// Optimisers (SGD with momentum/Nesterov, AdamW with one fused update over all parameters), the warm-up + cosine
// learning-rate schedule, and gradient clipping by global norm.
#pragma once
#include <vector>

#include "engine/optim_ops.h"
#include "nn/module.h"

namespace mixgrad::nn {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params);
  virtual ~Optimizer() = default;
  // Applies one update using the parameters' current .grad (parameters without a gradient are skipped).
  virtual void step() = 0;
  void zero_grad();
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  int64_t steps() const { return steps_; }
  // Optimiser state as named tensors ("step", "exp_avg.3", ...), for checkpoints and exact resume.
  virtual NamedTensors state() const = 0;
  virtual void load_state(const NamedTensors& state) = 0;
  const std::vector<Tensor>& params() const { return params_; }

 protected:
  std::vector<Tensor> params_;
  double lr_ = 1e-3;
  int64_t steps_ = 0;
};

class AdamW : public Optimizer {
 public:
  // decay[i] false exempts parameter i from weight decay (timm's usual exemptions: biases, norm weights, position
  // embeddings); empty decays every parameter, as PyTorch's AdamW over one group does.
  AdamW(std::vector<Tensor> params, AdamWHyper h = {}, std::vector<bool> decay = {});
  void step() override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;
  AdamWHyper hyper;

 private:
  std::vector<Tensor> exp_avg_, exp_avg_sq_;
  std::vector<bool> decay_;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, SGDHyper h = {});
  void step() override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;
  SGDHyper hyper;

 private:
  std::vector<Tensor> momentum_;
  std::vector<bool> started_;
};

// Linear warm-up (step s < warmup_steps gets base_lr·(s+1)/warmup_steps), then cosine decay from base_lr to
// min_lr at total_steps (held after).
struct WarmupCosine {
  double base_lr, min_lr = 0;
  int64_t warmup_steps = 0, total_steps = 1;
  double operator()(int64_t step) const;  // lr for the 0-based optimiser step `step`
};

// Scales the parameters' gradients so their global norm is at most max_norm; returns the norm before clipping.
Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace mixgrad::nn
