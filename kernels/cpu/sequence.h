// Right-padded sequences described by per-sample lengths: the 0/1 validity mask and shifted lengths. The CPU
// reference for kernels/cuda/sequence.h.
#pragma once
#include <cstdint>

namespace mixgrad::kernels::cpu {

// mask[b, j] = 1 if j < lengths[b] else 0, for b < B, j < N (mask [B, N] row-major). T: uint8_t, float, double.
template <class T>
void sequence_mask(T* mask, const int32_t* lengths, int64_t B, int64_t N);

// out[b] = lengths[b] + delta.
void add_to_lengths(int32_t* out, const int32_t* lengths, int64_t B, int32_t delta);

}  // namespace mixgrad::kernels::cpu
