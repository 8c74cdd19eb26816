// Layout copies on the CPU: strided gather into a contiguous tensor (permute, expand, contiguous) and slice
// copies along one dimension (cat, narrow and their backwards). Twin of kernels/cuda/layout.h.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace mixgrad::kernels::cpu {

// dst (contiguous, row-major with shape `shape`, n == numel(shape) elements) [i] = src[strided_offset(i, shape,
// src_st)]: src is read through arbitrary element strides (a permuted view, stride 0 for expanded dims, any
// non-contiguous view). shape.ndim == 0 is a scalar (n == 1). dst and src must not overlap.
// T in {float, double, int32_t, int64_t, uint8_t}.
template <class T>
void copy_strided(T* dst, const T* src, int64_t n, const StridedShape& shape, const StridedShape& src_st);

// dst[o, dst_offset + j, i] = src[o, src_offset + j, i] for o < outer, j < len, i < inner, where src is
// [outer, src_dim, inner] and dst is [outer, dst_dim, inner], both contiguous. Elements of dst outside the slice
// are left untouched. cat forward: one call per input (src_offset 0, dst_offset = running offset, len = its
// size); cat backward / narrow forward: dst_offset 0, src_offset = start; narrow backward: the reverse
// (into a zeroed gradient). T in {float, double, int32_t, int64_t, uint8_t}.
template <class T>
void slice_copy(T* dst, const T* src, int64_t outer, int64_t src_dim, int64_t dst_dim, int64_t inner,
                int64_t src_offset, int64_t dst_offset, int64_t len);

}  // namespace mixgrad::kernels::cpu
