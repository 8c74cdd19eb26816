// Optimisers (SGD with momentum/Nesterov, AdamW with one fused update over all parameters), the warm-up + cosine
// learning-rate schedule, and gradient clipping by global norm.
#pragma once
#include <string>
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

// The learning rate of 0-based optimiser step s: linear warm-up (step s < warmup_steps gets peak·(s+1)/warmup_steps),
// then by kind, with t = (s − warmup)/(total − warmup) clamped to [0, 1]:
//   cosine    min_lr + (peak − min_lr)·(1 + cos πt)/2 (exactly WarmupCosine)
//   linear    peak − (peak − min_lr)·t (MEGA's linear decay)
//   rsqrt     peak·sqrt(warmup / (s + 1)) (the LRA Transformer's const·rsqrt(max(step, warmup)), whose peak is
//             const/√warmup: LRA's ListOps const 0.05 with 1,000 warm-up steps is peak 1.58e-3)
//   constant  peak
struct LrSchedule {
  enum class Kind { cosine, linear, rsqrt, constant };
  Kind kind = Kind::cosine;
  double peak = 1e-3, min_lr = 0;
  int64_t warmup_steps = 0, total_steps = 1;
  double operator()(int64_t step) const;
  // "cosine", "linear", "rsqrt", "constant" (error listing them for another name).
  static Kind parse(const std::string& name);
  static const char* name(Kind kind);
};

// Scales the parameters' gradients so their global norm is at most max_norm; returns the norm before clipping.
Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace mixgrad::nn
