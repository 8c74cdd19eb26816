// LayerNorm, RMSNorm and ScaleNorm over the last dimension of a contiguous [rows, cols] tensor, and BatchNorm per
// channel over the valid positions of [B, L, C]: the CPU reference for kernels/cuda/norm.h. Statistics are
// accumulated in double; every reduction is in a fixed order (deterministic whatever the thread count).
#pragma once
#include <cstdint>

#include "kernels/norm_math.h"

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

// ScaleNorm (MEGA, specs/lra.md §6.2): y = x·g / sqrt(mean(x²) + eps) per row with one scalar g (g points to one
// element). rstd ([rows], saved for the backward) may be null.
template <class T>
void scale_norm_forward(T* y, T* rstd, const T* x, const T* g, int64_t rows, int64_t cols, T eps);

// Gradients of scale_norm_forward from the saved rstd: dx [rows, cols] and dg (one element, Σ over all rows); each
// may be null (not computed).
template <class T>
void scale_norm_backward(T* dx, T* dg, const T* dy, const T* x, const T* rstd, const T* g, int64_t rows, int64_t cols);

// BatchNorm over (batch × positions) per channel of x [B, L, C] (sizes in s), counting only the valid positions
// (lengths [B] or null, see kernels/norm_math.h). training: mean and biased variance of the valid positions into
// mean and rstd = 1/sqrt(var + eps) ([C], saved for the backward), and, when running_mean / running_var are non-null,
// PyTorch's momentum update of them with the unbiased variance (batch_norm_running_update; needs at least 2 valid
// positions, which the caller guarantees). eval: mean ← running_mean, rstd ← 1/sqrt(running_var + eps) (both
// required). Then y = (x − mean)·rstd·weight + bias at valid positions and 0 at padded ones. weight and bias may be
// null (1 and 0).
template <class T>
void batch_norm_forward(T* y, T* mean, T* rstd, T* running_mean, T* running_var, const T* x, const int32_t* lengths,
                        const T* weight, const T* bias, const BatchNormSizes& s, bool training, T momentum, T eps);

// Gradients of batch_norm_forward from the saved mean and rstd: dweight = Σ dy·x̂ and dbias = Σ dy over the valid
// positions ([C], always written), dx (may be null) with the batch-statistics terms in training mode and as
// weight·rstd·dy in eval mode; padded positions get dx = 0.
template <class T>
void batch_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const int32_t* lengths, const T* mean,
                         const T* rstd, const T* weight, const BatchNormSizes& s, bool training);

}  // namespace mixgrad::kernels::cpu
