// Right-padded sequences described by per-sample lengths (int32 [B] on the batch's device): the currency of key
// padding between the apps, the models, the mixers and attention. Building a mask or pooling from lengths
// happens on the lengths' device; nothing here reads a length back to the host.
#pragma once
#include <cstdint>
#include <string>

#include "engine/tensor.h"

namespace mixgrad {

// Checks that `lengths` is an int32 [batch] tensor on `device` (error naming `op`, the dtype, shape or device and
// what was expected). CPU lengths are also checked for values in [min_len, max_len] (error naming the sample);
// lengths on a GPU are not read back: kernels clamp them, see each op.
void check_lengths(const char* op, const Tensor& lengths, int64_t batch, Device device, int64_t min_len,
                   int64_t max_len);

// [B, max_len] mask on the lengths' device: 1 where j < lengths[b], else 0. dtype uint8, float32 or (CPU) float64.
Tensor sequence_mask(const Tensor& lengths, int64_t max_len, DType dtype = DType::u8);

// lengths + delta, same dtype and device (e.g. +1 for a class token prepended to every sample).
Tensor add_to_lengths(const Tensor& lengths, int64_t delta);

// Masked mean over the sequence: x [B, N, D] -> [B, D] with row b = Σ_{j < lengths[b]} x[b, j, :] / lengths[b]
// (a sample of length 0 gives 0). Differentiable in x; padded rows get a zero gradient.
Tensor masked_mean(const Tensor& x, const Tensor& lengths);

// x [B, N, ...] with every position j >= lengths[b] set to 0 (differentiable; padded rows get a zero gradient).
Tensor zero_padding(const Tensor& x, const Tensor& lengths);

}  // namespace mixgrad
