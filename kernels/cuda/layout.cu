// Strided gather (with a tiled-transpose fast path) and slice copies on CUDA. Copies are type-agnostic, so the
// kernels are templated on the word they move (1 to 16 bytes), not on T.
#include "kernels/cuda/layout.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/check.h"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 16;  // grid-stride loops beyond this
constexpr int kTile = 32;                         // transpose tile is kTile x kTile elements
constexpr int kTileRows = 8;                      // block is kTile x kTileRows threads
constexpr int64_t kMinTransposeDim = 8;           // below this a 32-wide tile mostly idles: use the gather

// Shape of the copy in units of the moved word, with the source strides in the same units; dims left-aligned.
template <class Index>
struct UnitShape {
  int ndim = 0;
  Index size[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
};

template <class Index>
__device__ __forceinline__ int64_t unit_offset(Index i, const UnitShape<Index>& s) {
  int64_t off = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < s.ndim) {
      const Index q = i / s.size[d];
      off += static_cast<int64_t>(i - q * s.size[d]) * s.stride[d];
      i = q;
    }
  }
  return off;
}

// ---------------------------------------------------------------------------------------------- kernels

template <class W, class Index>
__global__ void __launch_bounds__(kThreads)
    gather_kernel(W* __restrict__ dst, const W* __restrict__ src, Index n, const UnitShape<Index> shape) {
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<Index>(gridDim.x) * blockDim.x)
    dst[i] = src[unit_offset(i, shape)];
}

// dst[b, c, r] (contiguous [batch, C, R]) = src[boff(b) + c + r * ldr]: each tile is read along c (stride 1 in
// src) and written along r (stride 1 in dst) through shared memory; the +1 column of padding keeps the
// column-wise shared-memory reads free of bank conflicts. `batch` holds the batch dims' sizes and src strides.
template <class W>
__global__ void __launch_bounds__(kTile * kTileRows)
    transpose_kernel(W* __restrict__ dst, const W* __restrict__ src, int64_t C, int64_t R, int64_t ldr,
                     int64_t tiles_c, int64_t tiles_r, int64_t num_tiles, const StridedShape batch) {
  __shared__ W tile[kTile][kTile + 1];
  for (int64_t t = blockIdx.x; t < num_tiles; t += gridDim.x) {
    const int64_t tr = t % tiles_r, tc = (t / tiles_r) % tiles_c, b = t / (tiles_r * tiles_c);
    const W* s = src + strided_offset(b, batch, batch);
    W* d = dst + b * C * R;
    const int64_t c_read = tc * kTile + threadIdx.x;
#pragma unroll
    for (int j = threadIdx.y; j < kTile; j += kTileRows) {
      const int64_t r = tr * kTile + j;
      if (c_read < C && r < R) tile[j][threadIdx.x] = s[c_read + r * ldr];
    }
    __syncthreads();
    const int64_t r_write = tr * kTile + threadIdx.x;
#pragma unroll
    for (int j = threadIdx.y; j < kTile; j += kTileRows) {
      const int64_t c = tc * kTile + j;
      if (c < C && r_write < R) d[c * R + r_write] = tile[threadIdx.x][j];
    }
    __syncthreads();  // the next tile overwrites `tile`
  }
}

// dst[o * dst_pitch + w] = src[o * src_pitch + w] for w < row_words (pitches in words).
template <class W, class Index>
__global__ void __launch_bounds__(kThreads)
    row_copy_kernel(W* __restrict__ dst, const W* __restrict__ src, Index total, Index row_words,
                    int64_t dst_pitch, int64_t src_pitch) {
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<Index>(gridDim.x) * blockDim.x) {
    const Index o = i / row_words, w = i - o * row_words;
    dst[o * dst_pitch + w] = src[o * src_pitch + w];
  }
}

// ---------------------------------------------------------------------------------------------- host helpers

// Word type of a given byte size (alignment == size).
template <int Bytes> struct WordOf;
template <> struct WordOf<1> { using type = uint8_t; };
template <> struct WordOf<2> { using type = uint16_t; };
template <> struct WordOf<4> { using type = uint32_t; };
template <> struct WordOf<8> { using type = uint2; };
template <> struct WordOf<16> { using type = uint4; };

// Calls f(W{}) with the word type of `bytes` (1, 2, 4, 8 or 16).
template <class F>
void dispatch_word(int bytes, F&& f) {
  switch (bytes) {
    case 1: f(uint8_t{}); break;
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    case 8: f(uint2{}); break;
    default: f(uint4{}); break;
  }
}

unsigned grid_for(int64_t work, int64_t per_block) {
  return static_cast<unsigned>(std::clamp<int64_t>((work + per_block - 1) / per_block, 1, kMaxBlocks));
}

bool aligned(const void* p, int64_t bytes) { return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0; }

// Drops size-1 dims and merges neighbours d, d+1 with src stride[d] == stride[d+1] * size[d+1] (dst is contiguous,
// so every merge is valid for it). Result: sizes and src strides in one StridedShape.
StridedShape coalesce(const StridedShape& shape, const StridedShape& st) {
  StridedShape out;
  int nd = 0;
  for (int d = 0; d < shape.ndim; ++d) {
    if (shape.size[d] == 1) continue;
    if (nd > 0 && out.stride[nd - 1] == st.stride[d] * shape.size[d]) {
      out.size[nd - 1] *= shape.size[d];
      out.stride[nd - 1] = st.stride[d];
      continue;
    }
    out.size[nd] = shape.size[d];
    out.stride[nd] = st.stride[d];
    ++nd;
  }
  out.ndim = nd;
  return out;
}

template <class W>
void launch_transpose(W* dst, const W* src, int64_t n, const StridedShape& c, cudaStream_t stream) {
  const int nd = c.ndim;
  const int64_t C = c.size[nd - 2], R = c.size[nd - 1], ldr = c.stride[nd - 1];
  StridedShape batch;
  batch.ndim = nd - 2;
  for (int d = 0; d < nd - 2; ++d) {
    batch.size[d] = c.size[d];
    batch.stride[d] = c.stride[d];
  }
  const int64_t tiles_c = (C + kTile - 1) / kTile, tiles_r = (R + kTile - 1) / kTile;
  const int64_t num_tiles = n / (C * R) * tiles_c * tiles_r;
  transpose_kernel<W><<<grid_for(num_tiles, 1), dim3(kTile, kTileRows), 0, stream>>>(dst, src, C, R, ldr, tiles_c,
                                                                                    tiles_r, num_tiles, batch);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

template <class W, class Index>
void launch_gather(void* dst, const void* src, int64_t units, const StridedShape& c, cudaStream_t stream) {
  UnitShape<Index> shape;
  shape.ndim = c.ndim;
  for (int d = 0; d < c.ndim; ++d) {
    shape.size[d] = static_cast<Index>(c.size[d]);
    shape.stride[d] = c.stride[d];
  }
  gather_kernel<W, Index><<<grid_for(units, kThreads), kThreads, 0, stream>>>(
      static_cast<W*>(dst), static_cast<const W*>(src), static_cast<Index>(units), shape);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace

// ---------------------------------------------------------------------------------------------- launchers

template <class T>
void copy_strided(T* dst, const T* src, int64_t n, const StridedShape& shape, const StridedShape& src_st,
                  cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int64_t elem = sizeof(T);
  StridedShape c = coalesce(shape, src_st);
  const int nd = c.ndim;
  if (nd == 0 || (nd == 1 && c.stride[0] == 1)) {
    MIXGRAD_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n * elem), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  const int64_t len = c.size[nd - 1], last_stride = c.stride[nd - 1];
  if (nd >= 2 && c.stride[nd - 2] == 1 && last_stride != 0 && len >= kMinTransposeDim &&
      c.size[nd - 2] >= kMinTransposeDim) {
    using W = typename WordOf<static_cast<int>(elem)>::type;
    launch_transpose<W>(reinterpret_cast<W*>(dst), reinterpret_cast<const W*>(src), n, c, stream);
    return;
  }
  // Contiguous last dim: move the widest word that the row length, the outer strides and both pointers allow.
  int64_t word = elem;
  if (last_stride == 1) {
    for (int64_t w = 16; w > elem; w /= 2) {
      bool fits = (len * elem) % w == 0 && aligned(dst, w) && aligned(src, w);
      for (int d = 0; d < nd - 1 && fits; ++d) fits = (c.stride[d] * elem) % w == 0;
      if (fits) {
        word = w;
        break;
      }
    }
    if (word != elem) {
      c.size[nd - 1] = len * elem / word;
      for (int d = 0; d < nd - 1; ++d) c.stride[d] = c.stride[d] * elem / word;
    }
  }
  const int64_t units = n * elem / word;
  dispatch_word(static_cast<int>(word), [&](auto tag) {
    using W = decltype(tag);
    if (units <= INT32_MAX)
      launch_gather<W, uint32_t>(dst, src, units, c, stream);
    else
      launch_gather<W, int64_t>(dst, src, units, c, stream);
  });
}

template <class T>
void slice_copy(T* dst, const T* src, int64_t outer, int64_t src_dim, int64_t dst_dim, int64_t inner,
                int64_t src_offset, int64_t dst_offset, int64_t len, cudaStream_t stream) {
  if (outer <= 0 || inner <= 0 || len <= 0) return;
  constexpr int64_t elem = sizeof(T);
  T* d = dst + dst_offset * inner;
  const T* s = src + src_offset * inner;
  const int64_t row = len * inner * elem, dst_pitch = dst_dim * inner * elem, src_pitch = src_dim * inner * elem;
  if (outer == 1 || (row == dst_pitch && row == src_pitch)) {
    MIXGRAD_CUDA_CHECK(cudaMemcpyAsync(d, s, static_cast<size_t>(outer * row), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  int64_t word = 16;
  while (word > 1 && !(row % word == 0 && dst_pitch % word == 0 && src_pitch % word == 0 && aligned(d, word) &&
                       aligned(s, word)))
    word /= 2;
  const int64_t row_words = row / word, total = outer * row_words;
  dispatch_word(static_cast<int>(word), [&](auto tag) {
    using W = decltype(tag);
    W* dw = reinterpret_cast<W*>(d);
    const W* sw = reinterpret_cast<const W*>(s);
    if (total <= INT32_MAX) {
      row_copy_kernel<W, uint32_t><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
          dw, sw, static_cast<uint32_t>(total), static_cast<uint32_t>(row_words), dst_pitch / word, src_pitch / word);
    } else {
      row_copy_kernel<W, int64_t><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
          dw, sw, total, row_words, dst_pitch / word, src_pitch / word);
    }
    MIXGRAD_CUDA_LAUNCH_CHECK();
  });
}

#define MIXGRAD_INSTANTIATE_LAYOUT(T)                                                                         \
  template void copy_strided<T>(T*, const T*, int64_t, const StridedShape&, const StridedShape&, cudaStream_t); \
  template void slice_copy<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,     \
                              cudaStream_t);
MIXGRAD_INSTANTIATE_LAYOUT(float)
MIXGRAD_INSTANTIATE_LAYOUT(double)
MIXGRAD_INSTANTIATE_LAYOUT(int32_t)
MIXGRAD_INSTANTIATE_LAYOUT(int64_t)
MIXGRAD_INSTANTIATE_LAYOUT(uint8_t)
#undef MIXGRAD_INSTANTIATE_LAYOUT

}  // namespace mixgrad::kernels::cuda
