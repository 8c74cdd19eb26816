// CUDA embedding gather and deterministic gradient (stable radix sort of (row, position), then a segmented sum in
// position order). Kernels first, then the workspace layout and the launchers.
#include "kernels/cuda/embedding.h"

#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/reduce_utils.cuh"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kMaxRowThreads = 256;

// Warp per position: y[p, :] = weight[index[p], :], a zero row (and the flag) for an index out of range.
template <int W>
__global__ void embedding_forward_kernel(float* y, const float* weight, const int64_t* index, int64_t n_index,
                                         int64_t num_embeddings, int64_t dim, int* bad_index) {
  const int lane = threadIdx.x & 31;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); p < n_index;
       p += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t e = index[p];
    const bool ok = e >= 0 && e < num_embeddings;
    if (!ok && lane == 0 && bad_index) *bad_index = 1;
    for (int64_t c = static_cast<int64_t>(lane) * W; c < dim; c += 32 * W) {
      float v[W] = {};
      if (ok) load_vec<W>(weight + e * dim + c, v);
      store_vec<W>(y + p * dim + c, v);
    }
  }
}

// Only flags out-of-range indices (for shapes where nothing else is launched).
__global__ void flag_bad_index_kernel(const int64_t* index, int64_t n_index, int64_t num_embeddings, int* bad_index) {
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < n_index;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x)
    if (index[p] < 0 || index[p] >= num_embeddings) *bad_index = 1;
}

// keys[p] = index[p] (num_embeddings, past every real row, for an index out of range), pos[p] = p.
template <class Key, class Pos>
__global__ void prepare_pairs_kernel(Key* keys, Pos* pos, const int64_t* index, int64_t n_index, int64_t num_embeddings,
                                     int* bad_index) {
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < n_index;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = index[p];
    const bool ok = e >= 0 && e < num_embeddings;
    if (!ok && bad_index) *bad_index = 1;
    keys[p] = static_cast<Key>(ok ? e : num_embeddings);
    pos[p] = static_cast<Pos>(p);
  }
}

template <class Key>
__device__ __forceinline__ int64_t lower_bound(const Key* keys, int64_t n, Key value) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + ((hi - lo) >> 1);
    if (keys[mid] < value)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// Block per row e of dweight: its pairs are keys[begin, end) of the sorted keys (positions ascending, the sort is
// stable); threads over the columns add the dy rows in that order. Rows nobody uses get zeros.
template <int W, class Key, class Pos>
__global__ void segment_sum_kernel(float* dweight, const float* dy, const Key* keys, const Pos* pos, int64_t n_index,
                                   int64_t num_embeddings, int64_t dim) {
  for (int64_t e = blockIdx.x; e < num_embeddings; e += gridDim.x) {
    const int64_t begin = lower_bound(keys, n_index, static_cast<Key>(e));
    const int64_t end = lower_bound(keys, n_index, static_cast<Key>(e + 1));
    for (int64_t c = static_cast<int64_t>(threadIdx.x) * W; c < dim; c += static_cast<int64_t>(blockDim.x) * W) {
      float acc[W] = {};
#pragma unroll 4
      for (int64_t k = begin; k < end; ++k) {
        float v[W];
        load_vec<W>(dy + static_cast<int64_t>(pos[k]) * dim + c, v);
#pragma unroll
        for (int t = 0; t < W; ++t) acc[t] += v[t];
      }
      store_vec<W>(dweight + e * dim + c, acc);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------

size_t align256(size_t n) { return (n + 255) & ~size_t{255}; }

// 32-bit sort keys and positions when they fit (half the sort traffic), else 64-bit.
bool narrow_pairs(int64_t n_index, int64_t num_embeddings) {
  return num_embeddings < int64_t{UINT32_MAX} && n_index <= int64_t{INT_MAX};
}

// Bits the radix sort looks at: enough for every key, num_embeddings (the out-of-range key) included.
int key_bits(int64_t num_embeddings) {
  int bits = 1;
  while (bits < 63 && (int64_t{1} << bits) <= num_embeddings) ++bits;
  return bits;
}

// Workspace: keys[2][n], pos[2][n] (the sort's double buffers), then CUB's temporary storage.
template <class Key, class Pos>
struct PairLayout {
  size_t keys_bytes = 0, pos_bytes = 0, temp_bytes = 0;

  PairLayout(int64_t n_index, int64_t num_embeddings) {
    keys_bytes = align256(static_cast<size_t>(n_index) * sizeof(Key));
    pos_bytes = align256(static_cast<size_t>(n_index) * sizeof(Pos));
    cub::DoubleBuffer<Key> keys(nullptr, nullptr);
    cub::DoubleBuffer<Pos> pos(nullptr, nullptr);
    MIXGRAD_CUDA_CHECK(
        cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys, pos, count(n_index), 0, key_bits(num_embeddings)));
    temp_bytes = align256(temp_bytes);
  }
  static auto count(int64_t n) {
    if constexpr (sizeof(Key) == 4)
      return static_cast<int>(n);
    else
      return n;
  }
  size_t total() const { return 2 * keys_bytes + 2 * pos_bytes + temp_bytes; }
};

template <class Key, class Pos>
void backward_impl(float* dweight, const float* dy, const int64_t* index, int64_t n_index, int64_t num_embeddings,
                   int64_t dim, void* workspace, int* bad_index, cudaStream_t stream) {
  const PairLayout<Key, Pos> layout(n_index, num_embeddings);
  char* ws = static_cast<char*>(workspace);
  Key* keys0 = reinterpret_cast<Key*>(ws);
  Key* keys1 = reinterpret_cast<Key*>(ws + layout.keys_bytes);
  Pos* pos0 = reinterpret_cast<Pos*>(ws + 2 * layout.keys_bytes);
  Pos* pos1 = reinterpret_cast<Pos*>(ws + 2 * layout.keys_bytes + layout.pos_bytes);
  void* temp = ws + 2 * layout.keys_bytes + 2 * layout.pos_bytes;

  prepare_pairs_kernel<Key, Pos>
      <<<grid_for(n_index, 256), 256, 0, stream>>>(keys0, pos0, index, n_index, num_embeddings, bad_index);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  // The DoubleBuffer form sorts in place between our two buffers; which one holds the result is decided on the
  // host (from the number of passes), so no sync is needed to find it.
  cub::DoubleBuffer<Key> keys(keys0, keys1);
  cub::DoubleBuffer<Pos> pos(pos0, pos1);
  size_t temp_bytes = layout.temp_bytes;
  MIXGRAD_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys, pos, PairLayout<Key, Pos>::count(n_index),
                                                     0, key_bits(num_embeddings), stream));
  MIXGRAD_CUDA_LAUNCH_CHECK();

  const bool vec = dim % 4 == 0 && aligned16(dy) && aligned16(dweight);
  const int64_t lanes = vec ? dim / 4 : dim;
  const int threads =
      static_cast<int>(std::min<int64_t>(kMaxRowThreads, std::max<int64_t>(32, ceil_div(lanes, 32) * 32)));
  const unsigned grid = static_cast<unsigned>(std::min(num_embeddings, kMaxGrid));
  if (vec)
    segment_sum_kernel<4, Key, Pos>
        <<<grid, threads, 0, stream>>>(dweight, dy, keys.Current(), pos.Current(), n_index, num_embeddings, dim);
  else
    segment_sum_kernel<1, Key, Pos>
        <<<grid, threads, 0, stream>>>(dweight, dy, keys.Current(), pos.Current(), n_index, num_embeddings, dim);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace

void embedding_forward(float* y, const float* weight, const int64_t* index, int64_t n_index, int64_t num_embeddings,
                       int64_t dim, int* bad_index, cudaStream_t stream) {
  if (n_index <= 0) return;
  if (dim <= 0) {  // nothing to copy, but bad indices are still reported
    if (bad_index) {
      flag_bad_index_kernel<<<grid_for(n_index, 256), 256, 0, stream>>>(index, n_index, num_embeddings, bad_index);
      MIXGRAD_CUDA_LAUNCH_CHECK();
    }
    return;
  }
  const unsigned grid = grid_for(n_index, kWarpsPerBlock);
  if (dim % 4 == 0 && aligned16(y) && aligned16(weight))
    embedding_forward_kernel<4>
        <<<grid, kWarpsPerBlock * 32, 0, stream>>>(y, weight, index, n_index, num_embeddings, dim, bad_index);
  else
    embedding_forward_kernel<1>
        <<<grid, kWarpsPerBlock * 32, 0, stream>>>(y, weight, index, n_index, num_embeddings, dim, bad_index);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

size_t embedding_backward_workspace_bytes(int64_t n_index, int64_t num_embeddings) {
  if (n_index <= 0 || num_embeddings <= 0) return 0;
  if (narrow_pairs(n_index, num_embeddings)) return PairLayout<uint32_t, uint32_t>(n_index, num_embeddings).total();
  return PairLayout<uint64_t, uint64_t>(n_index, num_embeddings).total();
}

void embedding_backward(float* dweight, const float* dy, const int64_t* index, int64_t n_index, int64_t num_embeddings,
                        int64_t dim, void* workspace, int* bad_index, cudaStream_t stream) {
  if (num_embeddings <= 0 || dim <= 0 || n_index <= 0) {
    if (num_embeddings > 0 && dim > 0)  // no positions: the gradient is zero
      MIXGRAD_CUDA_CHECK(
          cudaMemsetAsync(dweight, 0, static_cast<size_t>(num_embeddings * dim) * sizeof(float), stream));
    if (n_index > 0 && bad_index) {
      flag_bad_index_kernel<<<grid_for(n_index, 256), 256, 0, stream>>>(index, n_index, num_embeddings, bad_index);
      MIXGRAD_CUDA_LAUNCH_CHECK();
    }
    return;
  }
  if (!workspace)
    throw std::invalid_argument("embedding_backward: n_index = " + std::to_string(n_index) +
                                " needs a workspace of embedding_backward_workspace_bytes() bytes, got null");
  if (narrow_pairs(n_index, num_embeddings))
    backward_impl<uint32_t, uint32_t>(dweight, dy, index, n_index, num_embeddings, dim, workspace, bad_index, stream);
  else
    backward_impl<uint64_t, uint64_t>(dweight, dy, index, n_index, num_embeddings, dim, workspace, bad_index, stream);
}

}  // namespace mixgrad::kernels::cuda
