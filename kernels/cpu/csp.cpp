// CSP forward and backward on the CPU: OpenMP over (sample, block of channels); inside a block the loop runs over
// groups with the channels innermost, so output rows (forward) and dy rows (backward) are walked contiguously.
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

// One sample b (pointers already offset to it), channels [c0, c1). out is y (forward) or dv (backward).
template <class T, int K, bool kPairForm, bool kBackward>
void csp_block(T* out, const T* dy, const T* v, const int32_t* shifts, int64_t n, int64_t N, int64_t D, int64_t c0,
               int64_t c1) {
  int64_t shift[kChannelBlock];
  for (int64_t c = c0; c < c1; ++c) shift[c - c0] = static_cast<int64_t>(shifts[c]) % n;
  for (int64_t j0 = 0; j0 < n; j0 += K) {
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
