// CSP forward and backward on the CPU: OpenMP over (sample, block of 64 channels); inside a block the loop runs over
// groups with the channels innermost, so output rows (forward) and dy rows (backward) are walked contiguously.
// Fast path (csp_forward / csp_backward): each full group of K tokens is gathered for the block's channels into a
// K × 64 tile and sorted by a compare-exchange network vectorised across channels, with the original slot as the
// tie-breaker so the network reproduces the stable order exactly. General path (the *_general entry points, and
// the partial last group of a padded sample): ranks by pairwise comparison per channel.
#include "kernels/cpu/csp.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

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

template <class T, bool kPairForm, bool kBackward>
void csp_dispatch(const char* op, T* out, const T* dy, const T* v, const int32_t* shifts, const int32_t* lengths,
                  int64_t B, int64_t N, int64_t D, int K) {
  if (B <= 0 || N <= 0 || D <= 0) return;
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
