// LayerNorm / RMSNorm rows: two-pass statistics in double (LayerNorm's in four float64 lanes, vec::D4), OpenMP over
// rows, and the weight/bias gradients as column sums in a fixed order (LayerNorm: per row block, then the blocks;
// RMSNorm: per column tile in row order) — deterministic whatever the thread count.
#include "kernels/cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/vec_math.h"

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 14;
constexpr int64_t kColTile = 64;
constexpr int64_t kRowBlocks = 64;  // row blocks of LayerNorm's weight and bias gradients

}  // namespace

template <class T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t rows, int64_t cols,
                        T eps) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t c4 = cols / 4 * 4;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    vec::D4 acc = {};
    for (int64_t c = 0; c < c4; c += 4) {
      vec::D4 v;
      vec::load_d4(v, xr + c);
      acc += v;
    }
    double sum = vec::hsum(acc);
    for (int64_t t = 0; t < cols % 4; ++t) sum += static_cast<double>(xr[c4 + t]);
    const double mu = sum / static_cast<double>(cols);
    acc = vec::D4{};
    for (int64_t c = 0; c < c4; c += 4) {
      vec::D4 v;
      vec::load_d4(v, xr + c);
      v -= mu;
      acc += v * v;
    }
    double sq = vec::hsum(acc);
    for (int64_t t = 0; t < cols % 4; ++t) {
      const double d = static_cast<double>(xr[c4 + t]) - mu;
      sq += d * d;
    }
    const double rs = 1.0 / std::sqrt(sq / static_cast<double>(cols) + static_cast<double>(eps));
    for (int64_t c = 0; c < c4; c += 4) {
      vec::D4 v, w;
      vec::load_d4(v, xr + c);
      v = (v - mu) * rs;
      if (weight) {
        vec::load_d4(w, weight + c);
        v *= w;
      }
      if (bias) {
        vec::load_d4(w, bias + c);
        v += w;
      }
      vec::store_d4(yr + c, v);
    }
    for (int64_t c = c4; c < cols; ++c) {
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
  const int64_t c4 = cols / 4 * 4;
  if (dx && rows > 0) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * cols;
      const T* dyr = dy + r * cols;
      const double mu = static_cast<double>(mean[r]), rs = static_cast<double>(rstd[r]);
      // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight.
      // g = dy·weight and xhat = (x − mean)·rstd for columns c .. c+3.
      const auto load_g_xhat = [&](int64_t c, vec::D4& g, vec::D4& xhat) {
        vec::load_d4(g, dyr + c);
        if (weight) {
          vec::D4 w;
          vec::load_d4(w, weight + c);
          g *= w;
        }
        vec::load_d4(xhat, xr + c);
        xhat = (xhat - mu) * rs;
      };
      vec::D4 acc_g = {}, acc_gx = {};
      for (int64_t c = 0; c < c4; c += 4) {
        vec::D4 g, xhat;
        load_g_xhat(c, g, xhat);
        acc_g += g;
        acc_gx += g * xhat;
      }
      double sg = vec::hsum(acc_g), sgx = vec::hsum(acc_gx);
      for (int64_t c = c4; c < cols; ++c) {
        const double g = static_cast<double>(dyr[c]) * (weight ? static_cast<double>(weight[c]) : 1.0);
        sg += g;
        sgx += g * ((static_cast<double>(xr[c]) - mu) * rs);
      }
      const double mg = sg / static_cast<double>(cols), mgx = sgx / static_cast<double>(cols);
      T* dxr = dx + r * cols;
      for (int64_t c = 0; c < c4; c += 4) {
        vec::D4 g, xhat;
        load_g_xhat(c, g, xhat);
        vec::store_d4(dxr + c, rs * (g - mg - xhat * mgx));
      }
      for (int64_t c = c4; c < cols; ++c) {
        const double g = static_cast<double>(dyr[c]) * (weight ? static_cast<double>(weight[c]) : 1.0);
        const double xhat = (static_cast<double>(xr[c]) - mu) * rs;
        dxr[c] = static_cast<T>(rs * (g - mg - xhat * mgx));
      }
    }
  }
  if (!dweight && !dbias) return;
  // Column sums over rows, per (row block, column tile) task: each sums its rows in order, then the row blocks are
  // added in order. The number of row blocks depends on the sizes alone (never on the thread count), so the result
  // is deterministic; it is chosen to give about kRowBlocks tasks, so a few columns still use every thread.
  const int64_t tiles = (cols + kColTile - 1) / kColTile;
  const int64_t nblk = std::clamp<int64_t>(kRowBlocks / tiles, 1, std::max<int64_t>(rows, 1));
  std::vector<double> part_w(static_cast<size_t>(nblk * cols)), part_b(part_w.size());
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t task = 0; task < nblk * tiles; ++task) {
    const int64_t blk = task / tiles, c0 = (task % tiles) * kColTile, n = std::min(kColTile, cols - c0);
    double acc_w[kColTile], acc_b[kColTile];
    std::fill(acc_w, acc_w + n, 0.0);
    std::fill(acc_b, acc_b + n, 0.0);
    for (int64_t r = blk * rows / nblk; r < (blk + 1) * rows / nblk; ++r) {
      const T* xr = x + r * cols + c0;
      const T* dyr = dy + r * cols + c0;
      const double mu = static_cast<double>(mean[r]), rs = static_cast<double>(rstd[r]);
      for (int64_t j = 0; j < n; ++j) {
        const double g = static_cast<double>(dyr[j]);
        acc_w[j] += g * ((static_cast<double>(xr[j]) - mu) * rs);
        acc_b[j] += g;
      }
    }
    std::copy(acc_w, acc_w + n, part_w.begin() + blk * cols + c0);
    std::copy(acc_b, acc_b + n, part_b.begin() + blk * cols + c0);
  }
  for (int64_t j = 0; j < cols; ++j) {
    double w = 0, b = 0;
    for (int64_t blk = 0; blk < nblk; ++blk) {
      w += part_w[static_cast<size_t>(blk * cols + j)];
      b += part_b[static_cast<size_t>(blk * cols + j)];
    }
    if (dweight) dweight[j] = static_cast<T>(w);
    if (dbias) dbias[j] = static_cast<T>(b);
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
