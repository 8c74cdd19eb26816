// Strided gather and slice copies on the CPU; dims are coalesced first so most copies become row loops.
#include "kernels/cpu/layout.h"

#include <algorithm>
#include <cstring>

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelMinElements = int64_t{1} << 15;

// Drops size-1 dims and merges neighbours d, d+1 whose src strides make them one dim
// (stride[d] == stride[d+1] * size[d+1]); dst is contiguous, so any merge is valid for it. Fewer dims means
// fewer index divisions and longer inner rows.
void coalesce(const StridedShape& shape, const StridedShape& st, StridedShape& out_shape, StridedShape& out_st) {
  out_shape = StridedShape{};
  out_st = StridedShape{};
  int nd = 0;
  for (int d = 0; d < shape.ndim; ++d) {
    if (shape.size[d] == 1) continue;
    if (nd > 0 && out_st.stride[nd - 1] == st.stride[d] * shape.size[d]) {
      out_shape.size[nd - 1] *= shape.size[d];
      out_st.stride[nd - 1] = st.stride[d];
      continue;
    }
    out_shape.size[nd] = shape.size[d];
    out_st.stride[nd] = st.stride[d];
    ++nd;
  }
  out_shape.ndim = out_st.ndim = nd;
}

// Offset in src of the first element of row r, rows being all dims but the last (`nd` dims in total).
int64_t row_offset(int64_t r, const StridedShape& shape, const StridedShape& st, int nd) {
  int64_t off = 0;
  for (int d = nd - 2; d >= 0; --d) {
    off += (r % shape.size[d]) * st.stride[d];
    r /= shape.size[d];
  }
  return off;
}

// dst [batch, C, R] (contiguous) from src [.., R, C] read with stride 1 along C and `ldr` along R: cache-blocked
// transpose so that neither side walks memory with a large stride for long.
template <class T>
void transpose_blocked(T* dst, const T* src, int64_t batch, int64_t C, int64_t R, int64_t ldr,
                       const StridedShape& shape, const StridedShape& st, int nd) {
  constexpr int64_t kTile = 32;
  const int64_t tiles_c = (C + kTile - 1) / kTile, tiles_r = (R + kTile - 1) / kTile;
  const int64_t tiles = batch * tiles_c * tiles_r;
#pragma omp parallel for schedule(static) if (batch * C * R >= kParallelMinElements)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t tr = t % tiles_r, tc = (t / tiles_r) % tiles_c, b = t / (tiles_r * tiles_c);
    // The batch dims are dims [0, nd-2) of the coalesced shape; row_offset over nd-1 dims walks exactly those.
    const T* s = src + row_offset(b, shape, st, nd - 1);
    T* d = dst + b * C * R;
    const int64_t c1 = std::min(C, (tc + 1) * kTile), r1 = std::min(R, (tr + 1) * kTile);
    for (int64_t c = tc * kTile; c < c1; ++c)
      for (int64_t r = tr * kTile; r < r1; ++r) d[c * R + r] = s[c + r * ldr];
  }
}

}  // namespace

template <class T>
void copy_strided(T* dst, const T* src, int64_t n, const StridedShape& shape, const StridedShape& src_st) {
  if (n <= 0) return;
  StridedShape sh, st;
  coalesce(shape, src_st, sh, st);
  const int nd = sh.ndim;
  if (nd == 0) {  // scalar, or all dims of size 1
    dst[0] = src[0];
    return;
  }
  const int64_t len = sh.size[nd - 1], stride = st.stride[nd - 1];
  if (nd >= 2 && st.stride[nd - 2] == 1 && stride != 0 && len > 1) {
    transpose_blocked(dst, src, n / (len * sh.size[nd - 2]), sh.size[nd - 2], len, stride, sh, st, nd);
    return;
  }
  const int64_t rows = n / len;
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const T* s = src + row_offset(r, sh, st, nd);
    T* d = dst + r * len;
    if (stride == 1)
      std::memcpy(d, s, static_cast<size_t>(len) * sizeof(T));
    else if (stride == 0)
      std::fill(d, d + len, s[0]);
    else
      for (int64_t j = 0; j < len; ++j) d[j] = s[j * stride];
  }
}

template <class T>
void slice_copy(T* dst, const T* src, int64_t outer, int64_t src_dim, int64_t dst_dim, int64_t inner,
                int64_t src_offset, int64_t dst_offset, int64_t len) {
  if (outer <= 0 || inner <= 0 || len <= 0) return;
  const int64_t chunk = len * inner;
#pragma omp parallel for schedule(static) if (outer > 1 && outer * chunk >= kParallelMinElements)
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(dst + (o * dst_dim + dst_offset) * inner, src + (o * src_dim + src_offset) * inner,
                static_cast<size_t>(chunk) * sizeof(T));
}

#define MIXGRAD_INSTANTIATE_LAYOUT(T)                                                                        \
  template void copy_strided<T>(T*, const T*, int64_t, const StridedShape&, const StridedShape&);           \
  template void slice_copy<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
MIXGRAD_INSTANTIATE_LAYOUT(float)
MIXGRAD_INSTANTIATE_LAYOUT(double)
MIXGRAD_INSTANTIATE_LAYOUT(int32_t)
MIXGRAD_INSTANTIATE_LAYOUT(int64_t)
MIXGRAD_INSTANTIATE_LAYOUT(uint8_t)
#undef MIXGRAD_INSTANTIATE_LAYOUT

}  // namespace mixgrad::kernels::cpu
