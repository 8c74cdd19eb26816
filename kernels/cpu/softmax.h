// Softmax and log-softmax over the last dimension of a contiguous [rows, cols] tensor: the CPU reference for
// kernels/cuda/softmax.h.
#pragma once
#include <cstdint>

namespace mixgrad::kernels::cpu {

// Conventions shared with the CUDA twin:
// - A row whose entries are all -inf (a fully masked row) gives softmax 0 everywhere with gradient 0, and
//   log-softmax -inf everywhere with gradient 0 (PyTorch would give NaN); partially masked rows are ordinary.
// - NaN anywhere in a row makes the whole output row NaN; +inf entries give NaN like PyTorch.
// - Sums are accumulated in double.

// y = exp(x - max) / sum(exp(x - max)) per row.
template <class T>
void softmax_forward(T* y, const T* x, int64_t rows, int64_t cols);

// dx = y * (dy - sum(dy * y)) per row, from the forward output y.
template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols);

// y = x - max - log(sum(exp(x - max))) per row.
template <class T>
void log_softmax_forward(T* y, const T* x, int64_t rows, int64_t cols);

// dx = dy - exp(y) * sum(dy) per row, from the forward output y (a row of y that is all -inf gets dx = 0).
template <class T>
void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols);

}  // namespace mixgrad::kernels::cpu
