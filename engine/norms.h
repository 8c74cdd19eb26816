// MEGA's sequence norms (specs/lra.md §6.2) as differentiable ops: ScaleNorm and BatchNorm over (batch × positions)
// with padded positions excluded. Implemented in engine/ops_norms.cpp on top of kernels/cpu/norm.h and
// kernels/cuda/norm.h. LayerNorm is layer_norm in engine/ops.h.
#pragma once
#include "engine/tensor.h"

namespace mixgrad {

// ScaleNorm over the last dimension: y = x·g / sqrt(mean_c(x²) + eps) with one scalar g. x: any shape whose last
// dimension C >= 1 (float32/float64 on the CPU, float32 on CUDA); g: one element (shape [1] or []) of x's dtype and
// device. Gradients for x and g. Rows are independent, so padded positions never affect valid ones.
Tensor scale_norm(const Tensor& x, const Tensor& g, double eps = 1e-5);

// BatchNorm per channel over (batch × positions) of x [B, L, C] (float32/float64 on the CPU, float32 on CUDA), as
// PyTorch's BatchNorm1d on x.transpose(1, 2) but counting only valid positions: lengths (optional, int32 or int64
// [B] on the CPU or x's device, values in [1, L]) gives each sample's valid prefix.
//  - training: normalises with the mean and biased variance of the valid positions (padded positions excluded from
//    the statistics); when running_mean / running_var ([C], x's dtype and device, both or neither) are given they are
//    updated in place on their device, running ← (1 − momentum)·running + momentum·batch, with the unbiased variance
//    for running_var (PyTorch's rule). Needs at least 2 valid positions (error at the call; with lengths on a GPU
//    and B = 1 the error is reported at the next read-back instead).
//  - eval: normalises with running_mean / running_var (required), which are left unchanged.
// y = x̂·weight + bias (weight, bias [C] optional: 1 and 0). Padded positions' outputs are 0 and their inputs get a
// zero gradient. Gradients for x, weight and bias: the full batch-statistics backward in training mode, the affine
// map's in eval mode; the running statistics are buffers, never differentiated.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, const Tensor& lengths = Tensor(), bool training = true,
                  double momentum = 0.1, double eps = 1e-5);

}  // namespace mixgrad
