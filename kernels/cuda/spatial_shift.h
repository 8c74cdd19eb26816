// S2-MLPv2 (specs/mixers.md §1) on CUDA, float32: the twins of kernels/cpu/spatial_shift.h (same names, parameters
// and results up to summation order), sharing its index formulas (kernels/spatial_shift_math.h).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/spatial_shift_math.h"

namespace mixgrad::kernels::cuda {

// Device pointers. One thread per output element (a gather of at most two inputs): no atomics. Never synchronise.
void spatial_shift_forward(float* y, const float* x, int64_t B, int64_t H, int64_t W, int64_t C, int variant,
                           cudaStream_t stream);
void spatial_shift_backward(float* dx, const float* dy, int64_t B, int64_t H, int64_t W, int64_t C, int variant,
                            cudaStream_t stream);

// The S2Attention passes (layout, lengths and formulas: kernels/cpu/spatial_shift.h). The reductions (a, dabar)
// run one block per (sample, 32-channel tile): its threads stride over the tokens and combine their partial sums
// in shared memory in a fixed order (fp32, deterministic). dz, out: one thread per element.
void s2_branch_sum(float* a, const float* z, const int32_t* lengths, s2::S2Geometry g, cudaStream_t stream);
void s2_branch_sum_backward(float* dz, const float* da, const int32_t* lengths, s2::S2Geometry g, cudaStream_t stream);
void s2_split_combine(float* out, const float* z, const float* abar, const int32_t* lengths, s2::S2Geometry g,
                      cudaStream_t stream);
void s2_split_combine_backward(float* dz, float* dabar, const float* dout, const float* z, const float* abar,
                               const int32_t* lengths, s2::S2Geometry g, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
