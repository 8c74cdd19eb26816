// Combiner attention on the CPU: one loop iteration per (b, h, row) — a span for the summaries, a query for the main
// attention, a key or span for the gradient gathers — OpenMP over them, every output row written by exactly one
// iteration. Softmax is online (running max and sum), as in the CUDA twin.
#include "kernels/cpu/combiner.h"

#include <cmath>
#include <limits>

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 14;

template <class T>
inline T dot(const T* a, const T* b, int64_t d) {
  T s = 0;
  for (int64_t c = 0; c < d; ++c) s += a[c] * b[c];
  return s;
}

template <class T>
inline void axpy(T* y, T a, const T* x, int64_t d) {
  for (int64_t c = 0; c < d; ++c) y[c] += a * x[c];
}

// Online softmax accumulation of one column (logit x, value row val) into (m, l, acc).
template <class T>
inline void online_add(T& m, T& l, T* acc, T x, const T* val, int64_t d) {
  const T m_new = x > m ? x : m;
  const T alpha = std::exp(m - m_new), p = std::exp(x - m_new);
  l = l * alpha + p;
  for (int64_t c = 0; c < d; ++c) acc[c] = acc[c] * alpha + p * val[c];
  m = m_new;
}

// Channel-wise max over the first n members of span s of x (rows of d): out and the token of each maximum (first on
// ties, since only a strictly greater value replaces it).
template <class T>
inline void max_pool(T* out, int32_t* arg, const T* x, const CombinerIndex& ix, int64_t s, int64_t n, int64_t d) {
  const int64_t start = ix.span_start[s], stride = ix.span_stride[s];
  for (int64_t c = 0; c < d; ++c) {
    out[c] = x[start * d + c];
    arg[c] = int32_t(start);
  }
  for (int64_t t = 1; t < n; ++t) {
    const int64_t tok = start + t * stride;
    for (int64_t c = 0; c < d; ++c)
      if (x[tok * d + c] > out[c]) {
        out[c] = x[tok * d + c];
        arg[c] = int32_t(tok);
      }
  }
}

// One span's summaries (see the header).
template <class T>
void summarise_span(T* sq, T* sk, T* sv, T& slse, int32_t* qarg, int32_t* karg, const T* q, const T* k, const T* v,
                    const CombinerIndex& ix, int64_t s, int64_t len, int64_t d, T scale) {
  const int64_t n = combiner_valid_members(ix, s, len);
  for (int64_t c = 0; c < d; ++c) sv[c] = 0;
  if (n == 0) {
    for (int64_t c = 0; c < d; ++c) sq[c] = sk[c] = 0, qarg[c] = karg[c] = -1;
    slse = std::numeric_limits<T>::infinity();
    return;
  }
  max_pool(sk, karg, k, ix, s, n, d);
  const int64_t qt = combiner_query_token(ix, s, len);
  if (qt >= 0) {
    for (int64_t c = 0; c < d; ++c) sq[c] = q[qt * d + c], qarg[c] = int32_t(qt);
  } else {
    max_pool(sq, qarg, q, ix, s, n, d);
  }
  T m = -std::numeric_limits<T>::infinity(), l = 0;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t tok = ix.span_start[s] + t * ix.span_stride[s];
    online_add(m, l, sv, scale * dot(sq, k + tok * d, d), v + tok * d, d);
  }
  for (int64_t c = 0; c < d; ++c) sv[c] /= l;
  slse = m + std::log(l);
}

// One query row of the main attention.
template <class T>
void attend_row(T* o, T& lse, const T* qi, const T* k, const T* v, const T* sk, const T* sv, const CombinerIndex& ix,
                int64_t i, int64_t len, int64_t d, T scale) {
  for (int64_t c = 0; c < d; ++c) o[c] = 0;
  lse = std::numeric_limits<T>::infinity();
  if (i >= len) return;
  T m = -std::numeric_limits<T>::infinity(), l = 0;
  for (int32_t e = ix.dir_off[i]; e < ix.dir_off[i + 1]; ++e) {
    const int64_t j = ix.dir_idx[e];
    if (j < len) online_add(m, l, o, scale * dot(qi, k + j * d, d), v + j * d, d);
  }
  for (int32_t e = ix.col_off[i]; e < ix.col_off[i + 1]; ++e) {
    const int64_t s = ix.col_idx[e];
    if (combiner_valid_members(ix, s, len) > 0) online_add(m, l, o, scale * dot(qi, sk + s * d, d), sv + s * d, d);
  }
  if (l > 0) {
    for (int64_t c = 0; c < d; ++c) o[c] /= l;
    lse = m + std::log(l);
  } else {
    for (int64_t c = 0; c < d; ++c) o[c] = 0;
  }
}

// dS of one (query, column) pair: p = exp(scale·q·key − lse), dp = dout·value, returns p·(dp − delta); p out.
template <class T>
inline T score_grad(T& p, const T* qi, const T* key, const T* value, const T* douti, T lse, T delta, int64_t d,
                    T scale) {
  p = std::exp(scale * dot(qi, key, d) - lse);
  return p * (dot(douti, value, d) - delta);
}

}  // namespace

template <class T>
void combiner_summary_forward(T* sq, T* sk, T* sv, T* slse, int32_t* qarg, int32_t* karg, const T* q, const T* k,
                              const T* v, const int32_t* lengths, const CombinerIndex& ix, int64_t B, int64_t H,
                              int64_t d, T scale) {
  const int64_t L = ix.L, S = ix.S;
#pragma omp parallel for collapse(2) schedule(static) if (B * H * S * d > kParallelWork)
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t len = combiner_length(lengths, bh / H, L), row = (bh * S + s) * d, tok = bh * L * d;
      summarise_span(sq + row, sk + row, sv + row, slse[bh * S + s], qarg + row, karg + row, q + tok, k + tok, v + tok,
                     ix, s, len, d, scale);
    }
}

template <class T>
void combiner_forward(T* o, T* lse, const T* q, const T* k, const T* v, const T* sk, const T* sv,
                      const int32_t* lengths, const CombinerIndex& ix, int64_t B, int64_t H, int64_t d, T scale) {
  const int64_t L = ix.L, S = ix.S;
#pragma omp parallel for collapse(2) schedule(static) if (B * H * L * d > kParallelWork)
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t i = 0; i < L; ++i) {
      const int64_t len = combiner_length(lengths, bh / H, L), tok = bh * L * d;
      attend_row(o + tok + i * d, lse[bh * L + i], q + tok + i * d, k + tok, v + tok, sk + bh * S * d, sv + bh * S * d,
                 ix, i, len, d, scale);
    }
}

template <class T>
void combiner_backward(T* dq, T* dk, T* dv, T* dsk, T* dsv, T* delta, const T* dout, const T* q, const T* k, const T* v,
                       const T* sk, const T* sv, const T* o, const T* lse, const int32_t* lengths,
                       const CombinerIndex& ix, int64_t B, int64_t H, int64_t d, T scale) {
  const int64_t L = ix.L, S = ix.S, BH = B * H;
  const bool par = BH * L * d > kParallelWork;
#pragma omp parallel if (par)
  {
#pragma omp for collapse(2) schedule(static)
    for (int64_t bh = 0; bh < BH; ++bh)
      for (int64_t i = 0; i < L; ++i) {
        const int64_t r = bh * L + i;
        delta[r] = i < combiner_length(lengths, bh / H, L) ? dot(dout + r * d, o + r * d, d) : T(0);
      }
      // dq: per query, over its columns.
#pragma omp for collapse(2) schedule(static)
    for (int64_t bh = 0; bh < BH; ++bh)
      for (int64_t i = 0; i < L; ++i) {
        const int64_t len = combiner_length(lengths, bh / H, L), r = bh * L + i, tok = bh * L * d;
        T* g = dq + r * d;
        for (int64_t c = 0; c < d; ++c) g[c] = 0;
        if (i >= len) continue;
        T p;
        for (int32_t e = ix.dir_off[i]; e < ix.dir_off[i + 1]; ++e) {
          const int64_t j = ix.dir_idx[e];
          if (j >= len) continue;
          const T ds =
              score_grad(p, q + r * d, k + tok + j * d, v + tok + j * d, dout + r * d, lse[r], delta[r], d, scale);
          axpy(g, scale * ds, k + tok + j * d, d);
        }
        for (int32_t e = ix.col_off[i]; e < ix.col_off[i + 1]; ++e) {
          const int64_t s = ix.col_idx[e], sr = (bh * S + s) * d;
          if (combiner_valid_members(ix, s, len) == 0) continue;
          const T ds = score_grad(p, q + r * d, sk + sr, sv + sr, dout + r * d, lse[r], delta[r], d, scale);
          axpy(g, scale * ds, sk + sr, d);
        }
      }
      // dk, dv of the direct part: per key, over the queries that read it.
#pragma omp for collapse(2) schedule(static)
    for (int64_t bh = 0; bh < BH; ++bh)
      for (int64_t j = 0; j < L; ++j) {
        const int64_t len = combiner_length(lengths, bh / H, L), rj = bh * L + j;
        T *gk = dk + rj * d, *gv = dv + rj * d;
        for (int64_t c = 0; c < d; ++c) gk[c] = gv[c] = 0;
        if (j >= len) continue;
        T p;
        for (int32_t e = ix.key_off[j]; e < ix.key_off[j + 1]; ++e) {
          const int64_t i = ix.key_q[e], r = bh * L + i;
          if (i >= len) continue;
          const T ds = score_grad(p, q + r * d, k + rj * d, v + rj * d, dout + r * d, lse[r], delta[r], d, scale);
          axpy(gk, scale * ds, q + r * d, d);
          axpy(gv, p, dout + r * d, d);
        }
      }
      // dsk, dsv: per span, over the queries that read it.
#pragma omp for collapse(2) schedule(static)
    for (int64_t bh = 0; bh < BH; ++bh)
      for (int64_t s = 0; s < S; ++s) {
        const int64_t len = combiner_length(lengths, bh / H, L), sr = (bh * S + s) * d;
        T *gk = dsk + sr, *gv = dsv + sr;
        for (int64_t c = 0; c < d; ++c) gk[c] = gv[c] = 0;
        if (combiner_valid_members(ix, s, len) == 0) continue;
        T p;
        for (int32_t e = ix.span_off[s]; e < ix.span_off[s + 1]; ++e) {
          const int64_t i = ix.span_q[e], r = bh * L + i;
          if (i >= len) continue;
          const T ds = score_grad(p, q + r * d, sk + sr, sv + sr, dout + r * d, lse[r], delta[r], d, scale);
          axpy(gk, scale * ds, q + r * d, d);
          axpy(gv, p, dout + r * d, d);
        }
      }
  }
}

template <class T>
void combiner_summary_backward(T* dq, T* dk, T* dv, T* dsq, T* sdelta, const T* dsk, const T* dsv, const T* k,
                               const T* v, const T* sq, const T* sv, const T* slse, const int32_t* qarg,
                               const int32_t* karg, const int32_t* lengths, const CombinerIndex& ix, int64_t B,
                               int64_t H, int64_t d, T scale) {
  const int64_t L = ix.L, S = ix.S, BH = B * H;
  const bool par = BH * (L + S) * d > kParallelWork;
#pragma omp parallel if (par)
  {
    // The summary query's gradient: per span, over its valid members.
#pragma omp for collapse(2) schedule(static)
    for (int64_t bh = 0; bh < BH; ++bh)
      for (int64_t s = 0; s < S; ++s) {
        const int64_t len = combiner_length(lengths, bh / H, L), sr = (bh * S + s) * d, tok = bh * L * d;
        const int64_t n = combiner_valid_members(ix, s, len);
        T* g = dsq + sr;
        for (int64_t c = 0; c < d; ++c) g[c] = 0;
        sdelta[bh * S + s] = n > 0 ? dot(dsv + sr, sv + sr, d) : T(0);
        T p;
        for (int64_t t = 0; t < n; ++t) {
          const int64_t j = ix.span_start[s] + t * ix.span_stride[s];
          const T ds = score_grad(p, sq + sr, k + tok + j * d, v + tok + j * d, dsv + sr, slse[bh * S + s],
                                  sdelta[bh * S + s], d, scale);
          axpy(g, scale * ds, k + tok + j * d, d);
        }
      }
      // Per member token: the summary attention's dk, dv, and the max-pool routes of dsk and dsq.
#pragma omp for collapse(2) schedule(static)
    for (int64_t bh = 0; bh < BH; ++bh)
      for (int64_t j = 0; j < L; ++j) {
        const int64_t len = combiner_length(lengths, bh / H, L), rj = bh * L + j;
        if (j >= len) continue;
        T *gq = dq + rj * d, *gk = dk + rj * d, *gv = dv + rj * d;
        T p;
        for (int32_t e = ix.mem_off[j]; e < ix.mem_off[j + 1]; ++e) {
          const int64_t s = ix.mem_span[e], sr = (bh * S + s) * d;
          // j < len is a member, so span s has a valid member.
          const T ds =
              score_grad(p, sq + sr, k + rj * d, v + rj * d, dsv + sr, slse[bh * S + s], sdelta[bh * S + s], d, scale);
          axpy(gk, scale * ds, sq + sr, d);
          axpy(gv, p, dsv + sr, d);
          for (int64_t c = 0; c < d; ++c) {
            if (karg[sr + c] == j) gk[c] += dsk[sr + c];
            if (qarg[sr + c] == j) gq[c] += dsq[sr + c];
          }
        }
      }
  }
}

#define MIXGRAD_COMBINER_INSTANTIATE(T)                                                                            \
  template void combiner_summary_forward<T>(T*, T*, T*, T*, int32_t*, int32_t*, const T*, const T*, const T*,      \
                                            const int32_t*, const CombinerIndex&, int64_t, int64_t, int64_t, T);   \
  template void combiner_forward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*, const int32_t*,      \
                                    const CombinerIndex&, int64_t, int64_t, int64_t, T);                           \
  template void combiner_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*, const T*,     \
                                     const T*, const T*, const T*, const int32_t*, const CombinerIndex&, int64_t,  \
                                     int64_t, int64_t, T);                                                         \
  template void combiner_summary_backward<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                             const T*, const T*, const int32_t*, const int32_t*, const int32_t*,   \
                                             const CombinerIndex&, int64_t, int64_t, int64_t, T);
MIXGRAD_COMBINER_INSTANTIATE(float)
MIXGRAD_COMBINER_INSTANTIATE(double)
#undef MIXGRAD_COMBINER_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
