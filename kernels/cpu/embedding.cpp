// Embedding gather and its scatter-add gradient; the gradient splits the columns over OpenMP threads so each row
// still receives its contributions in position order.
#include "kernels/cpu/embedding.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 15;
constexpr int64_t kColTile = 64;

void check_indices(const char* op, const int64_t* index, int64_t n_index, int64_t num_embeddings) {
  for (int64_t p = 0; p < n_index; ++p)
    if (index[p] < 0 || index[p] >= num_embeddings)
      throw std::invalid_argument(std::string(op) + ": index " + std::to_string(index[p]) + " at position " +
                                  std::to_string(p) + " is out of range [0, " + std::to_string(num_embeddings) + ")");
}

}  // namespace

template <class T>
void embedding_forward(T* y, const T* weight, const int64_t* index, int64_t n_index, int64_t num_embeddings,
                       int64_t dim) {
  if (n_index <= 0 || dim <= 0) return;
  check_indices("embedding_forward", index, n_index, num_embeddings);
#pragma omp parallel for schedule(static) if (n_index * dim > kParallelWork)
  for (int64_t p = 0; p < n_index; ++p)
    std::memcpy(y + p * dim, weight + index[p] * dim, static_cast<size_t>(dim) * sizeof(T));
}

template <class T>
void embedding_backward(T* dweight, const T* dy, const int64_t* index, int64_t n_index, int64_t num_embeddings,
                        int64_t dim) {
  if (num_embeddings <= 0 || dim <= 0) return;
  check_indices("embedding_backward", index, n_index, num_embeddings);
  std::fill(dweight, dweight + num_embeddings * dim, T(0));
  const int64_t tiles = (dim + kColTile - 1) / kColTile;
#pragma omp parallel for schedule(static) if (n_index * dim > kParallelWork)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t c0 = t * kColTile, n = std::min(kColTile, dim - c0);
    for (int64_t p = 0; p < n_index; ++p) {
      const T* src = dy + p * dim + c0;
      T* dst = dweight + index[p] * dim + c0;
      for (int64_t j = 0; j < n; ++j) dst[j] += src[j];
    }
  }
}

#define MIXGRAD_INSTANTIATE(T)                                                                 \
  template void embedding_forward<T>(T*, const T*, const int64_t*, int64_t, int64_t, int64_t); \
  template void embedding_backward<T>(T*, const T*, const int64_t*, int64_t, int64_t, int64_t);
MIXGRAD_INSTANTIATE(float)
MIXGRAD_INSTANTIATE(double)
#undef MIXGRAD_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
