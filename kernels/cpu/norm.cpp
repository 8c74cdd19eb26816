// LayerNorm / RMSNorm / ScaleNorm rows: two-pass statistics in double (LayerNorm's in four float64 lanes, vec::D4),
// OpenMP over rows, and the weight/bias gradients as column sums in a fixed order (LayerNorm and BatchNorm: per row
// block, then the blocks; RMSNorm: per column tile in row order; ScaleNorm's scalar gradient: per row, then the rows
// in order) — deterministic whatever the thread count. BatchNorm's per-channel statistics are such column sums over
// the valid rows.
#include "kernels/cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/vec_math.h"

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 14;
constexpr int64_t kColTile = 64;
constexpr int64_t kRowBlocks = 64;  // row blocks of the column sums (norm weight and bias gradients)

// Σ over the valid rows r (norm_row_valid) of term(r, c, a, b) per column c, into sum_a and sum_b [cols], in a fixed
// order: each (row block, column tile) task sums its rows in order, then the row blocks are added in order. The
// block count depends on the sizes alone (never on the thread count), so the result is deterministic; it is chosen to
// give about kRowBlocks tasks, so a few columns still use every thread. lengths null: every row is valid.
template <class F>
void masked_column_sums(double* sum_a, double* sum_b, const int32_t* lengths, int64_t rows, int64_t length,
                        int64_t cols, F&& term) {
  const int64_t tiles = (cols + kColTile - 1) / kColTile;
  const int64_t nblk = std::clamp<int64_t>(kRowBlocks / tiles, 1, std::max<int64_t>(rows, 1));
  std::vector<double> part_a(static_cast<size_t>(nblk * cols)), part_b(part_a.size());
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t task = 0; task < nblk * tiles; ++task) {
    const int64_t blk = task / tiles, c0 = (task % tiles) * kColTile, n = std::min(kColTile, cols - c0);
    double acc_a[kColTile], acc_b[kColTile];
    std::fill(acc_a, acc_a + n, 0.0);
    std::fill(acc_b, acc_b + n, 0.0);
    for (int64_t r = blk * rows / nblk; r < (blk + 1) * rows / nblk; ++r) {
      if (!norm_row_valid(lengths, r, length)) continue;
      for (int64_t j = 0; j < n; ++j) term(r, c0 + j, acc_a[j], acc_b[j]);
    }
    std::copy(acc_a, acc_a + n, part_a.begin() + blk * cols + c0);
    std::copy(acc_b, acc_b + n, part_b.begin() + blk * cols + c0);
  }
  for (int64_t j = 0; j < cols; ++j) {
    double a = 0, b = 0;
    for (int64_t blk = 0; blk < nblk; ++blk) {
      a += part_a[static_cast<size_t>(blk * cols + j)];
      b += part_b[static_cast<size_t>(blk * cols + j)];
    }
    sum_a[j] = a;
    sum_b[j] = b;
  }
}

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
  std::vector<double> sum_w(static_cast<size_t>(cols)), sum_b(sum_w.size());
  masked_column_sums(sum_w.data(), sum_b.data(), nullptr, rows, rows, cols,
                     [&](int64_t r, int64_t c, double& acc_w, double& acc_b) {
                       const double g = static_cast<double>(dy[r * cols + c]);
                       const double xhat = (static_cast<double>(x[r * cols + c]) - static_cast<double>(mean[r])) *
                                           static_cast<double>(rstd[r]);
                       acc_w += g * xhat;
                       acc_b += g;
                     });
  for (int64_t j = 0; j < cols; ++j) {
    if (dweight) dweight[j] = static_cast<T>(sum_w[static_cast<size_t>(j)]);
    if (dbias) dbias[j] = static_cast<T>(sum_b[static_cast<size_t>(j)]);
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

namespace {


// Batch mean and rstd of the valid positions (two passes), and the running-statistics update when requested.
template <class T>
void batch_norm_batch_stats(T* mean, T* rstd, T* running_mean, T* running_var, const T* x, const int32_t* lengths,
                            const BatchNormSizes& s, T momentum, T eps) {
  const int64_t C = s.channels, n = norm_valid_count(lengths, s.batch, s.length);
  const double inv_n = n > 0 ? 1.0 / static_cast<double>(n) : 0.0;
  std::vector<double> mu(static_cast<size_t>(C)), var(mu.size()), unused(mu.size());
  masked_column_sums(mu.data(), unused.data(), lengths, s.rows(), s.length, C,
                     [&](int64_t r, int64_t c, double& a, double&) { a += static_cast<double>(x[r * C + c]); });
  for (double& m : mu) m *= inv_n;
  masked_column_sums(var.data(), unused.data(), lengths, s.rows(), s.length, C,
                     [&](int64_t r, int64_t c, double& a, double&) {
                       const double d = static_cast<double>(x[r * C + c]) - mu[static_cast<size_t>(c)];
                       a += d * d;
                     });
  for (int64_t c = 0; c < C; ++c) {
    const double v = var[static_cast<size_t>(c)] * inv_n, m = mu[static_cast<size_t>(c)];
    mean[c] = static_cast<T>(m);
    rstd[c] = static_cast<T>(norm_rstd(v, static_cast<double>(eps)));
    if (running_mean && running_var) {
      double rm = static_cast<double>(running_mean[c]), rv = static_cast<double>(running_var[c]);
      batch_norm_running_update(rm, rv, m, v, n, static_cast<double>(momentum));
      running_mean[c] = static_cast<T>(rm);
      running_var[c] = static_cast<T>(rv);
    }
  }
}

}  // namespace

template <class T>
void scale_norm_forward(T* y, T* rstd, const T* x, const T* g, int64_t rows, int64_t cols, T eps) {
  if (rows <= 0 || cols <= 0) return;
  const double gv = static_cast<double>(*g);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    double sq = 0;
    for (int64_t c = 0; c < cols; ++c) sq += static_cast<double>(xr[c]) * static_cast<double>(xr[c]);
    const double rs = norm_rstd(sq / static_cast<double>(cols), static_cast<double>(eps)), scale = gv * rs;
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = static_cast<T>(static_cast<double>(xr[c]) * scale);
    if (rstd) rstd[r] = static_cast<T>(rs);
  }
}

template <class T>
void scale_norm_backward(T* dx, T* dg, const T* dy, const T* x, const T* rstd, const T* g, int64_t rows, int64_t cols) {
  if (dg) *dg = T(0);
  if (rows <= 0 || cols <= 0) return;
  const double gv = static_cast<double>(*g);
  std::vector<double> row_dg(static_cast<size_t>(rows));  // r·Σ_c dy·x per row, summed in row order below
#pragma omp parallel for schedule(static) if (rows * cols > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    const double rs = static_cast<double>(rstd[r]);
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += static_cast<double>(dyr[c]) * static_cast<double>(xr[c]);
    row_dg[static_cast<size_t>(r)] = rs * s;
    if (!dx) continue;
    const double k = rs * rs * s / static_cast<double>(cols);
    for (int64_t c = 0; c < cols; ++c)
      dx[r * cols + c] =
          static_cast<T>(scale_norm_dx(static_cast<double>(dyr[c]), static_cast<double>(xr[c]), gv * rs, k));
  }
  if (!dg) return;
  double total = 0;
  for (double v : row_dg) total += v;
  *dg = static_cast<T>(total);
}

template <class T>
void batch_norm_forward(T* y, T* mean, T* rstd, T* running_mean, T* running_var, const T* x, const int32_t* lengths,
                        const T* weight, const T* bias, const BatchNormSizes& s, bool training, T momentum, T eps) {
  const int64_t C = s.channels, rows = s.rows();
  if (C <= 0) return;
  if (training) {
    batch_norm_batch_stats(mean, rstd, running_mean, running_var, x, lengths, s, momentum, eps);
  } else {
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = running_mean[c];
      rstd[c] = static_cast<T>(norm_rstd(static_cast<double>(running_var[c]), static_cast<double>(eps)));
    }
  }
#pragma omp parallel for schedule(static) if (rows * C > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const bool valid = norm_row_valid(lengths, r, s.length);
    for (int64_t c = 0; c < C; ++c) {
      const double w = weight ? static_cast<double>(weight[c]) : 1.0, b = bias ? static_cast<double>(bias[c]) : 0.0;
      y[r * C + c] =
          valid ? static_cast<T>(batch_norm_value(static_cast<double>(x[r * C + c]), static_cast<double>(mean[c]),
                                                  static_cast<double>(rstd[c]), w, b))
                : T(0);
    }
  }
}

template <class T>
void batch_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const int32_t* lengths, const T* mean,
                         const T* rstd, const T* weight, const BatchNormSizes& s, bool training) {
  const int64_t C = s.channels, rows = s.rows();
  if (C <= 0) return;
  std::vector<double> sum_dy(static_cast<size_t>(C)), sum_dy_xhat(sum_dy.size());
  masked_column_sums(
      sum_dy.data(), sum_dy_xhat.data(), lengths, rows, s.length, C, [&](int64_t r, int64_t c, double& a, double& b) {
        const double g = static_cast<double>(dy[r * C + c]);
        a += g;
        b += g * (static_cast<double>(x[r * C + c]) - static_cast<double>(mean[c])) * static_cast<double>(rstd[c]);
      });
  for (int64_t c = 0; c < C; ++c) {
    dbias[c] = static_cast<T>(sum_dy[static_cast<size_t>(c)]);
    dweight[c] = static_cast<T>(sum_dy_xhat[static_cast<size_t>(c)]);
  }
  if (!dx) return;
  const int64_t n = norm_valid_count(lengths, s.batch, s.length);
  const double inv_n = training && n > 0 ? 1.0 / static_cast<double>(n) : 0.0;  // eval: no batch-statistics terms
#pragma omp parallel for schedule(static) if (rows * C > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const bool valid = norm_row_valid(lengths, r, s.length);
    for (int64_t c = 0; c < C; ++c) {
      if (!valid) {
        dx[r * C + c] = T(0);
        continue;
      }
      const double rs = static_cast<double>(rstd[c]), w = weight ? static_cast<double>(weight[c]) : 1.0;
      const double xhat = (static_cast<double>(x[r * C + c]) - static_cast<double>(mean[c])) * rs;
      dx[r * C + c] = static_cast<T>(batch_norm_dx(static_cast<double>(dy[r * C + c]), xhat, w * rs,
                                                   sum_dy[static_cast<size_t>(c)] * inv_n,
                                                   sum_dy_xhat[static_cast<size_t>(c)] * inv_n));
    }
  }
}

#define MIXGRAD_INSTANTIATE(T)                                                                                       \
  template void layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, T);                \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t,        \
                                       int64_t);                                                                     \
  template void rms_norm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, T);                                \
  template void rms_norm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t);              \
  template void scale_norm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, T);                              \
  template void scale_norm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t);            \
  template void batch_norm_forward<T>(T*, T*, T*, T*, T*, const T*, const int32_t*, const T*, const T*,              \
                                      const BatchNormSizes&, bool, T, T);                                            \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const int32_t*, const T*, const T*, const T*, \
                                       const BatchNormSizes&, bool);
MIXGRAD_INSTANTIATE(float)
MIXGRAD_INSTANTIATE(double)
#undef MIXGRAD_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
