// In-place optimiser primitives over many tensors at once (no autograd): fused AdamW, SGD, global-norm clipping.
// nn/optim builds the optimisers on these; on CUDA each is one launch over all parameters.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace mixgrad {

struct AdamWHyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
};

// One AdamW step (PyTorch semantics, decoupled decay) for every parameter whose grad is defined; `step` is the
// 1-based step count used for bias correction. All tensors on one device, same dtype (float32 on CUDA).
void adamw_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avg,
                 const std::vector<Tensor>& exp_avg_sq, const AdamWHyper& h, int64_t step);

struct SGDHyper {
  double lr = 1e-2, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
};
// One SGD step on one parameter; `momentum_buf` must be defined when momentum != 0.
void sgd_step_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SGDHyper& h, bool first_step);

// Scales the gradients in place so that their global L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_)
// and returns the norm before clipping as a 0-d tensor on the gradients' device (no host synchronisation).
Tensor clip_grad_norm_(const std::vector<Tensor>& grads, double max_norm);
// Global L2 norm of the tensors (0-d, on their device).
Tensor global_norm(const std::vector<Tensor>& tensors);

}  // namespace mixgrad
