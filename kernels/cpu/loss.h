// Fused (log-softmax + NLL) cross-entropy over logits [rows, classes] with int64 targets: the CPU reference for
// kernels/cuda/loss.h. Per-row losses; the engine applies the reduction.
#pragma once
#include <cstdint>

namespace mixgrad::kernels::cpu {

// lse[r] = log(sum_c exp(logits[r, c])) and, with eps = label_smoothing (PyTorch's definition),
//   loss[r] = (1 - eps) * (lse[r] - logits[r, target[r]]) + eps * (lse[r] - mean_c logits[r, c]),
// or 0 where target[r] == ignore_index (lse is still written). A row of all -inf logits has lse = -inf.
// Throws std::invalid_argument naming the row and the value for a target outside [0, classes) that is not
// ignore_index. Sums are accumulated in double.
template <class T>
void cross_entropy_forward(T* loss, T* lse, const T* logits, const int64_t* target, int64_t rows, int64_t classes,
                           int64_t ignore_index, T label_smoothing);

// dlogits[r, c] = dloss[r] * (softmax(logits[r])_c - (1 - eps) * [c == target[r]] - eps / classes), from the
// forward's lse; rows whose target is ignore_index get 0. Throws like the forward on a bad target.
template <class T>
void cross_entropy_backward(T* dlogits, const T* dloss, const T* logits, const T* lse, const int64_t* target,
                            int64_t rows, int64_t classes, int64_t ignore_index, T label_smoothing);

}  // namespace mixgrad::kernels::cpu
