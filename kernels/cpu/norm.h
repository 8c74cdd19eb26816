// LayerNorm and RMSNorm over the last dimension of a contiguous [rows, cols] tensor: the CPU reference for
// kernels/cuda/norm.h. Statistics are accumulated in double.
#pragma once
#include <cstdint>

namespace mixgrad::kernels::cpu {

// y = (x - mean) * rstd * weight + bias per row, with the biased variance and rstd = 1 / sqrt(var + eps)
// (PyTorch's layer_norm). weight and bias may be null (1 and 0); mean and rstd ([rows], saved for the backward)
// may be null when not needed.
template <class T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t rows, int64_t cols,
                        T eps);

// Gradients of layer_norm_forward from the saved mean and rstd. dx, dweight and dbias ([cols]) may each be null
// (not computed); weight may be null (1). dweight and dbias are fully written (zero when rows == 0). Outputs
// must not alias the inputs.
template <class T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* mean, const T* rstd,
                         const T* weight, int64_t rows, int64_t cols);

// y = x * rstd * weight per row with rstd = 1 / sqrt(mean(x^2) + eps). weight may be null (1), rstd may be null.
template <class T>
void rms_norm_forward(T* y, T* rstd, const T* x, const T* weight, int64_t rows, int64_t cols, T eps);

// Gradients of rms_norm_forward from the saved rstd. dx and dweight may be null; weight may be null (1).
template <class T>
void rms_norm_backward(T* dx, T* dweight, const T* dy, const T* x, const T* rstd, const T* weight, int64_t rows,
                       int64_t cols);

}  // namespace mixgrad::kernels::cpu
