// AFT on the CPU (specs/mixers.md §4.3–4.5), float and double. Which path runs (engine/ops_aft.cpp chooses):
//   dense (GEMM) form — AFT-full, and AFT-local whose band is wider than a quarter of N: A = exp(w' − m^w) [N, N]
//     shared by the batch, E = exp(K − m^K), [num | den] = A·[E⊙V | E] as one strided-batched GEMM; backward
//     Aᵀ·[dnum | dden] and dA = Σ_b [dnum | dden]·[E⊙V | E]ᵀ as GEMMs. Causal: A is lower-triangular and the GEMMs
//     run by blocks of rows that skip its zero upper triangle.
//   band form — AFT-local with a narrow band, AFT-conv (per head) and AFT-simple (an empty band): every key outside
//     row t's band has weight exp(−m^w_t), so A·x = exp(−m^w_t)·(prefix + suffix sums of x) + an O(width) loop.
//   scan — causal AFT-simple (automatic path): a running-max prefix scan per (sample, channel) and a reverse scan
//     for the backward (spec §4.5), exact without a fallback; token by token over blocks of contiguous channels.
//   Element-wise passes (E, A, σ(Q), the division) are vectorised: float through kernels/cpu/vec_math.h's exp.
//   fallback — after the dense or band form, an element whose den fell below the smallest normal / ε (the maxima of K
//   and w'
//     far apart, spec §4.3) is recomputed with the exact per-(t, d) two-pass form and marked den = 0; its backward
//     is recomputed the same way (aft_fallback_backward) instead of going through the GEMMs.
#include "kernels/cpu/aft.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/aft_math.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/vec_math.h"

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 15;

template <class T>
T sigmoid(T x) {
  return stable_sigmoid(x);
}

// e^x and σ(x) for the vectorised inner loops: kernels/cpu/vec_math.h's branch-free exp for float (within 2 ulp of
// expf; 0 below −87, where every AFT weight is far below the den floor anyway), <cmath> for double.
template <class T>
inline T exp_v(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return vec::exp(x);
  } else {
    return std::exp(x);
  }
}

template <class T>
inline T sigmoid_v(T x) {
  const T e = exp_v(x >= T(0) ? -x : x);  // e^{−|x|} in (0, 1]; NaN stays NaN
  const T r = T(1) / (T(1) + e);
  return x >= T(0) ? r : e * r;
}

// Per-head weights as the channel loops read them: with one head a scalar per row (src [rows]); with more, a copy
// expanded to every channel ([rows, D], entry (r, c) = src[head of c, r] of src [H, rows]), built once per call, so
// that every inner loop runs over contiguous channels. The copy costs D/H times the per-head table: nothing for the
// paper's one channel per head, but with few heads over wide channels (aft_conv_heads = 0 takes the model's 4-8
// heads) the band table [N·W, D] is large — e.g. 92 MB at N 4096, W 11, D 512 — and lives outside the engine's
// allocator (not in its peak-memory figure). A per-head scalar over each head's channel range would avoid it.
template <class T>
class ChannelWeights {
 public:
  ChannelWeights(const T* src, int64_t heads, int64_t rows, int64_t D) : src_(src), D_(D), wide_(heads > 1) {
    if (!wide_) return;
    per_channel_.resize(size_t(rows * D));
    const int64_t per_head = D / heads;
#pragma omp parallel for schedule(static) if (rows * D > kParallelWork)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < D; ++c) per_channel_[size_t(r * D + c)] = src[c / per_head * rows + r];
  }
  const T* vec(int64_t r) const { return wide_ ? per_channel_.data() + r * D_ : nullptr; }
  T scalar(int64_t r) const { return wide_ ? T(0) : src_[r]; }

 private:
  const T* src_;
  int64_t D_;
  bool wide_;
  std::vector<T> per_channel_;
};

// o[c] += w_c·x[c] and o[D + c] += w_c·x[D + c] for c < D ([E⊙V | E] rows share the weight), w_c = wv[c], or ws for
// every channel when wv is null.
template <class T>
inline void axpy_rows(T* o, const T* x, const T* wv, T ws, int64_t D) {
  if (wv) {
#pragma omp simd
    for (int64_t c = 0; c < D; ++c) o[c] += wv[c] * x[c], o[D + c] += wv[c] * x[D + c];
  } else {
#pragma omp simd
    for (int64_t c = 0; c < 2 * D; ++c) o[c] += ws * x[c];
  }
}

// o = w_c·(a + b) the same way (b may be null).
template <class T>
inline void scale_rows(T* o, const T* a, const T* b, const T* wv, T ws, int64_t D) {
  if (b) {
#pragma omp simd
    for (int64_t c = 0; c < 2 * D; ++c) o[c] = a[c] + b[c];
  } else {
    std::copy(a, a + 2 * D, o);
  }
  if (wv) {
#pragma omp simd
    for (int64_t c = 0; c < D; ++c) o[c] *= wv[c], o[D + c] *= wv[c];
  } else if (ws != T(1)) {
#pragma omp simd
    for (int64_t c = 0; c < 2 * D; ++c) o[c] *= ws;
  }
}

// Σ a[0, n) in a fixed order: 8 lane sums (vectorised), then the lanes and the tail in order.
template <class T>
T sum_fixed(const T* a, int64_t n) {
  T lanes[8] = {};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int64_t l = 0; l < 8; ++l) lanes[l] += a[c + l];
  T s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  for (; c < n; ++c) s += a[c];
  return s;
}

// The scans of aft_band_matmul over each (sample, column): prefix[i] = Σ_{t < i} wt_t·in_t and suffix[i] =
// Σ_{t >= i} wt_t·in_t, wt_t = 1 (forward: coef null) or coef's weight of the column's head at t (transposed).
template <class T>
void band_scans(T* prefix, T* suffix, const T* in, const ChannelWeights<T>* coef, int64_t B, int64_t N, int64_t D) {
  const int64_t C = 2 * D;
#pragma omp parallel for schedule(static) if (B * N * C > kParallelWork)
  for (int64_t b = 0; b < B; ++b) {
    const T* x = in + b * N * C;
    T* p = prefix + b * (N + 1) * C;
    T* s = suffix + b * (N + 1) * C;
    std::fill(p, p + C, T(0)), std::fill(s + N * C, s + (N + 1) * C, T(0));
    for (int64_t t = 0; t < N; ++t) {
      std::copy(p + t * C, p + (t + 1) * C, p + (t + 1) * C);
      axpy_rows(p + (t + 1) * C, x + t * C, coef ? coef->vec(t) : nullptr, coef ? coef->scalar(t) : T(1), D);
    }
    for (int64_t t = N - 1; t >= 0; --t) {
      std::copy(s + (t + 1) * C, s + (t + 2) * C, s + t * C);
      axpy_rows(s + t * C, x + t * C, coef ? coef->vec(t) : nullptr, coef ? coef->scalar(t) : T(1), D);
    }
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
      coef[h * N + t] = exp_v(-m);
      for (int64_t j = 0; j < W; ++j) {
        const int64_t tp = t + band.lo + j;
        aband[(h * N + t) * W + j] = (tp >= 0 && tp < end) ? exp_v(w[aft_bias_index(band.bias, h, t, j)] - m) : T(0);
      }
    }
}

template <class T>
void aft_dense_weights(T* a, const T* w, const T* row_max, const AftBand& band, int64_t N) {
#pragma omp parallel for schedule(static) if (N * N > kParallelWork)
  for (int64_t t = 0; t < N; ++t) {
    // Keys [0, end) visible; among them [first, last) in the band (stored bias), the rest bias 0.
    const int64_t end = band.causal ? t + 1 : N;
    const int64_t first = std::clamp<int64_t>(t + band.lo, 0, end),
                  last = std::clamp(t + band.lo + band.width, first, end);
    const T m = row_max[t], outside = exp_v(-m);
    const T* wr = last > first ? w + aft_bias_index(band.bias, 0, t, first - t - band.lo) : nullptr;
    T* ar = a + t * N;
    for (int64_t tp = 0; tp < first; ++tp) ar[tp] = outside;
#pragma omp simd
    for (int64_t tp = first; tp < last; ++tp) ar[tp] = exp_v(wr[tp - first] - m);
    for (int64_t tp = last; tp < end; ++tp) ar[tp] = outside;
    for (int64_t tp = end; tp < N; ++tp) ar[tp] = T(0);
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
      const T* kr = k + (b * N + t) * D;
      const T* vr = v + (b * N + t) * D;
      const T* m = mk.data() + b * D;
      T* xr = x + (b * N + t) * 2 * D;
      if (t >= aft_valid_length(lengths, b, N)) {
        std::fill(xr, xr + 2 * D, T(0));
        continue;
      }
#pragma omp simd
      for (int64_t c = 0; c < D; ++c) {
        const T e = exp_v(kr[c] - m[c]);
        xr[c] = e * vr[c];
        xr[D + c] = e;
      }
    }
}

// Rows per block of the causal GEMMs: A is lower-triangular there, so each block of rows only multiplies the keys up
// to its last row (forward, dA) or from its first row (transposed): ~56 % of the dense FLOPs at N = 1024.
constexpr int64_t kCausalBlock = 128;

template <class T>
void aft_dense_matmul(T* out, const T* a, const T* in, int64_t B, int64_t N, int64_t D, bool transposed, bool causal) {
  const int64_t C = 2 * D;
  if (!causal) {
    gemm_strided_batched<T>(transposed, false, N, C, N, T(1), a, N, 0, in, C, N * C, T(0), out, C, N * C, B);
    return;
  }
  for (int64_t r0 = 0; r0 < N; r0 += kCausalBlock) {
    const int64_t r1 = std::min(N, r0 + kCausalBlock);
    if (!transposed)  // out[r0:r1] = A[r0:r1, 0:r1]·in[0:r1]
      gemm_strided_batched<T>(false, false, r1 - r0, C, r1, T(1), a + r0 * N, N, 0, in, C, N * C, T(0), out + r0 * C, C,
                              N * C, B);
    else  // out[r0:r1] = A[r0:N, r0:r1]ᵀ·in[r0:N]
      gemm_strided_batched<T>(true, false, r1 - r0, C, N - r0, T(1), a + r0 * N + r0, N, 0, in + r0 * C, C, N * C, T(0),
                              out + r0 * C, C, N * C, B);
  }
}

int64_t aft_band_scan_elems(int64_t B, int64_t N, int64_t D) { return 2 * B * (N + 1) * 2 * D; }

template <class T>
void aft_band_matmul(T* out, T* scan, const T* in, const T* aband, const T* coef, const AftBand& band, int64_t B,
                     int64_t N, int64_t D, bool transposed) {
  const int64_t C = 2 * D, W = band.width, lo = band.lo;
  T* prefix = scan;
  T* suffix = scan + B * (N + 1) * C;
  const ChannelWeights<T> cw(coef, band.heads, N, D), aw(aband, band.heads, N * W, D);
  band_scans(prefix, suffix, in, transposed ? &cw : nullptr, B, N, D);
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
        const T* after = band.causal ? nullptr : s + clamp_index(t + lo + W, N) * C;
        scale_rows(o, before, after, cw.vec(t), cw.scalar(t), D);
        for (int64_t j = 0; j < W; ++j) {
          const int64_t tp = t + lo + j;
          if (tp >= 0 && tp < N) axpy_rows(o, x + tp * C, aw.vec(t * W + j), aw.scalar(t * W + j), D);
        }
      } else {
        // Rows r for which key t is outside the band: r > t − lo, and (non-causal) r < t − lo − W + 1 (the scans
        // already carry their weights); then the rows r = t − lo − j whose band holds key t.
        const T* after = s + clamp_index(t - lo + 1, N) * C;
        const T* before = band.causal ? nullptr : p + clamp_index(t - lo - W + 1, N) * C;
        scale_rows(o, after, before, static_cast<const T*>(nullptr), T(1), D);
        for (int64_t j = 0; j < W; ++j) {
          const int64_t r = t - lo - j;
          if (r >= 0 && r < N) axpy_rows(o, x + r * C, aw.vec(r * W + j), aw.scalar(r * W + j), D);
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
      T* yr = y + row;
      T* ybr = ybar + row;
      T* dr = den + row;
      if (t >= n) {
        std::fill(yr, yr + D, T(0)), std::fill(ybr, ybr + D, T(0)), std::fill(dr, dr + D, T(1));
        continue;
      }
      const T* num = nd + 2 * row;
      const T* qr = q + row;
      // Every element by the GEMM/band result (one vectorised pass), then the rare ones whose den is below the
      // floor (or NaN) again by the exact streaming form.
#pragma omp simd
      for (int64_t c = 0; c < D; ++c) {
        const T yb = num[c] / num[D + c];
        dr[c] = num[D + c];
        ybr[c] = yb;
        yr[c] = sigmoid_v(qr[c]) * yb;
      }
      for (int64_t c = 0; c < D; ++c) {
        if (num[D + c] >= aft_den_floor<T>()) continue;
        const AftDirect<T> r = aft_direct(k + b * N * D + c, v + b * N * D + c, D, w, band,
                                          aft_head_of(c, D, band.heads), t, aft_key_end(band, t, n));
        ybr[c] = r.num / r.den;
        dr[c] = T(0);
        yr[c] = sigmoid(qr[c]) * ybr[c];
      }
    }
}

template <class T>
void aft_backward_prep(T* g, T* dq, const T* dy, const T* q, const T* ybar, const T* den, const int32_t* lengths,
                       int64_t B, int64_t N, int64_t D) {
#pragma omp parallel for collapse(2) schedule(static) if (B * N * D > kParallelWork)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t) {
      const int64_t row = (b * N + t) * D;
      T* gr = g + 2 * row;
      if (t >= aft_valid_length(lengths, b, N)) {
        std::fill(gr, gr + 2 * D, T(0)), std::fill(dq + row, dq + row + D, T(0));
        continue;
      }
      const T *dyr = dy + row, *qr = q + row, *ybr = ybar + row, *dr = den + row;
      T* dqr = dq + row;
#pragma omp simd
      for (int64_t c = 0; c < D; ++c) {
        const T s = sigmoid_v(qr[c]), gq = dyr[c] * s, dn = dr[c];
        dqr[c] = dyr[c] * ybr[c] * s * (T(1) - s);
        gr[c] = dn != T(0) ? gq / dn : T(0);  // 0: a fallback element (its gradient comes separately)
        gr[D + c] = dn != T(0) ? -gq * ybr[c] / dn : T(0);
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
void aft_bias_outer(T* da, const T* g, const T* x, int64_t B, int64_t N, int64_t D, bool causal) {
  const int64_t C = 2 * D;
  // One GEMM per sample (and causal row block: only dA[r0:r1, 0:r1], the rest is never read) accumulating into dA
  // (the sum over b is the GEMM's beta = 1).
  const int64_t block = causal ? kCausalBlock : N;
  for (int64_t r0 = 0; r0 < N; r0 += block) {
    const int64_t r1 = std::min(N, r0 + block), cols = causal ? r1 : N;
    for (int64_t b = 0; b < B; ++b)
      gemm_strided_batched<T>(false, true, r1 - r0, cols, C, T(1), g + (b * N + r0) * C, C, 0, x + b * N * C, C, 0,
                              b == 0 ? T(0) : T(1), da + r0 * N, N, 0, 1);
  }
}

template <class T>
void aft_band_bias_grad(T* dw, const AftBiasLayout& dw_layout, const T* g, const T* x, const T* aband,
                        const AftBand& band, int64_t B, int64_t N, int64_t D) {
  const int64_t W = band.width, C = 2 * D, per_head = D / band.heads, lo = band.lo;
  if (W == 0) return;
    // Per query row t: acc[j, c] = Σ_b (g[b, t, c]·x[b, t', c] + g[b, t, D + c]·x[b, t', D + c]) for the row's in-range
    // band keys t' = t + lo + j (vectorised over the channels), then each head's channels summed in a fixed order.
#pragma omp parallel if (N * W * B * C > kParallelWork)
  {
    std::vector<T> acc(size_t(W * D));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < N; ++t) {
      const int64_t j0 = std::max<int64_t>(0, -(t + lo)), j1 = std::min<int64_t>(W, N - t - lo);
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t b = 0; b < B; ++b) {
        const T* gr = g + (b * N + t) * C;
        for (int64_t j = j0; j < j1; ++j) {
          const T* xr = x + (b * N + t + lo + j) * C;
          T* a = acc.data() + j * D;
#pragma omp simd
          for (int64_t c = 0; c < D; ++c) a[c] += gr[c] * xr[c] + gr[D + c] * xr[D + c];
        }
      }
      for (int64_t h = 0; h < band.heads; ++h)
        for (int64_t j = j0; j < j1; ++j)
          dw[aft_bias_index(dw_layout, h, t, j)] =
              sum_fixed(acc.data() + j * D + h * per_head, per_head) * aband[(h * N + t) * W + j];
    }
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

// The scans run over blocks of kScanLanes channels of one sample, token by token, so the channel loop is contiguous
// and vectorises; the recurrences are kernels/aft_math.h's aft_simple_scan_column(_backward), per channel unchanged.
constexpr int64_t kScanLanes = 64;

template <class T>
void aft_simple_scan(T* y, T* ybar, T* run_max, T* run_den, const T* q, const T* k, const T* v, const int32_t* lengths,
                     int64_t B, int64_t N, int64_t D) {
  const int64_t blocks = (D + kScanLanes - 1) / kScanLanes;
#pragma omp parallel for schedule(static) if (B * N * D > kParallelWork)
  for (int64_t task = 0; task < B * blocks; ++task) {
    const int64_t b = task / blocks, c0 = task % blocks * kScanLanes, nc = std::min(kScanLanes, D - c0);
    const int64_t n = aft_valid_length(lengths, b, N);
    // Empty sums with the running max at −inf: the first key's e^{−|k − m|} is 0, so it moves the max to k_0 with
    // weight 1 — and a NaN key (|NaN − m| = NaN) makes its own and every later output NaN, as the formula does.
    T m[kScanLanes], dn[kScanLanes] = {}, nm[kScanLanes] = {};
    std::fill(m, m + kScanLanes, -std::numeric_limits<T>::infinity());
    for (int64_t t = 0; t < n; ++t) {
      const int64_t i = (b * N + t) * D + c0;
      const T *kt = k + i, *vt = v + i, *qt = q + i;
#pragma omp simd
      for (int64_t c = 0; c < nc; ++c) {
        // The running max moves to k_t (rescale the sums by e^{m − k_t}, add weight 1) or stays (add e^{k_t − m}):
        // one exponential, the same values as aft_simple_scan_column's exp(m − m_new) and exp(k_t − m_new).
        const T d = exp_v(-std::abs(kt[c] - m[c]));
        const bool up = kt[c] > m[c];
        dn[c] = up ? dn[c] * d + T(1) : dn[c] + d;
        nm[c] = up ? nm[c] * d + vt[c] : nm[c] + d * vt[c];
        m[c] = up ? kt[c] : m[c];
        const T yb = nm[c] / dn[c];
        ybar[i + c] = yb;
        y[i + c] = sigmoid_v(qt[c]) * yb;
        run_max[i + c] = m[c];
        run_den[i + c] = dn[c];
      }
    }
    for (int64_t t = n; t < N; ++t) {
      const int64_t i = (b * N + t) * D + c0;
      std::fill(y + i, y + i + nc, T(0)), std::fill(ybar + i, ybar + i + nc, T(0));
      std::fill(run_max + i, run_max + i + nc, T(0)), std::fill(run_den + i, run_den + i + nc, T(1));
    }
  }
}

template <class T>
void aft_simple_scan_backward(T* dq, T* dk, T* dv, const T* dy, const T* q, const T* k, const T* v, const T* ybar,
                              const T* run_max, const T* run_den, const int32_t* lengths, int64_t B, int64_t N,
                              int64_t D) {
  const int64_t blocks = (D + kScanLanes - 1) / kScanLanes;
#pragma omp parallel for schedule(static) if (B * N * D > kParallelWork)
  for (int64_t task = 0; task < B * blocks; ++task) {
    const int64_t b = task / blocks, c0 = task % blocks * kScanLanes, nc = std::min(kScanLanes, D - c0);
    const int64_t n = aft_valid_length(lengths, b, N);
    T r[kScanLanes] = {}, ry[kScanLanes] = {};
    for (int64_t t = n - 1; t >= 0; --t) {
      const int64_t i = (b * N + t) * D + c0;
      const bool last = t + 1 >= n;
#pragma omp simd
      for (int64_t c = 0; c < nc; ++c) {
        const T f = last ? T(1) : exp_v(run_max[i + c] - run_max[i + D + c]);
        const T s = sigmoid_v(q[i + c]), gq = dy[i + c] * s;
        r[c] = r[c] * f + gq / run_den[i + c];
        ry[c] = ry[c] * f + gq * ybar[i + c] / run_den[i + c];
        const T e = exp_v(k[i + c] - run_max[i + c]);
        dv[i + c] = e * r[c];
        dk[i + c] = e * (v[i + c] * r[c] - ry[c]);
        dq[i + c] = dy[i + c] * ybar[i + c] * s * (T(1) - s);
      }
    }
    for (int64_t t = n; t < N; ++t) {
      const int64_t i = (b * N + t) * D + c0;
      std::fill(dq + i, dq + i + nc, T(0)), std::fill(dk + i, dk + i + nc, T(0)), std::fill(dv + i, dv + i + nc, T(0));
    }
  }
}

#define MIXGRAD_AFT_INSTANTIATE(T)                                                                                     \
  template void aft_bias_row_max<T>(T*, const T*, const AftBand&, int64_t);                                            \
  template void aft_band_weights<T>(T*, T*, const T*, const T*, const AftBand&, int64_t);                              \
  template void aft_dense_weights<T>(T*, const T*, const T*, const AftBand&, int64_t);                                 \
  template void aft_key_weights<T>(T*, const T*, const T*, const int32_t*, int64_t, int64_t, int64_t);                 \
  template void aft_dense_matmul<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, bool, bool);                    \
  template void aft_band_matmul<T>(T*, T*, const T*, const T*, const T*, const AftBand&, int64_t, int64_t, int64_t,    \
                                   bool);                                                                              \
  template void aft_forward_finish<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, const AftBand&,    \
                                      const int32_t*, int64_t, int64_t, int64_t);                                      \
  template void aft_backward_prep<T>(T*, T*, const T*, const T*, const T*, const T*, const int32_t*, int64_t, int64_t, \
                                     int64_t);                                                                         \
  template void aft_backward_keys<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t);                 \
  template void aft_bias_outer<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, bool);                            \
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
