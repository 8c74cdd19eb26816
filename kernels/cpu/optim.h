// Optimizer kernels on the CPU (AdamW over all parameters at once, SGD per tensor, global-norm clipping
// helpers); reference twins of kernels/cuda/optim.h. Hyper-parameters follow PyTorch (torch.optim.AdamW / SGD,
// torch.nn.utils.clip_grad_norm_).
#pragma once
#include <cstdint>

namespace mixgrad::kernels::cpu {

// Multi-tensor tables, shared by the *_multi kernels and adamw_step: tensor t has sizes[t] elements and
// starts[t] = sizes[0] + ... + sizes[t-1] (prefix sums), total = sum of sizes. On the CPU the tables are host
// arrays. A null tensor pointer (a parameter without gradient) is skipped.

// One AdamW step (decoupled weight decay) over all tensors, PyTorch semantics:
//   p <- p * (1 - lr * weight_decay); m <- beta1 m + (1 - beta1) g; v <- beta2 v + (1 - beta2) g^2;
//   p <- p - (lr / bias_correction1) * m / (sqrt(v) / sqrt(bias_correction2) + eps),
// with bias_correction{1,2} = 1 - beta{1,2}^step computed by the caller. Tensors whose grads[t] is null are left
// untouched (no decay either), like PyTorch's parameters with grad None.
template <class T>
void adamw_step(T* const* params, const T* const* grads, T* const* exp_avg, T* const* exp_avg_sq,
                const int64_t* sizes, const int64_t* starts, int num_tensors, int64_t total, T lr, T beta1, T beta2,
                T eps, T weight_decay, T bias_correction1, T bias_correction2);

// One SGD step on one tensor, PyTorch semantics: d = g + weight_decay * p; with momentum != 0:
// buf = first_step ? d : momentum * buf + (1 - dampening) * d, d = nesterov ? d + momentum * buf : buf;
// p <- p - lr * d. momentum_buf may be null when momentum == 0.
template <class T>
void sgd_step(T* param, const T* grad, T* momentum_buf, int64_t n, T lr, T momentum, T dampening, T weight_decay,
              bool nesterov, bool first_step);

// Workspace for sum_squares_multi: none on the CPU (0 bytes; `partial` may be null).
int64_t sum_squares_multi_workspace_bytes(int64_t total);

// *result = sum over all tensors of x^2, accumulated in double over fixed ranges and summed in a fixed order,
// so the result does not depend on the number of threads. Null tensors count as zeros.
template <class T>
void sum_squares_multi(T* partial, T* result, const T* const* tensors, const int64_t* sizes, const int64_t* starts,
                       int num_tensors, int64_t total);

// x <- x * scale for every tensor (null tensors skipped); nothing is written when scale == 1.
template <class T>
void scale_multi(T* const* tensors, const int64_t* sizes, const int64_t* starts, int num_tensors, int64_t total,
                 T scale);

// *coef = min(1, max_norm / (sqrt(*total_sq) + 1e-6)), the clip_grad_norm_ factor (NaN propagates).
template <class T>
void clip_coef(T* coef, const T* total_sq, T max_norm);

}  // namespace mixgrad::kernels::cpu
