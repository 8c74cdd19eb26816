// Right-padded sequences described by per-sample lengths on CUDA: the 0/1 validity mask and shifted lengths
// (lengths stay on the device; nothing is read back). The CPU reference is kernels/cpu/sequence.h.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mixgrad::kernels::cuda {

// mask[b, j] = 1 if j < lengths[b] else 0 (mask [B, N] row-major).
void sequence_mask(uint8_t* mask, const int32_t* lengths, int64_t B, int64_t N, cudaStream_t stream);
void sequence_mask(float* mask, const int32_t* lengths, int64_t B, int64_t N, cudaStream_t stream);

// out[b] = lengths[b] + delta.
void add_to_lengths(int32_t* out, const int32_t* lengths, int64_t B, int32_t delta, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
