// Sum/mean and max/argmax over one dimension: double accumulation, OpenMP over independent outputs.
#include "kernels/cpu/reduce.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace mixgrad::kernels::cpu {
namespace {

// Below this many elements touched, an OpenMP region costs more than it saves.
constexpr int64_t kParallelWork = int64_t{1} << 15;
// Columns of the [dim, inner] slab accumulated together when inner > 1 (a row of partial sums per tile).
constexpr int64_t kInnerTile = 256;

}  // namespace

template <class T>
void sum_dim_forward(T* y, const T* x, int64_t outer, int64_t dim, int64_t inner, T scale) {
  if (outer <= 0 || inner <= 0) return;
  const double s = static_cast<double>(scale);
  const bool parallel = outer * dim * inner > kParallelWork;
  if (inner == 1) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = x + o * dim;
      double acc = 0;
      for (int64_t d = 0; d < dim; ++d) acc += static_cast<double>(row[d]);
      y[o] = static_cast<T>(s * acc);
    }
    return;
  }
  const int64_t tiles = (inner + kInnerTile - 1) / kInnerTile;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t t = 0; t < outer * tiles; ++t) {
    const int64_t o = t / tiles, i0 = (t % tiles) * kInnerTile;
    const int64_t n = std::min(kInnerTile, inner - i0);
    double acc[kInnerTile];
    std::fill(acc, acc + n, 0.0);
    for (int64_t d = 0; d < dim; ++d) {
      const T* src = x + (o * dim + d) * inner + i0;
      for (int64_t j = 0; j < n; ++j) acc[j] += static_cast<double>(src[j]);
    }
    T* dst = y + o * inner + i0;
    for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<T>(s * acc[j]);
  }
}

template <class T>
void sum_dim_backward(T* dx, const T* dy, int64_t outer, int64_t dim, int64_t inner, T scale) {
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
#pragma omp parallel for schedule(static) if (outer * dim * inner > kParallelWork)
  for (int64_t od = 0; od < outer * dim; ++od) {
    const T* src = dy + (od / dim) * inner;
    T* dst = dx + od * inner;
    for (int64_t i = 0; i < inner; ++i) dst[i] = scale * src[i];
  }
}

template <class T>
void max_dim_forward(T* y, int64_t* argmax, const T* x, int64_t outer, int64_t dim, int64_t inner) {
  if (outer <= 0 || inner <= 0) return;
  if (dim <= 0)
    throw std::invalid_argument("max_dim_forward: cannot take the maximum over an empty dimension (outer = " +
                                std::to_string(outer) + ", inner = " + std::to_string(inner) + ")");
#pragma omp parallel for schedule(static) if (outer * dim * inner > kParallelWork)
  for (int64_t oi = 0; oi < outer * inner; ++oi) {
    const int64_t o = oi / inner, i = oi % inner;
    const T* col = x + o * dim * inner + i;
    T best = col[0];
    int64_t best_d = 0;
    // Strict comparisons keep the first index on ties; once a NaN is held nothing replaces it.
    for (int64_t d = 1; d < dim && !std::isnan(best); ++d) {
      const T v = col[d * inner];
      if (std::isnan(v) || v > best) {
        best = v;
        best_d = d;
      }
    }
    y[oi] = best;
    argmax[oi] = best_d;
  }
}

template <class T>
void max_dim_backward(T* dx, const T* dy, const int64_t* argmax, int64_t outer, int64_t dim, int64_t inner) {
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  for (int64_t oi = 0; oi < outer * inner; ++oi)
    if (argmax[oi] < 0 || argmax[oi] >= dim)
      throw std::invalid_argument("max_dim_backward: argmax " + std::to_string(argmax[oi]) + " at output " +
                                  std::to_string(oi) + " is outside [0, " + std::to_string(dim) + ")");
#pragma omp parallel for schedule(static) if (outer * dim * inner > kParallelWork)
  for (int64_t o = 0; o < outer; ++o) {
    T* slab = dx + o * dim * inner;
    std::fill(slab, slab + dim * inner, T(0));
    for (int64_t i = 0; i < inner; ++i) slab[argmax[o * inner + i] * inner + i] = dy[o * inner + i];
  }
}

#define MIXGRAD_INSTANTIATE(T)                                                         \
  template void sum_dim_forward<T>(T*, const T*, int64_t, int64_t, int64_t, T);        \
  template void sum_dim_backward<T>(T*, const T*, int64_t, int64_t, int64_t, T);       \
  template void max_dim_forward<T>(T*, int64_t*, const T*, int64_t, int64_t, int64_t); \
  template void max_dim_backward<T>(T*, const T*, const int64_t*, int64_t, int64_t, int64_t);
MIXGRAD_INSTANTIATE(float)
MIXGRAD_INSTANTIATE(double)
#undef MIXGRAD_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
