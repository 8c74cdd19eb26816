// AFT on the CPU (specs/mixers.md §4.3–4.5), float and double. Which path runs (engine/ops_aft.cpp chooses):
//   dense (GEMM) form — AFT-full, and AFT-local whose band is wider than a quarter of N: A = exp(w' − m^w) [N, N]
//     shared by the batch, E = exp(K − m^K), [num | den] = A·[E⊙V | E] as one strided-batched GEMM; backward
//     Aᵀ·[dnum | dden] and dA = Σ_b [dnum | dden]·[E⊙V | E]ᵀ as GEMMs.
//   band form — AFT-local with a narrow band, AFT-conv (per head) and AFT-simple (an empty band): every key outside
//     row t's band has weight exp(−m^w_t), so A·x = exp(−m^w_t)·(prefix + suffix sums of x) + an O(width) loop.
//   scan — causal AFT-simple (automatic path): a running-max prefix scan per (sample, channel) and a reverse scan
//     for the backward (spec §4.5), exact without a fallback.
//   fallback — after the dense or band form, an element whose den fell below the smallest normal / ε (the maxima of K
//   and w'
//     far apart, spec §4.3) is recomputed with the exact per-(t, d) two-pass form and marked den = 0; its backward
//     is recomputed the same way (aft_fallback_backward) instead of going through the GEMMs.
#include "kernels/cpu/aft.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "kernels/aft_math.h"
#include "kernels/cpu/gemm.h"

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 15;

template <class T>
T sigmoid(T x) {
  return stable_sigmoid(x);
}

// Calls f(h, first, last) for every head h and each of its two column ranges of a [.., 2D] row ([E⊙V | E]), so
// the per-head weight is read once and the inner loops run over contiguous columns.
template <class F>
void for_head_columns(int64_t D, int64_t heads, F&& f) {
  const int64_t per_head = D / heads;
  for (int64_t half = 0; half < 2; ++half)
    for (int64_t h = 0; h < heads; ++h) f(h, half * D + h * per_head, half * D + (h + 1) * per_head);
}

// The scans of aft_band_matmul over each (sample, column): prefix[i] = Σ_{t < i} wt_t·in_t and suffix[i] =
// Σ_{t >= i} wt_t·in_t, wt_t = 1 (forward) or coef[head of the column, t] (transposed).
template <class T>
void band_scans(T* prefix, T* suffix, const T* in, const T* coef, const AftBand& band, int64_t B, int64_t N,
                int64_t D) {
  const int64_t C = 2 * D;
#pragma omp parallel for schedule(static) if (B * N * C > kParallelWork)
  for (int64_t b = 0; b < B; ++b) {
    const T* x = in + b * N * C;
    T* p = prefix + b * (N + 1) * C;
    T* s = suffix + b * (N + 1) * C;
    for (int64_t c = 0; c < C; ++c) p[c] = T(0), s[N * C + c] = T(0);
    for (int64_t t = 0; t < N; ++t)
      for_head_columns(D, band.heads, [&](int64_t h, int64_t first, int64_t last) {
        const T wt = coef ? coef[h * N + t] : T(1);
        for (int64_t c = first; c < last; ++c) p[(t + 1) * C + c] = p[t * C + c] + wt * x[t * C + c];
      });
    for (int64_t t = N - 1; t >= 0; --t)
      for_head_columns(D, band.heads, [&](int64_t h, int64_t first, int64_t last) {
        const T wt = coef ? coef[h * N + t] : T(1);
        for (int64_t c = first; c < last; ++c) s[t * C + c] = s[(t + 1) * C + c] + wt * x[t * C + c];
      });
  }
}

int64_t clamp_index(int64_t i, int64_t n) { return i < 0 ? 0 : (i > n ? n : i); }

}  // namespace

template <class T>
void aft_bias_row_max(T* row_max, const T* w, const AftBand& band, int64_t N) {
#pragma omp parallel for collapse(2) schedule(static) if (band.heads * N * band.width > kParallelWork)
  for (int64_t h = 0; h < band.heads; ++h)
    for (int64_t t = 0; t < N; ++t) {
      const int64_t end = band.causal ? t + 1 : N;
      const int64_t first = std::max<int64_t>(t + band.lo, 0), last = std::min(t + band.lo + band.width, end);
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t tp = first; tp < last; ++tp) m = std::max(m, w[aft_bias_index(band.bias, h, t, tp - t - band.lo)]);
      if (std::max<int64_t>(last - first, 0) < end) m = std::max(m, T(0));  // a visible key outside the band
      row_max[h * N + t] = m;
    }
}

template <class T>
void aft_band_weights(T* aband, T* coef, const T* w, const T* row_max, const AftBand& band, int64_t N) {
  const int64_t W = band.width;
#pragma omp parallel for collapse(2) schedule(static) if (band.heads * N * W > kParallelWork)
  for (int64_t h = 0; h < band.heads; ++h)
    for (int64_t t = 0; t < N; ++t) {
      const T m = row_max[h * N + t];
      const int64_t end = band.causal ? t + 1 : N;
      coef[h * N + t] = ew_math::exp(-m);
      for (int64_t j = 0; j < W; ++j) {
        const int64_t tp = t + band.lo + j;
        aband[(h * N + t) * W + j] =
            (tp >= 0 && tp < end) ? ew_math::exp(w[aft_bias_index(band.bias, h, t, j)] - m) : T(0);
      }
    }
}

template <class T>
void aft_dense_weights(T* a, const T* w, const T* row_max, const AftBand& band, int64_t N) {
#pragma omp parallel for schedule(static) if (N * N > kParallelWork)
  for (int64_t t = 0; t < N; ++t) {
    const int64_t end = band.causal ? t + 1 : N;
    for (int64_t tp = 0; tp < N; ++tp)
      a[t * N + tp] = tp < end ? ew_math::exp(aft_bias_at(w, band, 0, t, tp) - row_max[t]) : T(0);
  }
}

template <class T>
void aft_key_weights(T* x, const T* k, const T* v, const int32_t* lengths, int64_t B, int64_t N, int64_t D) {
  std::vector<T> mk(size_t(B * D), -std::numeric_limits<T>::infinity());
#pragma omp parallel for schedule(static) if (B * N * D > kParallelWork)
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = aft_valid_length(lengths, b, N);
    T* m = mk.data() + b * D;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < D; ++c) m[c] = std::max(m[c], k[(b * N + t) * D + c]);
  }
#pragma omp parallel for collapse(2) schedule(static) if (B * N * D > kParallelWork)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t) {
      const bool valid = t < aft_valid_length(lengths, b, N);
      const T* kr = k + (b * N + t) * D;
      const T* vr = v + (b * N + t) * D;
      T* xr = x + (b * N + t) * 2 * D;
      for (int64_t c = 0; c < D; ++c) {
        const T e = valid ? ew_math::exp(kr[c] - mk[size_t(b * D + c)]) : T(0);
        xr[c] = e * vr[c];
        xr[D + c] = e;
      }
    }
}

template <class T>
void aft_dense_matmul(T* out, const T* a, const T* in, int64_t B, int64_t N, int64_t D, bool transposed) {
  const int64_t C = 2 * D;
  gemm_strided_batched<T>(transposed, false, N, C, N, T(1), a, N, 0, in, C, N * C, T(0), out, C, N * C, B);
}

int64_t aft_band_scan_elems(int64_t B, int64_t N, int64_t D) { return 2 * B * (N + 1) * 2 * D; }

template <class T>
void aft_band_matmul(T* out, T* scan, const T* in, const T* aband, const T* coef, const AftBand& band, int64_t B,
                     int64_t N, int64_t D, bool transposed) {
  const int64_t C = 2 * D, W = band.width, lo = band.lo;
  T* prefix = scan;
  T* suffix = scan + B * (N + 1) * C;
  band_scans(prefix, suffix, in, transposed ? coef : nullptr, band, B, N, D);
#pragma omp parallel for collapse(2) schedule(static) if (B * N * C * (W + 1) > kParallelWork)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t) {
      const T* p = prefix + b * (N + 1) * C;
      const T* s = suffix + b * (N + 1) * C;
      const T* x = in + b * N * C;
      T* o = out + (b * N + t) * C;
      if (!transposed) {
        // Keys outside row t's band: [0, t + lo) and (non-causal) [t + lo + W, N), all with weight coef[t]; then
        // the band's keys t' = t + lo + j with their own weights.
        const T* before = p + clamp_index(t + lo, N) * C;
        const T* after = s + clamp_index(t + lo + W, N) * C;
        for_head_columns(D, band.heads, [&](int64_t h, int64_t first, int64_t last) {
          const T k = coef[h * N + t];
          for (int64_t c = first; c < last; ++c) o[c] = k * (before[c] + (band.causal ? T(0) : after[c]));
        });
        for (int64_t j = 0; j < W; ++j) {
          const int64_t tp = t + lo + j;
          if (tp < 0 || tp >= N) continue;
          for_head_columns(D, band.heads, [&](int64_t h, int64_t first, int64_t last) {
            const T a = aband[(h * N + t) * W + j];
            for (int64_t c = first; c < last; ++c) o[c] += a * x[tp * C + c];
          });
        }
      } else {
        // Rows r for which key t is outside the band: r > t − lo, and (non-causal) r < t − lo − W + 1 (the scans
        // already carry their weights); then the rows r = t − lo − j whose band holds key t.
        const T* after = s + clamp_index(t - lo + 1, N) * C;
        const T* before = p + clamp_index(t - lo - W + 1, N) * C;
        for (int64_t c = 0; c < C; ++c) o[c] = after[c] + (band.causal ? T(0) : before[c]);
        for (int64_t j = 0; j < W; ++j) {
          const int64_t r = t - lo - j;
          if (r < 0 || r >= N) continue;
          for_head_columns(D, band.heads, [&](int64_t h, int64_t first, int64_t last) {
            const T a = aband[(h * N + r) * W + j];
            for (int64_t c = first; c < last; ++c) o[c] += a * x[r * C + c];
          });
        }
      }
    }
}

template <class T>
void aft_forward_finish(T* y, T* ybar, T* den, const T* q, const T* k, const T* v, const T* nd, const T* w,
                        const AftBand& band, const int32_t* lengths, int64_t B, int64_t N, int64_t D) {
#pragma omp parallel for collapse(2) schedule(static) if (B * N * D > kParallelWork)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t) {
      const int64_t n = aft_valid_length(lengths, b, N);
      const int64_t row = (b * N + t) * D;
      for (int64_t c = 0; c < D; ++c) {
        if (t >= n) {
          y[row + c] = ybar[row + c] = T(0), den[row + c] = T(1);
          continue;
        }
        const T dn = nd[2 * row + D + c];
        T yb;
        if (dn >= aft_den_floor<T>()) {
          yb = nd[2 * row + c] / dn;
          den[row + c] = dn;
        } else {
          const AftDirect<T> r = aft_direct(k + b * N * D + c, v + b * N * D + c, D, w, band,
                                            aft_head_of(c, D, band.heads), t, aft_key_end(band, t, n));
          yb = r.num / r.den;
          den[row + c] = T(0);
        }
        ybar[row + c] = yb;
        y[row + c] = sigmoid(q[row + c]) * yb;
      }
    }
}

template <class T>
void aft_backward_prep(T* g, T* dq, const T* dy, const T* q, const T* ybar, const T* den, const int32_t* lengths,
                       int64_t B, int64_t N, int64_t D) {
#pragma omp parallel for collapse(2) schedule(static) if (B * N * D > kParallelWork)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t) {
      const bool valid = t < aft_valid_length(lengths, b, N);
      const int64_t row = (b * N + t) * D;
      for (int64_t c = 0; c < D; ++c) {
        const T s = sigmoid(q[row + c]), gq = valid ? dy[row + c] * s : T(0), dn = den[row + c];
        dq[row + c] = valid ? dy[row + c] * ybar[row + c] * s * (T(1) - s) : T(0);
        g[2 * row + c] = dn != T(0) ? gq / dn : T(0);
        g[2 * row + D + c] = dn != T(0) ? -gq * ybar[row + c] / dn : T(0);
      }
    }
}

template <class T>
void aft_backward_keys(T* dk, T* dv, const T* h, const T* x, const T* v, int64_t B, int64_t N, int64_t D) {
#pragma omp parallel for schedule(static) if (B * N * D > kParallelWork)
  for (int64_t r = 0; r < B * N; ++r)
    for (int64_t c = 0; c < D; ++c) {
      const T e = x[2 * r * D + D + c], hn = h[2 * r * D + c], hd = h[2 * r * D + D + c];
      dv[r * D + c] = e * hn;
      dk[r * D + c] = e * (hd + v[r * D + c] * hn);
    }
}

template <class T>
void aft_bias_outer(T* da, const T* g, const T* x, int64_t B, int64_t N, int64_t D) {
  const int64_t C = 2 * D;
  // One GEMM per sample accumulating into dA (the sum over b is the GEMM's beta = 1).
  for (int64_t b = 0; b < B; ++b)
    gemm_strided_batched<T>(false, true, N, N, C, T(1), g + b * N * C, C, 0, x + b * N * C, C, 0, b == 0 ? T(0) : T(1),
                            da, N, 0, 1);
}

template <class T>
void aft_band_bias_grad(T* dw, const AftBiasLayout& dw_layout, const T* g, const T* x, const T* aband,
                        const AftBand& band, int64_t B, int64_t N, int64_t D) {
  const int64_t W = band.width, C = 2 * D, per_head = D / band.heads;
#pragma omp parallel for collapse(2) schedule(static) if (band.heads * N * W * B * C > kParallelWork)
  for (int64_t h = 0; h < band.heads; ++h)
    for (int64_t t = 0; t < N; ++t)
      for (int64_t j = 0; j < W; ++j) {
        const int64_t tp = t + band.lo + j;
        if (tp < 0 || tp >= N) continue;
        T acc = T(0);
        for (int64_t b = 0; b < B; ++b) {
          const T* gr = g + (b * N + t) * C;
          const T* xr = x + (b * N + tp) * C;
          for (int64_t c = h * per_head; c < (h + 1) * per_head; ++c) acc += gr[c] * xr[c] + gr[D + c] * xr[D + c];
        }
        dw[aft_bias_index(dw_layout, h, t, j)] = acc * aband[(h * N + t) * W + j];
      }
}

template <class T>
void aft_dense_bias_grad(T* dw, const AftBiasLayout& dw_layout, const T* da, const T* a, const AftBand& band,
                         int64_t N) {
#pragma omp parallel for schedule(static) if (N * band.width > kParallelWork)
  for (int64_t t = 0; t < N; ++t) {
    const int64_t end = band.causal ? t + 1 : N;
    for (int64_t j = 0; j < band.width; ++j) {
      const int64_t tp = t + band.lo + j;
      if (tp >= 0 && tp < end) dw[aft_bias_index(dw_layout, 0, t, j)] = da[t * N + tp] * a[t * N + tp];
    }
  }
}

template <class T>
void aft_fallback_backward(T* dk, T* dv, T* dw, const AftBiasLayout& dw_layout, const T* dy, const T* q, const T* k,
                           const T* v, const T* ybar, const T* den, const T* w, const AftBand& band,
                           const int32_t* lengths, int64_t B, int64_t N, int64_t D) {
  bool any = false;  // the common case: no fallback element, one parallel pass over den
#pragma omp parallel for reduction(|| : any) schedule(static) if (B * N * D > kParallelWork)
  for (int64_t i = 0; i < B * N * D; ++i) any = any || den[i] == T(0);
  if (!any) return;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = aft_valid_length(lengths, b, N);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < D; ++c) {
        const int64_t i = (b * N + t) * D + c;
        if (den[i] != T(0)) continue;
        const int64_t h = aft_head_of(c, D, band.heads), end = aft_key_end(band, t, n), col = b * N * D + c;
        const AftDirect<T> r = aft_direct(k + col, v + col, D, w, band, h, t, end);
        const T gq = dy[i] * sigmoid(q[i]);
        for (int64_t tp = 0; tp < end; ++tp) {
          const T gp = gq * ew_math::exp(k[col + tp * D] + aft_bias_at(w, band, h, t, tp) - r.max) / r.den;
          const T gs = gp * (v[col + tp * D] - ybar[i]);  // d/ds of Ȳ for key tp, times Gq
          dv[col + tp * D] += gp;
          dk[col + tp * D] += gs;
          const int64_t j = tp - t - band.lo;
          if (dw && j >= 0 && j < band.width) dw[aft_bias_index(dw_layout, h, t, j)] += gs;
        }
      }
  }
}

template <class T>
void aft_band_product(T* out, const T* u, const T* vp, int64_t N, int64_t R, int64_t lo, int64_t W) {
#pragma omp parallel for schedule(static) if (N * W * R > kParallelWork)
  for (int64_t t = 0; t < N; ++t)
    for (int64_t j = 0; j < W; ++j) {
      const int64_t tp = t + lo + j;
      T acc = T(0);
      if (tp >= 0 && tp < N)
        for (int64_t r = 0; r < R; ++r) acc += u[t * R + r] * vp[tp * R + r];
      out[t * W + j] = acc;
    }
}

template <class T>
void aft_band_product_backward(T* du, T* dvp, const T* g, const T* u, const T* vp, int64_t N, int64_t R, int64_t lo,
                               int64_t W) {
#pragma omp parallel for schedule(static) if (N * W * R > kParallelWork)
  for (int64_t t = 0; t < N; ++t) {
    T* dur = du + t * R;
    T* dvr = dvp + t * R;
    for (int64_t r = 0; r < R; ++r) dur[r] = dvr[r] = T(0);
    for (int64_t j = 0; j < W; ++j) {
      const int64_t tp = t + lo + j, row = t - lo - j;  // key of row t's band entry j; row whose entry j is key t
      if (tp >= 0 && tp < N)
        for (int64_t r = 0; r < R; ++r) dur[r] += g[t * W + j] * vp[tp * R + r];
      if (row >= 0 && row < N)
        for (int64_t r = 0; r < R; ++r) dvr[r] += g[row * W + j] * u[row * R + r];
    }
  }
}

template <class T>
void aft_simple_scan(T* y, T* ybar, T* run_max, T* run_den, const T* q, const T* k, const T* v, const int32_t* lengths,
                     int64_t B, int64_t N, int64_t D) {
#pragma omp parallel for schedule(static) if (B * N * D > kParallelWork)
  for (int64_t col = 0; col < B * D; ++col) {
    const int64_t b = col / D, o = b * N * D + col % D;
    aft_simple_scan_column(y + o, ybar + o, run_max + o, run_den + o, q + o, k + o, v + o, D,
                           aft_valid_length(lengths, b, N), N);
  }
}

template <class T>
void aft_simple_scan_backward(T* dq, T* dk, T* dv, const T* dy, const T* q, const T* k, const T* v, const T* ybar,
                              const T* run_max, const T* run_den, const int32_t* lengths, int64_t B, int64_t N,
                              int64_t D) {
#pragma omp parallel for schedule(static) if (B * N * D > kParallelWork)
  for (int64_t col = 0; col < B * D; ++col) {
    const int64_t b = col / D, o = b * N * D + col % D;
    aft_simple_scan_column_backward(dq + o, dk + o, dv + o, dy + o, q + o, k + o, v + o, ybar + o, run_max + o,
                                    run_den + o, D, aft_valid_length(lengths, b, N), N);
  }
}

#define MIXGRAD_AFT_INSTANTIATE(T)                                                                                     \
  template void aft_bias_row_max<T>(T*, const T*, const AftBand&, int64_t);                                            \
  template void aft_band_weights<T>(T*, T*, const T*, const T*, const AftBand&, int64_t);                              \
  template void aft_dense_weights<T>(T*, const T*, const T*, const AftBand&, int64_t);                                 \
  template void aft_key_weights<T>(T*, const T*, const T*, const int32_t*, int64_t, int64_t, int64_t);                 \
  template void aft_dense_matmul<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, bool);                          \
  template void aft_band_matmul<T>(T*, T*, const T*, const T*, const T*, const AftBand&, int64_t, int64_t, int64_t,    \
                                   bool);                                                                              \
  template void aft_forward_finish<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, const AftBand&,    \
                                      const int32_t*, int64_t, int64_t, int64_t);                                      \
  template void aft_backward_prep<T>(T*, T*, const T*, const T*, const T*, const T*, const int32_t*, int64_t, int64_t, \
                                     int64_t);                                                                         \
  template void aft_backward_keys<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t);                 \
  template void aft_bias_outer<T>(T*, const T*, const T*, int64_t, int64_t, int64_t);                                  \
  template void aft_band_bias_grad<T>(T*, const AftBiasLayout&, const T*, const T*, const T*, const AftBand&, int64_t, \
                                      int64_t, int64_t);                                                               \
  template void aft_dense_bias_grad<T>(T*, const AftBiasLayout&, const T*, const T*, const AftBand&, int64_t);         \
  template void aft_fallback_backward<T>(T*, T*, T*, const AftBiasLayout&, const T*, const T*, const T*, const T*,     \
                                         const T*, const T*, const T*, const AftBand&, const int32_t*, int64_t,        \
                                         int64_t, int64_t);                                                            \
  template void aft_band_product<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t);                       \
  template void aft_band_product_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,          \
                                             int64_t);                                                                 \
  template void aft_simple_scan<T>(T*, T*, T*, T*, const T*, const T*, const T*, const int32_t*, int64_t, int64_t,     \
                                   int64_t);                                                                           \
  template void aft_simple_scan_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, const T*,    \
                                            const T*, const int32_t*, int64_t, int64_t, int64_t);

MIXGRAD_AFT_INSTANTIATE(float)
MIXGRAD_AFT_INSTANTIATE(double)

}  // namespace mixgrad::kernels::cpu
