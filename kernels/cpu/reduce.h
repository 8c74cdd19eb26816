// Sum/mean and max/argmax over one dimension of a contiguous tensor viewed as [outer, dim, inner]: the CPU
// reference for kernels/cuda/reduce.h.
#pragma once
#include <cstdint>

namespace mixgrad::kernels::cpu {

// y[o, i] = scale * sum_d x[o, d, i] (scale = 1 for sum, 1 / dim for mean), accumulated in double.
// dim == 0 gives y = scale * 0 (0 for sum, NaN for a mean with scale = inf, like PyTorch).
template <class T>
void sum_dim_forward(T* y, const T* x, int64_t outer, int64_t dim, int64_t inner, T scale);

// dx[o, d, i] = scale * dy[o, i] (dx fully written).
template <class T>
void sum_dim_backward(T* dx, const T* dy, int64_t outer, int64_t dim, int64_t inner, T scale);

// y[o, i] = max_d x[o, d, i], argmax[o, i] = its d: the first index on ties; a NaN is the maximum (the first
// NaN wins), like torch.max. Throws std::invalid_argument when dim == 0 and the output is not empty.
template <class T>
void max_dim_forward(T* y, int64_t* argmax, const T* x, int64_t outer, int64_t dim, int64_t inner);

// dx[o, d, i] = dy[o, i] where d == argmax[o, i], else 0 (dx fully written). Throws std::invalid_argument for
// an argmax outside [0, dim).
template <class T>
void max_dim_backward(T* dx, const T* dy, const int64_t* argmax, int64_t outer, int64_t dim, int64_t inner);

}  // namespace mixgrad::kernels::cpu
