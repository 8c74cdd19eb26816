// Combiner attention (specs/mixers.md §5) on CUDA, float32: the same four passes and parameter lists as the CPU
// reference kernels/cpu/combiner.h (read that header for the layouts and the semantics), plus a trailing stream.
// One warp per (b, h, row) — a span, a query or a key — with the d channels spread over the lanes (up to
// kCombinerMaxHeadDim) and warp-shuffle dot products; every output row is written by one warp (no atomics:
// deterministic). Never synchronises.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/combiner_index.h"

namespace mixgrad::kernels::cuda {

inline constexpr int64_t kCombinerMaxHeadDim = 128;  // 4 channels per lane

void combiner_summary_forward(float* sq, float* sk, float* sv, float* slse, int32_t* qarg, int32_t* karg,
                              const float* q, const float* k, const float* v, const int32_t* lengths,
                              const CombinerIndex& ix, int64_t B, int64_t H, int64_t d, float scale,
                              cudaStream_t stream);

void combiner_forward(float* o, float* lse, const float* q, const float* k, const float* v, const float* sk,
                      const float* sv, const int32_t* lengths, const CombinerIndex& ix, int64_t B, int64_t H, int64_t d,
                      float scale, cudaStream_t stream);

void combiner_backward(float* dq, float* dk, float* dv, float* dsk, float* dsv, float* delta, const float* dout,
                       const float* q, const float* k, const float* v, const float* sk, const float* sv, const float* o,
                       const float* lse, const int32_t* lengths, const CombinerIndex& ix, int64_t B, int64_t H,
                       int64_t d, float scale, cudaStream_t stream);

void combiner_summary_backward(float* dq, float* dk, float* dv, float* dsq, float* sdelta, const float* dsk,
                               const float* dsv, const float* k, const float* v, const float* sq, const float* sv,
                               const float* slse, const int32_t* qarg, const int32_t* karg, const int32_t* lengths,
                               const CombinerIndex& ix, int64_t B, int64_t H, int64_t d, float scale,
                               cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
