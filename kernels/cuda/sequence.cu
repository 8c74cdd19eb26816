// CUDA sequence masks and length shifts: one thread per output element, grid-stride loops. Kernels first, then
// the launchers.
#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/sequence.h"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) { return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

template <class T>
__global__ void sequence_mask_kernel(T* mask, const int32_t* lengths, int64_t B, int64_t N) {
  const int64_t total = B * N;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / N, j = i - b * N;
    mask[i] = j < lengths[b] ? T(1) : T(0);
  }
}

__global__ void add_to_lengths_kernel(int32_t* out, const int32_t* lengths, int64_t B, int32_t delta) {
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < B;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[b] = lengths[b] + delta;
}

template <class T>
void launch_sequence_mask(T* mask, const int32_t* lengths, int64_t B, int64_t N, cudaStream_t stream) {
  if (B <= 0 || N <= 0) return;
  sequence_mask_kernel<T><<<blocks_for(B * N), kThreads, 0, stream>>>(mask, lengths, B, N);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace

void sequence_mask(uint8_t* mask, const int32_t* lengths, int64_t B, int64_t N, cudaStream_t stream) {
  launch_sequence_mask(mask, lengths, B, N, stream);
}
void sequence_mask(float* mask, const int32_t* lengths, int64_t B, int64_t N, cudaStream_t stream) {
  launch_sequence_mask(mask, lengths, B, N, stream);
}

void add_to_lengths(int32_t* out, const int32_t* lengths, int64_t B, int32_t delta, cudaStream_t stream) {
  if (B <= 0) return;
  add_to_lengths_kernel<<<blocks_for(B), kThreads, 0, stream>>>(out, lengths, B, delta);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace mixgrad::kernels::cuda
