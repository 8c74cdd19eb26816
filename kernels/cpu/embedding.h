// Embedding lookup (rows of a [num_embeddings, dim] table gathered by int64 indices) and its deterministic
// gradient: the CPU reference for kernels/cuda/embedding.h.
#pragma once
#include <cstdint>

namespace mixgrad::kernels::cpu {

// y[p, :] = weight[index[p], :] for p < n_index. Throws std::invalid_argument naming the value, its position and
// the range for an index outside [0, num_embeddings) (nothing is written then).
template <class T>
void embedding_forward(T* y, const T* weight, const int64_t* index, int64_t n_index, int64_t num_embeddings,
                       int64_t dim);

// dweight[e, :] = sum over p with index[p] == e of dy[p, :], added in increasing p (so the result is the same as
// the CUDA twin's bit for bit); dweight is fully written (zero rows for unused entries). Throws like the forward.
template <class T>
void embedding_backward(T* dweight, const T* dy, const int64_t* index, int64_t n_index, int64_t num_embeddings,
                        int64_t dim);

}  // namespace mixgrad::kernels::cpu
