// Softmax / log-softmax rows: max-shifted exponentials, double sums, OpenMP over rows. float rows take the
// vectorised helpers of kernels/cpu/vec_math.h (vec::exp within 2 ulp of std::exp, sums in float64 lanes); double
// rows keep <cmath>.
#include "kernels/cpu/softmax.h"

#include "kernels/cpu/vec_math.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 14;

}  // namespace

template <class T>
void softmax_forward(T* y, const T* x, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    const T m = vec::max_of(xr, cols);  // -inf for a fully masked row (NaN: see vec::max_of)
    if (m == -std::numeric_limits<T>::infinity()) {
      std::fill(yr, yr + cols, T(0));
      continue;
    }
    const double sum = vec::exp_sum_f64(xr, cols, m, yr);
    const T inv = static_cast<T>(1.0 / sum);
    for (int64_t c = 0; c < cols; ++c) yr[c] *= inv;
  }
}

template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * cols;
    const T* yr = y + r * cols;
    T* dxr = dx + r * cols;
    const T d = static_cast<T>(vec::dot_f64(dyr, yr, cols));
    for (int64_t c = 0; c < cols; ++c) dxr[c] = yr[c] * (dyr[c] - d);
  }
}

template <class T>
void log_softmax_forward(T* y, const T* x, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    const T m = vec::max_of(xr, cols);  // -inf for a fully masked row (NaN: see vec::max_of)
    if (m == -std::numeric_limits<T>::infinity()) {
      std::fill(yr, yr + cols, m);
      continue;
    }
    const double sum = vec::exp_sum_f64(xr, cols, m);
    const T shift = m + static_cast<T>(std::log(sum));
    for (int64_t c = 0; c < cols; ++c) yr[c] = xr[c] - shift;
  }
}

template <class T>
void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * cols;
    const T* yr = y + r * cols;
    T* dxr = dx + r * cols;
    double sum = 0;
    bool masked = true;
    for (int64_t c = 0; c < cols; ++c) {
      sum += static_cast<double>(dyr[c]);
      masked = masked && yr[c] == -std::numeric_limits<T>::infinity();
    }
    if (masked) {
      std::fill(dxr, dxr + cols, T(0));
      continue;
    }
    const T s = static_cast<T>(sum);
    if constexpr (std::is_same_v<T, float>) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) dxr[c] = dyr[c] - vec::exp(yr[c]) * s;
    } else {
      for (int64_t c = 0; c < cols; ++c) dxr[c] = dyr[c] - std::exp(yr[c]) * s;
    }
  }
}

#define MIXGRAD_INSTANTIATE(T)                                                 \
  template void softmax_forward<T>(T*, const T*, int64_t, int64_t);            \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t); \
  template void log_softmax_forward<T>(T*, const T*, int64_t, int64_t);        \
  template void log_softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);
MIXGRAD_INSTANTIATE(float)
MIXGRAD_INSTANTIATE(double)
#undef MIXGRAD_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
