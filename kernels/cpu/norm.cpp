// LayerNorm / RMSNorm rows: two-pass statistics in double, OpenMP over rows, and the weight/bias gradients as
// column sums computed per column tile in row order (deterministic whatever the thread count).
#include "kernels/cpu/norm.h"

#include <algorithm>
#include <cmath>

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 14;
constexpr int64_t kColTile = 64;

}  // namespace

template <class T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t rows, int64_t cols,
                        T eps) {
  if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += static_cast<double>(xr[c]);
    const double mu = sum / static_cast<double>(cols);
    double sq = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double d = static_cast<double>(xr[c]) - mu;
      sq += d * d;
    }
    const double rs = 1.0 / std::sqrt(sq / static_cast<double>(cols) + static_cast<double>(eps));
    for (int64_t c = 0; c < cols; ++c) {
      double v = (static_cast<double>(xr[c]) - mu) * rs;
      if (weight) v *= static_cast<double>(weight[c]);
      if (bias) v += static_cast<double>(bias[c]);
      yr[c] = static_cast<T>(v);
    }
    if (mean) mean[r] = static_cast<T>(mu);
    if (rstd) rstd[r] = static_cast<T>(rs);
  }
}

template <class T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* mean, const T* rstd,
                         const T* weight, int64_t rows, int64_t cols) {
  if (cols <= 0) return;
  const bool parallel = rows * cols > kParallelWork;
  if (dx && rows > 0) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * cols;
      const T* dyr = dy + r * cols;
      const double mu = static_cast<double>(mean[r]), rs = static_cast<double>(rstd[r]);
      // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight.
      double sg = 0, sgx = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double g = static_cast<double>(dyr[c]) * (weight ? static_cast<double>(weight[c]) : 1.0);
        sg += g;
        sgx += g * (static_cast<double>(xr[c]) - mu) * rs;
      }
      const double mg = sg / static_cast<double>(cols), mgx = sgx / static_cast<double>(cols);
      T* dxr = dx + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        const double g = static_cast<double>(dyr[c]) * (weight ? static_cast<double>(weight[c]) : 1.0);
        const double xhat = (static_cast<double>(xr[c]) - mu) * rs;
        dxr[c] = static_cast<T>(rs * (g - mg - xhat * mgx));
      }
    }
  }
  if (!dweight && !dbias) return;
  const int64_t tiles = (cols + kColTile - 1) / kColTile;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t c0 = t * kColTile, n = std::min(kColTile, cols - c0);
    double acc_w[kColTile], acc_b[kColTile];
    std::fill(acc_w, acc_w + n, 0.0);
    std::fill(acc_b, acc_b + n, 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * cols + c0;
      const T* dyr = dy + r * cols + c0;
      const double mu = static_cast<double>(mean[r]), rs = static_cast<double>(rstd[r]);
      for (int64_t j = 0; j < n; ++j) {
        const double g = static_cast<double>(dyr[j]);
        acc_w[j] += g * (static_cast<double>(xr[j]) - mu) * rs;
        acc_b[j] += g;
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      if (dweight) dweight[c0 + j] = static_cast<T>(acc_w[j]);
      if (dbias) dbias[c0 + j] = static_cast<T>(acc_b[j]);
    }
  }
}

template <class T>
void rms_norm_forward(T* y, T* rstd, const T* x, const T* weight, int64_t rows, int64_t cols, T eps) {
  if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    double sq = 0;
    for (int64_t c = 0; c < cols; ++c) sq += static_cast<double>(xr[c]) * static_cast<double>(xr[c]);
    const double rs = 1.0 / std::sqrt(sq / static_cast<double>(cols) + static_cast<double>(eps));
    for (int64_t c = 0; c < cols; ++c) {
      double v = static_cast<double>(xr[c]) * rs;
      if (weight) v *= static_cast<double>(weight[c]);
      yr[c] = static_cast<T>(v);
    }
    if (rstd) rstd[r] = static_cast<T>(rs);
  }
}

template <class T>
void rms_norm_backward(T* dx, T* dweight, const T* dy, const T* x, const T* rstd, const T* weight, int64_t rows,
                       int64_t cols) {
  if (cols <= 0) return;
  const bool parallel = rows * cols > kParallelWork;
  if (dx && rows > 0) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * cols;
      const T* dyr = dy + r * cols;
      const double rs = static_cast<double>(rstd[r]);
      // dx = rstd * (g - x * rstd^2 * mean(g * x)) with g = dy * weight.
      double sgx = 0;
      for (int64_t c = 0; c < cols; ++c)
        sgx +=
            static_cast<double>(dyr[c]) * (weight ? static_cast<double>(weight[c]) : 1.0) * static_cast<double>(xr[c]);
      const double k = rs * rs * sgx / static_cast<double>(cols);
      T* dxr = dx + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        const double g = static_cast<double>(dyr[c]) * (weight ? static_cast<double>(weight[c]) : 1.0);
        dxr[c] = static_cast<T>(rs * (g - static_cast<double>(xr[c]) * k));
      }
    }
  }
  if (!dweight) return;
  const int64_t tiles = (cols + kColTile - 1) / kColTile;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t c0 = t * kColTile, n = std::min(kColTile, cols - c0);
    double acc[kColTile];
    std::fill(acc, acc + n, 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * cols + c0;
      const T* dyr = dy + r * cols + c0;
      const double rs = static_cast<double>(rstd[r]);
      for (int64_t j = 0; j < n; ++j) acc[j] += static_cast<double>(dyr[j]) * static_cast<double>(xr[j]) * rs;
    }
    for (int64_t j = 0; j < n; ++j) dweight[c0 + j] = static_cast<T>(acc[j]);
  }
}

#define MIXGRAD_INSTANTIATE(T)                                                                                \
  template void layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, T);         \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t, \
                                       int64_t);                                                              \
  template void rms_norm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, T);                         \
  template void rms_norm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t);
MIXGRAD_INSTANTIATE(float)
MIXGRAD_INSTANTIATE(double)
#undef MIXGRAD_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
