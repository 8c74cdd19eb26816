// Layout copies on CUDA: strided gather into a contiguous tensor (permute, expand, contiguous) and slice copies
// along one dimension (cat, narrow and their backwards). Twin of kernels/cpu/layout.h.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/common.h"

namespace mixgrad::kernels::cuda {

// dst (contiguous, shape `shape`, n == numel(shape)) [i] = src[strided_offset(i, shape, src_st)], as
// kernels::cpu::copy_strided. Dims are coalesced on the host first; then: a contiguous source is one
// cudaMemcpyAsync; a source whose stride-1 dim lands second-to-last in dst (the "swap last two dims" transpose
// [.., R, C] -> [.., C, R], batch dims arbitrary) goes through 32x32 shared-memory tiles (coalesced reads and
// writes, any R and C); everything else is a gather with 32-bit index math where it fits and, when the last
// dim is contiguous and aligned, moves up to 16 bytes per thread. T in {float, double, int32_t, int64_t,
// uint8_t}. Never synchronises.
template <class T>
void copy_strided(T* dst, const T* src, int64_t n, const StridedShape& shape, const StridedShape& src_st,
                  cudaStream_t stream);

// dst[o, dst_offset + j, i] = src[o, src_offset + j, i] for o < outer, j < len, i < inner, as
// kernels::cpu::slice_copy. One cudaMemcpyAsync when the slice is a single contiguous block, otherwise a
// row-copy kernel moving the widest word (up to 16 bytes) that the pitches and pointers allow.
template <class T>
void slice_copy(T* dst, const T* src, int64_t outer, int64_t src_dim, int64_t dst_dim, int64_t inner,
                int64_t src_offset, int64_t dst_offset, int64_t len, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
