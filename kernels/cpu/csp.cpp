// CSP forward and backward on the CPU. float with AVX2 (csp_forward / csp_backward): per sample and block of 8-lane
// channel groups, v rows are transposed 8 × 8 into channel-major scratch where the shift is a plain offset, shifted
// rows come back by unaligned window loads + transposes, ranks are computed per lane, and y rows (forward) or dU
// rows (backward, un-shifted the same way through scratch) are stored whole, so v, dy, y and dv are all accessed
// as contiguous rows. Otherwise (double, no AVX2, and the D mod 8 channel tail): OpenMP over (sample, block of 64
// channels); inside a block the loop runs over groups with the channels innermost; each full group of K tokens is
// gathered for the block's channels into a K × 64 tile and sorted by a compare-exchange network vectorised across
// channels, with the original slot as the tie-breaker so the network reproduces the stable order exactly. General
// path (the *_general entry points, and the partial last group of a padded sample): ranks by pairwise comparison
// per channel. All paths only copy values, so they agree bit for bit.
#include "kernels/cpu/csp.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 15;
constexpr int64_t kChannelBlock = 64;

// The total order of spec §5: NaN after every number, -0 == +0; equal values keep their order (see group_ranks).
template <class T>
inline bool csp_before(T a, T b) {
  return (!std::isnan(a) && std::isnan(b)) || a < b;
}

// rank[k] = output slot of u[k] among the first m values: the number of values before it under the order, with
// ties resolved by position (stable). One comparison per unordered pair.
template <class T>
inline void group_ranks(const T* u, int m, int* rank) {
  for (int k = 0; k < m; ++k) rank[k] = 0;
  for (int a = 0; a < m; ++a)
    for (int b = a + 1; b < m; ++b) {
      if (csp_before(u[b], u[a]))
        ++rank[a];
      else
        ++rank[b];
    }
}

// Compare-exchange of tile rows a and b (a before b in the network) for w channels: after it, row a holds the
// element that comes first under (csp order, original slot) and row b the other. The slot tie-break makes every
// key distinct, so any sorting network yields exactly the stable order of group_ranks.
template <class T>
inline void compare_exchange(T* __restrict a, T* __restrict b, int32_t* __restrict ia, int32_t* __restrict ib,
                             int64_t w) {
#pragma omp simd
  for (int64_t c = 0; c < w; ++c) {
    const T x = a[c], y = b[c];
    const int32_t p = ia[c], q = ib[c];
    const bool xn = x != x, yn = y != y;
    const bool y_first = (!yn && xn) || y < x, x_first = (!xn && yn) || x < y;
    const bool swap = y_first || (!x_first && q < p);
    a[c] = swap ? y : x;
    b[c] = swap ? x : y;
    ia[c] = swap ? q : p;
    ib[c] = swap ? p : q;
  }
}

// Sorting networks (pairs of rows compared in order): K = 2 one exchange, K = 4 the optimal five, K = 8 Batcher's
// odd-even merge sort (19 exchanges).
constexpr int kNet2[][2] = {{0, 1}};
constexpr int kNet4[][2] = {{0, 1}, {2, 3}, {0, 2}, {1, 3}, {1, 2}};
constexpr int kNet8[][2] = {{0, 1}, {2, 3}, {4, 5}, {6, 7}, {0, 2}, {1, 3}, {4, 6}, {5, 7}, {1, 2}, {5, 6},
                            {0, 4}, {1, 5}, {2, 6}, {3, 7}, {2, 4}, {3, 5}, {1, 2}, {3, 4}, {5, 6}};

template <class T, int K>
void sort_tile(T (&val)[K][kChannelBlock], int32_t (&idx)[K][kChannelBlock], int64_t w) {
  const auto run = [&](const auto& net) {
    for (const auto& e : net) compare_exchange(val[e[0]], val[e[1]], idx[e[0]], idx[e[1]], w);
  };
  if constexpr (K == 2)
    run(kNet2);
  else if constexpr (K == 4)
    run(kNet4);
  else
    run(kNet8);
}

// Full groups of one sample and channel block through the network; returns the first row not handled (n rounded
// down to a multiple of K). src[c] tracks the shifted-frame source row of channel c0 + c for the current group.
template <class T, int K, bool kBackward>
int64_t csp_block_network(T* out, const T* dy, const T* v, const int64_t* shift, int64_t n, int64_t D, int64_t c0,
                          int64_t w) {
  alignas(64) T val[K][kChannelBlock];
  alignas(64) int32_t idx[K][kChannelBlock];
  int64_t src[kChannelBlock];
  for (int64_t c = 0; c < w; ++c) src[c] = shift[c] == 0 ? 0 : n - shift[c];
  const int64_t full = n / K * K;
  for (int64_t j0 = 0; j0 < full; j0 += K) {
    for (int k = 0; k < K; ++k) {
      for (int64_t c = 0; c < w; ++c) {
        int64_t i = src[c] + k;
        i = i >= n ? i - n : i;
        val[k][c] = v[i * D + c0 + c];
        idx[k][c] = k;
      }
    }
    sort_tile<T, K>(val, idx, w);
    if constexpr (kBackward) {
      // Slot k of the group received output row r where idx[r] == k: dv[source of slot k] = dy[j0 + r].
      for (int k = 0; k < K; ++k) {
        T g[kChannelBlock];
#pragma omp simd
        for (int64_t c = 0; c < w; ++c) {
          T acc = T(0);
          for (int r = 0; r < K; ++r) acc = idx[r][c] == k ? dy[(j0 + r) * D + c0 + c] : acc;
          g[c] = acc;
        }
        for (int64_t c = 0; c < w; ++c) {
          int64_t i = src[c] + k;
          i = i >= n ? i - n : i;
          out[i * D + c0 + c] = g[c];
        }
      }
    } else {
      for (int r = 0; r < K; ++r) {
        T* o = out + (j0 + r) * D + c0;
#pragma omp simd
        for (int64_t c = 0; c < w; ++c) o[c] = val[r][c];
      }
    }
    for (int64_t c = 0; c < w; ++c) {
      const int64_t i = src[c] + K;
      src[c] = i >= n ? i - n : i;
    }
  }
  return full;
}

// One sample b (pointers already offset to it), channels [c0, c1). out is y (forward) or dv (backward).
// kPairForm: the network path for full groups (the default entry points); otherwise ranks for every group.
template <class T, int K, bool kPairForm, bool kBackward>
void csp_block(T* out, const T* dy, const T* v, const int32_t* shifts, int64_t n, int64_t N, int64_t D, int64_t c0,
               int64_t c1) {
  int64_t shift[kChannelBlock] = {};
  for (int64_t c = c0; c < c1; ++c) shift[c - c0] = static_cast<int64_t>(shifts[c]) % n;
  int64_t first = 0;
  if constexpr (kPairForm) first = csp_block_network<T, K, kBackward>(out, dy, v, shift, n, D, c0, c1 - c0);
  for (int64_t j0 = first; j0 < n; j0 += K) {
    const int m = static_cast<int>(std::min<int64_t>(K, n - j0));
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t s = shift[c - c0];
      int64_t src[K] = {};
      T u[K] = {};
      int rank[K];
      for (int k = 0; k < m; ++k) {
        int64_t i = j0 + k - s;
        if (i < 0) i += n;
        src[k] = i;
        u[k] = v[i * D + c];
      }
      if (kPairForm && m == 2) {
        // K = 2 closed form: swap iff the second value comes strictly first (equal values never swap).
        const bool f = csp_before(u[1], u[0]);
        if constexpr (kBackward) {
          out[src[0] * D + c] = dy[(j0 + (f ? 1 : 0)) * D + c];
          out[src[1] * D + c] = dy[(j0 + (f ? 0 : 1)) * D + c];
        } else {
          out[j0 * D + c] = f ? u[1] : u[0];
          out[(j0 + 1) * D + c] = f ? u[0] : u[1];
        }
        continue;
      }
      if (m == K)
        group_ranks(u, K, rank);  // constant bound: unrolled
      else
        group_ranks(u, m, rank);  // partial last group of a padded sample
      for (int k = 0; k < m; ++k) {
        if constexpr (kBackward)
          out[src[k] * D + c] = dy[(j0 + rank[k]) * D + c];
        else
          out[(j0 + rank[k]) * D + c] = u[k];
      }
    }
  }
  for (int64_t j = n; j < N; ++j)
    for (int64_t c = c0; c < c1; ++c) out[j * D + c] = T(0);
}

template <class T, int K, bool kPairForm, bool kBackward>
void csp_run(T* out, const T* dy, const T* v, const int32_t* shifts, const int32_t* lengths, int64_t B, int64_t N,
             int64_t D) {
  const int64_t blocks = (D + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for collapse(2) schedule(static) if (B * N * D > kParallelWork)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t n = lengths ? static_cast<int64_t>(lengths[b]) : N;
      const int64_t off = b * N * D, c0 = blk * kChannelBlock, c1 = std::min(D, c0 + kChannelBlock);
      csp_block<T, K, kPairForm, kBackward>(out + off, kBackward ? dy + off : nullptr, v + off, shifts, n, N, D, c0,
                                            c1);
    }
}

#if defined(__AVX2__)
// ---- AVX2 float path (csp_forward and csp_backward; csp_block8) -----------------------------------------------------
// Per (sample, block of 8 channels) the shift is taken out of the token axis by going through channel-major
// scratch: an 8 × 8 register transpose turns 8 token rows into 8 channel rows, and in a channel row the shifted
// frame is a contiguous, unaligned window. Every load and store of v, dy and dv is then a contiguous 8-channel
// row, and the ranks are computed on whole shifted-frame rows vectorised across the 8 channels. Only shuffles,
// blends and compares touch the values, so the result is bit-identical to the scalar paths.

constexpr int64_t kLanes = 8;

inline void transpose8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Lane mask of csp_before(a, b).
inline __m256 before8(__m256 a, __m256 b) {
  const __m256 nan_last = _mm256_and_ps(_mm256_cmp_ps(a, a, _CMP_ORD_Q), _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
  return _mm256_or_ps(nan_last, _mm256_cmp_ps(a, b, _CMP_LT_OQ));
}

// row[n + t] = row[t mod n] for t < 8.
inline void wrap_copies(float* row, int64_t n) {
  if (n >= kLanes)
    _mm256_storeu_ps(row + n, _mm256_loadu_ps(row));
  else
    for (int64_t t = 0; t < kLanes; ++t) row[n + t] = row[t % n];
}

// Ranks (as in group_ranks, one comparison per pair) of the group in rows [r0, r0 + K) of u, per lane.
template <int K>
inline void band_ranks(const __m256 (&u)[8], int r0, __m256i (&rank)[K]) {
  const __m256i one = _mm256_set1_epi32(1);
  for (int k = 0; k < K; ++k) rank[k] = _mm256_setzero_si256();
  for (int a = 0; a < K; ++a)
    for (int b = a + 1; b < K; ++b) {
      const __m256i m = _mm256_castps_si256(before8(u[r0 + b], u[r0 + a]));  // -1 where b comes first
      rank[a] = _mm256_sub_epi32(rank[a], m);
      rank[b] = _mm256_add_epi32(rank[b], _mm256_add_epi32(one, m));
    }
}

inline __m256 lanes_equal(__m256i a, int r) {
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, _mm256_set1_epi32(r)));
}

// u: 8 shifted-frame rows (8 / K whole groups). Backward: x holds the dy rows of the same slots and is replaced by
// dU, slot k of a group getting the dy row of the output slot it was sorted to (x[k] = dy[rank_k]). Forward: x is
// set to the sorted rows (x[rank_k] = u[k]).
template <int K, bool kBackward>
inline void band_permute(const __m256 (&u)[8], __m256 (&x)[8]) {
  for (int r0 = 0; r0 < 8; r0 += K) {
    if constexpr (K == 2) {
      // Swap iff the second comes strictly first; the swap is its own inverse, so both passes are the same blend.
      const __m256 f = before8(u[r0 + 1], u[r0]);
      const __m256 a = kBackward ? x[r0] : u[r0], b = kBackward ? x[r0 + 1] : u[r0 + 1];
      x[r0] = _mm256_blendv_ps(a, b, f);
      x[r0 + 1] = _mm256_blendv_ps(b, a, f);
    } else {
      __m256i rank[K];
      band_ranks<K>(u, r0, rank);
      __m256 g[K];
      for (int k = 0; k < K; ++k) {
        if constexpr (kBackward) {  // g[k] = x[rank_k]
          __m256 acc = x[r0];
          for (int r = 1; r < K; ++r) acc = _mm256_blendv_ps(acc, x[r0 + r], lanes_equal(rank[k], r));
          g[k] = acc;
        } else {  // g[r] = u[k] where rank_k == r
          __m256 acc = u[r0];
          for (int j = 1; j < K; ++j) acc = _mm256_blendv_ps(acc, u[r0 + j], lanes_equal(rank[j], k));
          g[k] = acc;
        }
      }
      for (int k = 0; k < K; ++k) x[r0 + k] = g[k];
    }
  }
}

// One sample (pointers offset to it) and channels [c0, c0 + w), w a multiple of 8; out is y (forward) or dv
// (backward). Every row loop runs over the whole channel range, so v, dy, y and dv are walked row after row
// (contiguous when w = D). scratch holds w · (n + 8) floats vt[q][i] = v[i, c0 + q], and for the backward as many
// again for gt[q][j] = dU[j, c0 + q] (shifted frame); each channel row is followed by 8 wrap-around copies
// (row[n + t] = row[t mod n]) so that a window starting anywhere in [0, n) is one unaligned load. s holds w shifts.
template <int K, bool kBackward>
void csp_block8(float* out, const float* dy, const float* v, const int32_t* shifts, int64_t n, int64_t N, int64_t D,
                int64_t c0, int64_t w, float* scratch, int64_t* s) {
  const int64_t L = n + kLanes, n8 = n / kLanes * kLanes;
  float* vt = scratch;
  float* gt = scratch + w * L;
  for (int64_t q = 0; q < w; ++q) s[q] = static_cast<int64_t>(shifts[c0 + q]) % n;
  __m256 r[8], x[8];

  // 1. v rows -> channel rows.
  for (int64_t i0 = 0; i0 < n8; i0 += kLanes)
    for (int64_t cb = 0; cb < w; cb += kLanes) {
      for (int t = 0; t < 8; ++t) r[t] = _mm256_loadu_ps(v + (i0 + t) * D + c0 + cb);
      transpose8(r);
      for (int q = 0; q < 8; ++q) _mm256_storeu_ps(vt + (cb + q) * L + i0, r[q]);
    }
  for (int64_t i = n8; i < n; ++i)
    for (int64_t q = 0; q < w; ++q) vt[q * L + i] = v[i * D + c0 + q];
  for (int64_t q = 0; q < w; ++q) wrap_copies(vt + q * L, n);

  // 2. Whole bands of 8 shifted-frame rows: U rows from channel windows at j0 - s, then y rows (forward) or dU rows
  // turned back into channel rows (backward).
  for (int64_t j0 = 0; j0 < n8; j0 += kLanes)
    for (int64_t cb = 0; cb < w; cb += kLanes) {
      for (int q = 0; q < 8; ++q) {
        const int64_t sq = s[cb + q], p = j0 >= sq ? j0 - sq : j0 - sq + n;
        r[q] = _mm256_loadu_ps(vt + (cb + q) * L + p);
      }
      transpose8(r);
      if constexpr (kBackward) {
        for (int t = 0; t < 8; ++t) x[t] = _mm256_loadu_ps(dy + (j0 + t) * D + c0 + cb);
        band_permute<K, true>(r, x);
        transpose8(x);
        for (int q = 0; q < 8; ++q) _mm256_storeu_ps(gt + (cb + q) * L + j0, x[q]);
      } else {
        band_permute<K, false>(r, x);
        for (int t = 0; t < 8; ++t) _mm256_storeu_ps(out + (j0 + t) * D + c0 + cb, x[t]);
      }
    }
  // Rows [n8, n): whole and partial groups (n8 is a multiple of K) by ranks per channel.
  for (int64_t q = 0; q < w; ++q) {
    const int64_t sq = s[q];
    for (int64_t j0 = n8; j0 < n; j0 += K) {
      const int m = static_cast<int>(std::min<int64_t>(K, n - j0));
      float u[K] = {};
      int rank[K];
      for (int k = 0; k < m; ++k) {
        const int64_t j = j0 + k;
        u[k] = vt[q * L + (j >= sq ? j - sq : j - sq + n)];
      }
      group_ranks(u, m, rank);
      for (int k = 0; k < m; ++k) {
        if constexpr (kBackward)
          gt[q * L + j0 + k] = dy[(j0 + rank[k]) * D + c0 + q];
        else
          out[(j0 + rank[k]) * D + c0 + q] = u[k];
      }
    }
    if constexpr (kBackward) wrap_copies(gt + q * L, n);
  }

  // 3. Backward: dv[i] = dU[(i + s) mod n], channel windows at i + s -> dv rows.
  if constexpr (kBackward) {
    for (int64_t i0 = 0; i0 < n8; i0 += kLanes)
      for (int64_t cb = 0; cb < w; cb += kLanes) {
        for (int q = 0; q < 8; ++q) {
          const int64_t sq = s[cb + q], p = i0 + sq < n ? i0 + sq : i0 + sq - n;
          r[q] = _mm256_loadu_ps(gt + (cb + q) * L + p);
        }
        transpose8(r);
        for (int t = 0; t < 8; ++t) _mm256_storeu_ps(out + (i0 + t) * D + c0 + cb, r[t]);
      }
    for (int64_t i = n8; i < n; ++i)
      for (int64_t q = 0; q < w; ++q) {
        const int64_t p = i + s[q] < n ? i + s[q] : i + s[q] - n;
        out[i * D + c0 + q] = gt[q * L + p];
      }
  }
  for (int64_t i = n; i < N; ++i)
    for (int64_t cb = 0; cb < w; cb += kLanes) _mm256_storeu_ps(out + i * D + c0 + cb, _mm256_setzero_ps());
}

// csp_forward / csp_backward for float: per sample, channel blocks as wide as keep the block's scratch within
// kScratchBytes (the whole sample at the ViT size) through csp_block8; the last D mod 8 channels through csp_block.
constexpr int64_t kScratchBytes = int64_t{256} << 10;

template <int K, bool kBackward>
void csp_run_avx2(float* out, const float* dy, const float* v, const int32_t* shifts, const int32_t* lengths,
                  int64_t B, int64_t N, int64_t D) {
  const int64_t lanes = D / kLanes * kLanes, planes = kBackward ? 2 : 1;
  const int64_t fit = kScratchBytes / (planes * (N + kLanes) * int64_t(sizeof(float))) / (2 * kLanes) * (2 * kLanes);
  const int64_t per = std::max(kLanes, std::min(lanes, std::max(2 * kLanes, fit)));
  const int64_t blocks = (lanes + per - 1) / per + (lanes < D ? 1 : 0);  // D < 8: the csp_block item only
#pragma omp parallel if (B * N * D > kParallelWork)
  {
    std::vector<float> scratch;
    std::vector<int64_t> s(static_cast<size_t>(per));
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t n = lengths ? static_cast<int64_t>(lengths[b]) : N;
        const int64_t off = b * N * D, c0 = blk * per;
        const float* dyb = kBackward ? dy + off : nullptr;
        if (c0 < lanes) {
          const int64_t w = std::min(per, lanes - c0);
          scratch.resize(static_cast<size_t>(planes * w * (n + kLanes)));
          csp_block8<K, kBackward>(out + off, dyb, v + off, shifts, n, N, D, c0, w, scratch.data(), s.data());
        } else {
          csp_block<float, K, true, kBackward>(out + off, dyb, v + off, shifts, n, N, D, lanes, D);
        }
      }
  }
}
#endif

template <class T, bool kPairForm, bool kBackward>
void csp_dispatch(const char* op, T* out, const T* dy, const T* v, const int32_t* shifts, const int32_t* lengths,
                  int64_t B, int64_t N, int64_t D, int K) {
  if (B <= 0 || N <= 0 || D <= 0) return;
#if defined(__AVX2__)
  if constexpr (kPairForm && std::is_same_v<T, float>) {
    switch (K) {
      case 2: return csp_run_avx2<2, kBackward>(out, dy, v, shifts, lengths, B, N, D);
      case 4: return csp_run_avx2<4, kBackward>(out, dy, v, shifts, lengths, B, N, D);
      case 8: return csp_run_avx2<8, kBackward>(out, dy, v, shifts, lengths, B, N, D);
      default: break;  // reported below
    }
  }
#endif
  switch (K) {
    case 2: return csp_run<T, 2, kPairForm, kBackward>(out, dy, v, shifts, lengths, B, N, D);
    case 4: return csp_run<T, 4, kPairForm, kBackward>(out, dy, v, shifts, lengths, B, N, D);
    case 8: return csp_run<T, 8, kPairForm, kBackward>(out, dy, v, shifts, lengths, B, N, D);
    default:
      throw std::invalid_argument(std::string(op) + ": K = " + std::to_string(K) + " is not supported (expected 2, 4 or 8)");
  }
}

}  // namespace

template <class T>
void csp_forward(T* y, const T* v, const int32_t* shifts, const int32_t* lengths, int64_t B, int64_t N, int64_t D,
                 int K) {
  csp_dispatch<T, true, false>("csp_forward", y, nullptr, v, shifts, lengths, B, N, D, K);
}

template <class T>
void csp_backward(T* dv, const T* dy, const T* v, const int32_t* shifts, const int32_t* lengths, int64_t B,
                  int64_t N, int64_t D, int K) {
  csp_dispatch<T, true, true>("csp_backward", dv, dy, v, shifts, lengths, B, N, D, K);
}

template <class T>
void csp_forward_general(T* y, const T* v, const int32_t* shifts, const int32_t* lengths, int64_t B, int64_t N,
                         int64_t D, int K) {
  csp_dispatch<T, false, false>("csp_forward_general", y, nullptr, v, shifts, lengths, B, N, D, K);
}

template <class T>
void csp_backward_general(T* dv, const T* dy, const T* v, const int32_t* shifts, const int32_t* lengths, int64_t B,
                          int64_t N, int64_t D, int K) {
  csp_dispatch<T, false, true>("csp_backward_general", dv, dy, v, shifts, lengths, B, N, D, K);
}

#define MIXGRAD_CSP_INSTANTIATE(T)                                                                                  \
  template void csp_forward<T>(T*, const T*, const int32_t*, const int32_t*, int64_t, int64_t, int64_t, int);       \
  template void csp_backward<T>(T*, const T*, const T*, const int32_t*, const int32_t*, int64_t, int64_t, int64_t,  \
                                int);                                                                               \
  template void csp_forward_general<T>(T*, const T*, const int32_t*, const int32_t*, int64_t, int64_t, int64_t,     \
                                       int);                                                                        \
  template void csp_backward_general<T>(T*, const T*, const T*, const int32_t*, const int32_t*, int64_t, int64_t,   \
                                        int64_t, int);
MIXGRAD_CSP_INSTANTIATE(float)
MIXGRAD_CSP_INSTANTIATE(double)
#undef MIXGRAD_CSP_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
