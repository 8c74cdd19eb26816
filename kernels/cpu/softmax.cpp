// Softmax / log-softmax rows: max-shifted exponentials, double sums, OpenMP over rows.
#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 14;

// Largest entry of a row, ignoring NaN (a NaN then poisons the sum); -inf for a fully masked row.
template <class T>
T row_max(const T* x, int64_t cols) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t c = 0; c < cols; ++c) m = std::max(m, x[c]);
  return m;
}

}  // namespace

template <class T>
void softmax_forward(T* y, const T* x, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    const T m = row_max(xr, cols);
    if (m == -std::numeric_limits<T>::infinity()) {
      std::fill(yr, yr + cols, T(0));
      continue;
    }
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) {
      yr[c] = std::exp(xr[c] - m);
      sum += static_cast<double>(yr[c]);
    }
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
    double dot = 0;
    for (int64_t c = 0; c < cols; ++c) dot += static_cast<double>(dyr[c]) * static_cast<double>(yr[c]);
    const T d = static_cast<T>(dot);
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
    const T m = row_max(xr, cols);
    if (m == -std::numeric_limits<T>::infinity()) {
      std::fill(yr, yr + cols, m);
      continue;
    }
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += static_cast<double>(std::exp(xr[c] - m));
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
    for (int64_t c = 0; c < cols; ++c) dxr[c] = dyr[c] - std::exp(yr[c]) * s;
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
