// CPU flash attention (see kernels/cpu/flash_attention.h). Per 64-key block the keys (and, in the backward, the
// values) are transposed into a zero-padded d × 64 tile; score tiles S = Q·Kᵀ (and dP = dO·Vᵀ) and the products
// P·V, dS·K, Pᵀ·dO, dSᵀ·Q run as register-tiled micro-kernels (6 rows × two 32-byte vectors, 12 accumulators)
// over up to 64 query rows at a time; the head dim is a compile-time constant for d ∈ {16, 32, 64, 128}, and float
// exponentials use vec::exp (kernels/cpu/vec_math.h), which vectorises. Every element accumulates in a fixed order
// whichever tile computes it, so results are bitwise reproducible for any thread count and either backward schedule.
#include "kernels/cpu/flash_attention.h"

#include "kernels/cpu/vec_math.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kBr = 64;  // query rows per block
constexpr int64_t kBc = 64;  // keys per block

int64_t kv_len_of(const FlashParams& p, int64_t b) {
  if (p.kv_len == nullptr) return p.Tk;
  return std::clamp<int64_t>(p.kv_len[b], 0, p.Tk);
}

// Keys [j0, j0 + limit) visible to query i within the block starting at j0 (limit in [0, cols]).
int64_t visible_in_block(const FlashParams& p, int64_t i, int64_t kvl, int64_t j0, int64_t cols) {
  return std::clamp<int64_t>(flash_key_limit(i, p.T, p.Tk, p.causal, kvl) - j0, 0, cols);
}

// out[c] = exp(scale · in[c] − shift) for c < n (shift finite). float: the polynomial; double: std::exp.
template <class T>
void exp_shifted(T* out, const T* in, T scale, T shift, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) out[c] = vec::exp(in[c] * scale - shift);
  } else {
    for (int64_t c = 0; c < n; ++c) out[c] = std::exp(in[c] * scale - shift);
  }
}

// Head dim: compile-time DC when nonzero, else the runtime value.
template <int DC>
struct HeadDim {
  int64_t runtime;
  constexpr int64_t operator()() const { return DC != 0 ? DC : runtime; }
};

// dst[x * kBc + c] = src row (j0 + c), element x, for c < cols; 0 for cols <= c < kBc.
template <class T, int DC>
void transpose_block(T* dst, const T* src, int64_t row_stride, int64_t j0, int64_t cols, HeadDim<DC> hd) {
  const int64_t d = hd();
  for (int64_t c = 0; c < cols; ++c) {
    const T* r = src + (j0 + c) * row_stride;
    for (int64_t x = 0; x < d; ++x) dst[x * kBc + c] = r[x];
  }
  if (cols < kBc)
    for (int64_t x = 0; x < d; ++x) std::fill(dst + x * kBc + cols, dst + (x + 1) * kBc, T(0));
}

using vec::Simd;

// Register tiles of the two products below: R rows × NV vectors, R·NV accumulators (12 of AVX2's 16 registers at
// R 6, NV 2). Every element still adds over its reduction index in order, whichever tile computes it.
constexpr int kTileRows = 6;

// Calls f(std::integral_constant<int, R>{}, r) for row blocks [r, r + R) covering [0, rows): blocks of kTileRows,
// then one tail block of 1 .. kTileRows − 1 rows, so that every block runs with its row count known at compile time.
template <class F>
inline void for_row_blocks(int64_t rows, F&& f) {
  static_assert(kTileRows == 6, "the tail cases below cover 1 .. kTileRows - 1 rows");
  int64_t r = 0;
  for (; r + kTileRows <= rows; r += kTileRows) f(std::integral_constant<int, kTileRows>{}, r);
  switch (rows - r) {
    case 5: return f(std::integral_constant<int, 5>{}, r);
    case 4: return f(std::integral_constant<int, 4>{}, r);
    case 3: return f(std::integral_constant<int, 3>{}, r);
    case 2: return f(std::integral_constant<int, 2>{}, r);
    case 1: return f(std::integral_constant<int, 1>{}, r);
    default: return;
  }
}

// The one register tile behind both products below, rows q < R and columns col .. col+NV·L-1:
// out[q * ldo + j] = (Accumulate ? out[q * ldo + j] : 0) + Σ_{k < K} a[q * ars + k * aks] · b[k * ldb + j], each
// element adding over k in order. K is a HeadDim so that the score tiles' reduction over the head dim keeps its
// compile-time length.
template <int R, int NV, bool Accumulate, class T, int KC>
inline void tile_block(T* __restrict out, int64_t ldo, const T* __restrict a, int64_t ars, int64_t aks, HeadDim<KC> K,
                       const T* __restrict b, int64_t ldb, int64_t col) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int64_t L = S::L;
  const int64_t kn = K();
  V acc[R][NV] = {};
  if constexpr (Accumulate) {
#pragma GCC unroll 8
    for (int q = 0; q < R; ++q)
#pragma GCC unroll 4
      for (int u = 0; u < NV; ++u) S::load(acc[q][u], out + q * ldo + col + u * L);
  }
  for (int64_t k = 0; k < kn; ++k) {
    V bv[NV];
#pragma GCC unroll 4
    for (int u = 0; u < NV; ++u) S::load(bv[u], b + k * ldb + col + u * L);
#pragma GCC unroll 8
    for (int q = 0; q < R; ++q) {
      const T sc = a[q * ars + k * aks];
#pragma GCC unroll 4
      for (int u = 0; u < NV; ++u) acc[q][u] += sc * bv[u];
    }
  }
#pragma GCC unroll 8
  for (int q = 0; q < R; ++q)
#pragma GCC unroll 4
    for (int u = 0; u < NV; ++u) S::store(out + q * ldo + col + u * L, acc[q][u]);
}

// Columns [0, ncols) (a multiple of L) of R rows: pairs of vectors, then a last single one.
template <int R, bool Accumulate, class T, int KC>
inline void tile_rows(T* out, int64_t ldo, const T* a, int64_t ars, int64_t aks, HeadDim<KC> K, const T* b,
                      int64_t ldb, int64_t ncols) {
  constexpr int64_t L = Simd<T>::L;
  int64_t col = 0;
  for (; col + 2 * L <= ncols; col += 2 * L) tile_block<R, 2, Accumulate>(out, ldo, a, ars, aks, K, b, ldb, col);
  if (col < ncols) tile_block<R, 1, Accumulate>(out, ldo, a, ars, aks, K, b, ldb, col);
}

// Score tile: C[r * kBc + c] = Σ_x A[r * lda + x] · bt[x * kBc + c] for r < rows and c < ncols (a multiple of
// Simd<T>::L, at most kBc; bt is zero past the block's keys).
template <class T, int DC>
void scores_tile(T* __restrict C, const T* __restrict A, int64_t lda, int64_t rows, const T* __restrict bt,
                 int64_t ncols, HeadDim<DC> hd) {
  for_row_blocks(rows, [&](auto R, int64_t r) {
    tile_rows<decltype(R)::value, false>(C + r * kBc, kBc, A + r * lda, lda, 1, hd, bt, kBc, ncols);
  });
}

// Out[r * d + e] += Σ_{k < K} coef[r * crs + k * cks] · M[k * ms + e] for r < rows, e < d: P·V, dS·K (coef row-major,
// crs = kBc, cks = 1) and Pᵀ·dO, dSᵀ·Q (coef transposed, crs = 1, cks = kBc). Every element adds over k in order
// onto its current value, whichever tile computes it.
template <class T, int DC>
void coef_times_rows(T* __restrict out, const T* __restrict coef, int64_t crs, int64_t cks, int64_t rows, int64_t K,
                     const T* __restrict M, int64_t ms, HeadDim<DC> hd) {
  constexpr int64_t L = Simd<T>::L;
  const int64_t d = hd();
  const int64_t dv = d / L * L;  // vectorised part of d; the rest (generic head dims only) is scalar
  if (dv > 0)
    for_row_blocks(rows, [&](auto R, int64_t r) {
      tile_rows<decltype(R)::value, true>(out + r * d, d, coef + r * crs, crs, cks, HeadDim<0>{K}, M, ms, dv);
    });
  if (dv < d)  // scalar tail of a generic head dim, same per-element order
    for (int64_t rr = 0; rr < rows; ++rr)
      for (int64_t e = dv; e < d; ++e) {
        T acc = out[rr * d + e];
        for (int64_t k = 0; k < K; ++k) acc += coef[rr * crs + k * cks] * M[k * ms + e];
        out[rr * d + e] = acc;
      }
}

// OpenMP chunk for `ntask` tasks: with neither causal masking nor key lengths every task costs the same, and one
// contiguous range per thread is fastest (consecutive heads share cache lines and the prefetchers follow the
// stream: 1.4× at the ViT's B 128 × 4 heads × N 50 against chunks of one); otherwise chunks of one balance the load.
int64_t task_chunk(const FlashParams& p, int64_t ntask) {
  if (p.causal || p.kv_len != nullptr) return 1;
  const int64_t threads = std::max<int64_t>(1, omp_get_max_threads());
  return std::max<int64_t>(1, (ntask + threads - 1) / threads);
}

using vec::dot_f64;
using vec::max_of;

// The sum of s[0, n): whole vectors lane-wise, then the lanes and the tail in a fixed order (a vectorised reduction,
// still the same bits on every call).
template <class T>
T sum_of(const T* s, int64_t n) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int64_t L = S::L;
  V acc = {};
  int64_t c = 0;
  for (; c + L <= n; c += L) {
    V x;
    S::load(x, s + c);
    acc += x;
  }
  T sum = 0;
  for (int64_t q = 0; q < L; ++q) sum += acc[q];
  for (; c < n; ++c) sum += s[c];
  return sum;
}

// Columns a score tile computes for a block of `cols` keys: cols rounded up to whole vectors.
template <class T>
int64_t tile_cols(int64_t cols) {
  constexpr int64_t L = Simd<T>::L;
  return (cols + L - 1) / L * L;
}

// z[c] = keep(i, j0 + c) / (1 - p) or 0 for c < n <= kBc (flash_dropout_keep's mask): the Philox blocks of keys
// j0 .. j0+n-1 (counter (j/4, i, h, b)) drawn kPhiloxLanes at a time.
// The keep test is flash_dropout_keep_word's, done in integers (philox_keep_threshold: the same decisions).
template <class T>
void dropout_factors(T* z, int64_t n, uint64_t key, int64_t b, int64_t h, int64_t i, int64_t j0, float p,
                     T inv_keep) {
  const uint32_t threshold = philox_keep_threshold(p);
  uint32_t lo[kPhiloxLanes], hi[kPhiloxLanes], bits[4][kPhiloxLanes], words[4 * kPhiloxLanes];
  for (int64_t g0 = j0 >> 2; g0 <= (j0 + n - 1) >> 2; g0 += kPhiloxLanes) {
    for (int l = 0; l < kPhiloxLanes; ++l) lo[l] = static_cast<uint32_t>(g0 + l), hi[l] = static_cast<uint32_t>(i);
    philox4x32_10_lanes(key, lo, hi, static_cast<uint32_t>(h), static_cast<uint32_t>(b), bits);
    for (int l = 0; l < kPhiloxLanes; ++l)
      for (int w = 0; w < 4; ++w) words[4 * l + w] = bits[w][l];  // key order: key 4·(g0 + l) + w
    // Keys g0·4 .. g0·4 + 63 cover z[c] for c = k − j0 in [0, n).
    const int64_t first = std::max<int64_t>(0, g0 * 4 - j0), last = std::min<int64_t>(n, g0 * 4 + 4 * kPhiloxLanes - j0);
    const int64_t shift = j0 - g0 * 4;  // z[c] is key j0 + c = word c + shift
#pragma omp simd
    for (int64_t c = first; c < last; ++c) z[c] = (words[c + shift] >> 8) >= threshold ? inv_keep : T(0);
  }
}

// Multiplies w[c] (c < n, keys j0 + c of query i) by the dropout keep-mask / (1 - p).
template <class T>
void apply_dropout(T* w, int64_t n, uint64_t key, int64_t b, int64_t h, int64_t i, int64_t j0, float p,
                   T inv_keep) {
  T z[kBc];
  dropout_factors(z, n, key, b, h, i, j0, p, inv_keep);
  for (int64_t c = 0; c < n; ++c) w[c] *= z[c];
}

template <class T, int DC>
void forward_impl(T* o, float* lse, const T* q, const T* k, const T* v, const FlashParams& p) {
  const HeadDim<DC> hd{p.d};
  const int64_t d = hd(), H = p.H, Tq = p.T;
  const int64_t nqb = (Tq + kBr - 1) / kBr, ntask = p.B * H * nqb;
  const T scale = static_cast<T>(p.scale);
  const bool dropout = p.dropout_p > 0.0f;
  const uint64_t dkey = dropout ? flash_dropout_key(p.seed, p.offset) : 0;
  const T inv_keep = T(1) / (T(1) - static_cast<T>(p.dropout_p));
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const int64_t chunk = task_chunk(p, ntask);

#pragma omp parallel
  {
    std::vector<T> kt(static_cast<size_t>(d * kBc)), sc(static_cast<size_t>(kBr * kBc)),
        acc(static_cast<size_t>(kBr * d)), m(kBr), l(kBr);
#pragma omp for schedule(dynamic, chunk)
    for (int64_t task = 0; task < ntask; ++task) {
      const int64_t qb = task % nqb, h = (task / nqb) % H, b = task / nqb / H;
      const int64_t i0 = qb * kBr, rows = std::min(kBr, Tq - i0), kvl = kv_len_of(p, b);
      const T* qh = q + b * p.q.batch + h * p.q.head;
      const T* kh = k + b * p.k.batch + h * p.k.head;
      const T* vh = v + b * p.v.batch + h * p.v.head;
      std::fill(acc.begin(), acc.end(), T(0));
      std::fill(m.begin(), m.end(), neg_inf);
      std::fill(l.begin(), l.end(), T(0));
      // Visible keys of the block's rows form prefixes, the last row's being the longest.
      const int64_t kend = flash_key_limit(i0 + rows - 1, Tq, p.Tk, p.causal, kvl);
      for (int64_t j0 = 0; j0 < kend; j0 += kBc) {
        const int64_t cols = std::min(kBc, kend - j0);
        transpose_block(kt.data(), kh, p.k.row, j0, cols, hd);
        scores_tile(sc.data(), qh + i0 * p.q.row, p.q.row, rows, kt.data(), tile_cols<T>(cols), hd);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = i0 + r, nv = visible_in_block(p, i, kvl, j0, cols);
          T* s = sc.data() + r * kBc;
          if (nv > 0) {
            T mx = max_of(s, nv);
            mx *= scale;  // scale > 0 keeps the maximum's position; scale <= 0 is handled below
            if (!(scale > T(0))) {
              mx = neg_inf;
              for (int64_t c = 0; c < nv; ++c) mx = std::max(mx, s[c] * scale);
            }
            const T m_new = std::max(m[r], mx);
            const T alpha = m[r] == neg_inf ? T(0) : std::exp(m[r] - m_new);
            exp_shifted(s, s, scale, m_new, nv);
            l[r] = alpha * l[r] + sum_of(s, nv);
            m[r] = m_new;
            if (dropout) apply_dropout(s, nv, dkey, b, h, i, j0, p.dropout_p, inv_keep);
            if (alpha != T(1)) {
              T* a = acc.data() + r * d;
              for (int64_t x = 0; x < d; ++x) a[x] *= alpha;
            }
          }
          std::fill(s + nv, s + cols, T(0));  // keys this row does not see add nothing
        }
        coef_times_rows(acc.data(), sc.data(), kBc, 1, rows, cols, vh + j0 * p.v.row, p.v.row, hd);
      }
      T* oh = o + b * p.o.batch + h * p.o.head;
      float* lh = lse + (b * H + h) * Tq;
      for (int64_t r = 0; r < rows; ++r) {
        T* out = oh + (i0 + r) * p.o.row;
        const T* a = acc.data() + r * d;
        // l = 0 only for a row that saw no key (O = 0, LSE = +inf). A NaN score (NaN in Q or K, or +inf scores)
        // makes l NaN, and NaN must come out as it does from softmax(QK^T)V: O and LSE NaN, never a masked row.
        if (l[r] != T(0)) {
          const T inv = T(1) / l[r];
          for (int64_t x = 0; x < d; ++x) out[x] = a[x] * inv;
          lh[i0 + r] = static_cast<float>(m[r] + std::log(l[r]));
        } else {
          std::fill(out, out + d, T(0));
          lh[i0 + r] = std::numeric_limits<float>::infinity();
        }
      }
    }
  }
}

// Per-thread scratch of the backward: the key block's K and V transposed (d × kBc each), P and dS of up to kBr
// query rows against it (kBr × kBc each), and its dK, dV accumulators (kBc × d each).
template <class T>
struct BackwardScratch {
  std::vector<T> kt, vt, pw, ds, dka, dva;
  explicit BackwardScratch(int64_t d)
      : kt(static_cast<size_t>(d * kBc)),
        vt(kt.size()),
        pw(static_cast<size_t>(kBr * kBc)),
        ds(pw.size()),
        dka(kt.size()),
        dva(kt.size()) {}
};

// Shared by both backward schedules so they produce the same bits.
template <class T, int DC>
struct BackwardContext {
  const FlashParams& p;
  HeadDim<DC> hd;
  const T *q, *k, *v, *dout;
  const float* lse;
  const double* D;
  T scale, inv_keep;
  bool dropout;
  uint64_t dkey;

  const T* q_row(int64_t b, int64_t h, int64_t i) const { return q + b * p.q.batch + h * p.q.head + i * p.q.row; }
  const T* k_row(int64_t b, int64_t h, int64_t j) const { return k + b * p.k.batch + h * p.k.head + j * p.k.row; }
  const T* g_row(int64_t b, int64_t h, int64_t i) const {
    return dout + b * p.dout.batch + h * p.dout.head + i * p.dout.row;
  }

  void transpose_kv(BackwardScratch<T>& w, int64_t b, int64_t h, int64_t j0, int64_t cols) const {
    transpose_block(w.kt.data(), k + b * p.k.batch + h * p.k.head, p.k.row, j0, cols, hd);
    transpose_block(w.vt.data(), v + b * p.v.batch + h * p.v.head, p.v.row, j0, cols, hd);
  }

  // Recomputes, for queries i0 .. i0+rows-1 against keys j0 .. j0+cols-1 (w.kt / w.vt hold that block), P (into
  // w.pw; P ⊙ M/(1-p) under dropout) and dS = P ⊙ (dP ⊙ M/(1-p) − D_i) (into w.ds), both rows × kBc and zero
  // wherever a key is not visible to a query (fully masked rows are all zero).
  void chunk_grads(BackwardScratch<T>& w, int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0,
                   int64_t cols) const {
    const int64_t kvl = kv_len_of(p, b), ncols = tile_cols<T>(cols);
    scores_tile(w.pw.data(), q_row(b, h, i0), p.q.row, rows, w.kt.data(), ncols, hd);
    scores_tile(w.ds.data(), g_row(b, h, i0), p.dout.row, rows, w.vt.data(), ncols, hd);  // dP before dropout
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = i0 + r, row = (b * p.H + h) * p.T + i;
      T* pd = w.pw.data() + r * kBc;
      T* ds = w.ds.data() + r * kBc;
      int64_t nv = visible_in_block(p, i, kvl, j0, cols);
      if (std::isinf(lse[row])) nv = 0;  // fully masked rows contribute nothing
      if (nv > 0) {
        const T lse_i = static_cast<T>(lse[row]), D_i = static_cast<T>(D[row]);
        exp_shifted(pd, pd, scale, lse_i, nv);
        if (!dropout) {
#pragma omp simd
          for (int64_t c = 0; c < nv; ++c) ds[c] = pd[c] * (ds[c] - D_i);
        } else {
          T z[kBc];
          dropout_factors(z, nv, dkey, b, h, i, j0, p.dropout_p, inv_keep);
          for (int64_t c = 0; c < nv; ++c) {
            ds[c] = pd[c] * (ds[c] * z[c] - D_i);
            pd[c] *= z[c];
          }
        }
      }
      std::fill(pd + nv, pd + cols, T(0));
      std::fill(ds + nv, ds + cols, T(0));
    }
  }

  // dK, dV of key block j0 (cols keys) of head (b, h), accumulated over the queries that see it (in chunks of kBr
  // rows, in order) and written scaled to dK / dV. When dqa is non-null it also accumulates dQ_i += Σ_c dS_ic k_c
  // into dqa (T × d rows of this head), in the same per-element order as dq_block.
  void key_block(T* dk, T* dv, BackwardScratch<T>& w, T* dqa, int64_t b, int64_t h, int64_t j0, int64_t cols) const {
    const int64_t d = hd(), Tq = p.T, Tk = p.Tk, kvl = kv_len_of(p, b);
    T* dka = w.dka.data();
    T* dva = w.dva.data();
    std::fill(dka, dka + cols * d, T(0));
    std::fill(dva, dva + cols * d, T(0));
    if (j0 < kvl) {
      transpose_kv(w, b, h, j0, cols);
      const int64_t q_first = p.causal ? std::max<int64_t>(0, j0 - (Tk - Tq)) : 0;
      for (int64_t i0 = q_first; i0 < Tq; i0 += kBr) {
        const int64_t rows = std::min(kBr, Tq - i0);
        chunk_grads(w, b, h, i0, rows, j0, cols);
        coef_times_rows(dva, w.pw.data(), 1, kBc, cols, rows, g_row(b, h, i0), p.dout.row, hd);  // Pᵀ dO
        coef_times_rows(dka, w.ds.data(), 1, kBc, cols, rows, q_row(b, h, i0), p.q.row, hd);    // dSᵀ Q
        if (dqa != nullptr)
          coef_times_rows(dqa + i0 * d, w.ds.data(), kBc, 1, rows, cols, k_row(b, h, j0), p.k.row, hd);  // dS K
      }
    }
    T* dkh = dk + b * p.dk.batch + h * p.dk.head;
    T* dvh = dv + b * p.dv.batch + h * p.dv.head;
    for (int64_t c = 0; c < cols; ++c) {
      T* kr = dkh + (j0 + c) * p.dk.row;
      T* vr = dvh + (j0 + c) * p.dv.row;
      for (int64_t x = 0; x < d; ++x) {
        kr[x] = scale * dka[c * d + x];
        vr[x] = dva[c * d + x];
      }
    }
  }

  // dQ rows i0 .. i0+rows-1 (rows <= kBr) of head (b, h) from all visible key blocks, accumulated into dqa.
  void dq_block(T* dqa, BackwardScratch<T>& w, int64_t b, int64_t h, int64_t i0, int64_t rows) const {
    const int64_t d = hd(), kvl = kv_len_of(p, b);
    std::fill(dqa, dqa + rows * d, T(0));
    const int64_t kend = flash_key_limit(i0 + rows - 1, p.T, p.Tk, p.causal, kvl);
    for (int64_t j0 = 0; j0 < kend; j0 += kBc) {
      const int64_t cols = std::min(kBc, kend - j0);
      transpose_kv(w, b, h, j0, cols);
      chunk_grads(w, b, h, i0, rows, j0, cols);
      coef_times_rows(dqa, w.ds.data(), kBc, 1, rows, cols, k_row(b, h, j0), p.k.row, hd);
    }
  }

  void write_dq(T* dq, const T* dqa, int64_t b, int64_t h, int64_t i0, int64_t rows) const {
    const int64_t d = hd();
    T* dqh = dq + b * p.dq.batch + h * p.dq.head;
    for (int64_t r = 0; r < rows; ++r) {
      T* out = dqh + (i0 + r) * p.dq.row;
      for (int64_t x = 0; x < d; ++x) out[x] = scale * dqa[r * d + x];
    }
  }
};

template <class T, int DC>
void backward_impl(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* o,
                   const float* lse, const FlashParams& p, void* workspace) {
  const HeadDim<DC> hd{p.d};
  const int64_t B = p.B, H = p.H, Tq = p.T, Tk = p.Tk, d = hd();
  double* D = static_cast<double*>(workspace);
  const bool dropout = p.dropout_p > 0.0f;
  const BackwardContext<T, DC> ctx{p,
                                   hd,
                                   q,
                                   k,
                                   v,
                                   dout,
                                   lse,
                                   D,
                                   static_cast<T>(p.scale),
                                   T(1) / (T(1) - static_cast<T>(p.dropout_p)),
                                   dropout,
                                   dropout ? flash_dropout_key(p.seed, p.offset) : 0};

  // Pass 1: D_i = Σ_x dO_ix · O_ix.
  const int64_t nrows = B * H * Tq;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < nrows; ++row) {
    const int64_t i = row % Tq, h = (row / Tq) % H, b = row / Tq / H;
    const T* g = dout + b * p.dout.batch + h * p.dout.head + i * p.dout.row;
    const T* y = o + b * p.o.batch + h * p.o.head + i * p.o.row;
    D[row] = dot_f64(g, y, d);
  }

  const int64_t nkb = (Tk + kBc - 1) / kBc, nqb = (Tq + kBr - 1) / kBr;
  if (B * H >= 2 * static_cast<int64_t>(omp_get_max_threads())) {
    // Enough heads to keep every thread busy: one task per (b, h) walks its key blocks once, accumulating dK and
    // dV per block and dQ for all the head's rows, so P and dS are computed once instead of twice.
    const int64_t chunk = task_chunk(p, B * H);
#pragma omp parallel
    {
      BackwardScratch<T> w(d);
      std::vector<T> dqa(static_cast<size_t>(std::max<int64_t>(Tq, 1) * d));
#pragma omp for schedule(dynamic, chunk)
      for (int64_t bh = 0; bh < B * H; ++bh) {
        const int64_t h = bh % H, b = bh / H;
        std::fill(dqa.begin(), dqa.end(), T(0));
        for (int64_t kb = 0; kb < nkb; ++kb) {
          const int64_t j0 = kb * kBc;
          ctx.key_block(dk, dv, w, dqa.data(), b, h, j0, std::min(kBc, Tk - j0));
        }
        if (Tq > 0) ctx.write_dq(dq, dqa.data(), b, h, 0, Tq);
      }
    }
    return;
  }

  // Few heads: pass 2 (dK, dV per (b, h, key block)) and pass 3 (dQ per (b, h, query block)) parallelise over
  // blocks too, at the cost of computing P and dS twice. Same per-element order as above: same bits.
  if (Tk > 0) {
    const int64_t chunk = task_chunk(p, B * H * nkb);
#pragma omp parallel
    {
      BackwardScratch<T> w(d);
#pragma omp for schedule(dynamic, chunk)
      for (int64_t task = 0; task < B * H * nkb; ++task) {
        const int64_t kb = task % nkb, h = (task / nkb) % H, b = task / nkb / H;
        const int64_t j0 = kb * kBc;
        ctx.key_block(dk, dv, w, nullptr, b, h, j0, std::min(kBc, Tk - j0));
      }
    }
  }
  const int64_t chunk = task_chunk(p, B * H * nqb);
#pragma omp parallel
  {
    BackwardScratch<T> w(d);
    std::vector<T> dqa(static_cast<size_t>(kBr * d));
#pragma omp for schedule(dynamic, chunk)
    for (int64_t task = 0; task < B * H * nqb; ++task) {
      const int64_t qb = task % nqb, h = (task / nqb) % H, b = task / nqb / H;
      const int64_t i0 = qb * kBr, rows = std::min(kBr, Tq - i0);
      ctx.dq_block(dqa.data(), w, b, h, i0, rows);
      ctx.write_dq(dq, dqa.data(), b, h, i0, rows);
    }
  }
}

}  // namespace

template <class T>
void flash_attention_forward(T* o, float* lse, const T* q, const T* k, const T* v, const FlashParams& p) {
  flash_check_params(p, "flash_attention_forward");
  if (p.B == 0 || p.H == 0 || p.T == 0) return;
  switch (p.d) {
    case 16: return forward_impl<T, 16>(o, lse, q, k, v, p);
    case 32: return forward_impl<T, 32>(o, lse, q, k, v, p);
    case 64: return forward_impl<T, 64>(o, lse, q, k, v, p);
    case 128: return forward_impl<T, 128>(o, lse, q, k, v, p);
    default: return forward_impl<T, 0>(o, lse, q, k, v, p);
  }
}

size_t flash_attention_backward_workspace_bytes(const FlashParams& p) {
  return static_cast<size_t>(std::max<int64_t>(p.B * p.H * p.T, 1)) * sizeof(double);
}

template <class T>
void flash_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* o,
                              const float* lse, const FlashParams& p, void* workspace) {
  flash_check_params(p, "flash_attention_backward");
  if (p.B == 0 || p.H == 0) return;
  switch (p.d) {
    case 16: return backward_impl<T, 16>(dq, dk, dv, dout, q, k, v, o, lse, p, workspace);
    case 32: return backward_impl<T, 32>(dq, dk, dv, dout, q, k, v, o, lse, p, workspace);
    case 64: return backward_impl<T, 64>(dq, dk, dv, dout, q, k, v, o, lse, p, workspace);
    case 128: return backward_impl<T, 128>(dq, dk, dv, dout, q, k, v, o, lse, p, workspace);
    default: return backward_impl<T, 0>(dq, dk, dv, dout, q, k, v, o, lse, p, workspace);
  }
}

template void flash_attention_forward<float>(float*, float*, const float*, const float*, const float*,
                                             const FlashParams&);
template void flash_attention_forward<double>(double*, float*, const double*, const double*, const double*,
                                              const FlashParams&);
template void flash_attention_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                              const float*, const float*, const float*, const FlashParams&, void*);
template void flash_attention_backward<double>(double*, double*, double*, const double*, const double*,
                                               const double*, const double*, const double*, const float*,
                                               const FlashParams&, void*);

}  // namespace mixgrad::kernels::cpu
