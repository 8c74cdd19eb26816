// Shared by CPU and CUDA kernels: host/device qualifiers and small helpers usable on both sides.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define MIXGRAD_HD __host__ __device__ __forceinline__
#else
#define MIXGRAD_HD inline
#endif

namespace mixgrad::kernels {

// Maximum tensor rank handled by the strided/broadcast kernels.
constexpr int kMaxDims = 8;

// Shape and element strides (in elements) of one operand, passed by value to kernels.
struct StridedShape {
  int ndim = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
};

// Offset of linear (row-major, over `out`'s shape) index `i` in an operand with strides `st` (0 = broadcast).
MIXGRAD_HD int64_t strided_offset(int64_t i, const StridedShape& out, const StridedShape& st) {
  int64_t off = 0;
  for (int d = out.ndim - 1; d >= 0; --d) {
    const int64_t idx = i % out.size[d];
    i /= out.size[d];
    off += idx * st.stride[d];
  }
  return off;
}

}  // namespace mixgrad::kernels
