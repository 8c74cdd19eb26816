// CPU flash attention (see kernels/cpu/flash_attention.h). Every block product is written as an axpy over a
// contiguous row (keys transposed into a d × 64 tile for the score products), so the inner loops vectorise and
// the summation order is fixed: results are bitwise reproducible for any thread count.
#include "kernels/cpu/flash_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
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

// dst[x * kBc + c] = src row (j0 + c), element x, for c < cols.
template <class T>
void transpose_block(T* dst, const T* src, int64_t row_stride, int64_t j0, int64_t cols, int64_t d) {
  for (int64_t c = 0; c < cols; ++c) {
    const T* r = src + (j0 + c) * row_stride;
    for (int64_t x = 0; x < d; ++x) dst[x * kBc + c] = r[x];
  }
}

// out[c] = Σ_x a[x] · bt[x * kBc + c] for c < n (axpy form: vectorises over c, fixed order over x).
template <class T>
void row_times_block(T* out, const T* a, const T* bt, int64_t n, int64_t d) {
  std::fill(out, out + n, T(0));
  for (int64_t x = 0; x < d; ++x) {
    const T ax = a[x];
    const T* b = bt + x * kBc;
    for (int64_t c = 0; c < n; ++c) out[c] += ax * b[c];
  }
}

template <class T>
void axpy(T* y, T a, const T* x, int64_t n) {
  for (int64_t e = 0; e < n; ++e) y[e] += a * x[e];
}

// Multiplies w[c] (c < n, keys j0 + c of query i) by the dropout keep-mask / (1 - p).
template <class T>
void apply_dropout(T* w, int64_t n, uint64_t key, int64_t b, int64_t h, int64_t i, int64_t j0, float p,
                   T inv_keep) {
  Philox4 bits{};
  for (int64_t c = 0; c < n; ++c) {
    const int64_t j = j0 + c;
    if (c == 0 || (j & 3) == 0) bits = flash_dropout_bits4(key, b, h, i, j >> 2);
    w[c] = flash_dropout_keep_word(flash_philox_word(bits, static_cast<int>(j & 3)), p) ? w[c] * inv_keep : T(0);
  }
}

}  // namespace

template <class T>
void flash_attention_forward(T* o, float* lse, const T* q, const T* k, const T* v, const FlashParams& p) {
  flash_check_params(p, "flash_attention_forward");
  const int64_t H = p.H, Tq = p.T, d = p.d;
  if (p.B == 0 || H == 0 || Tq == 0) return;
  const int64_t nqb = (Tq + kBr - 1) / kBr, ntask = p.B * H * nqb;
  const T scale = static_cast<T>(p.scale);
  const bool dropout = p.dropout_p > 0.0f;
  const uint64_t dkey = dropout ? flash_dropout_key(p.seed, p.offset) : 0;
  const T inv_keep = T(1) / (T(1) - static_cast<T>(p.dropout_p));
  const T neg_inf = -std::numeric_limits<T>::infinity();

#pragma omp parallel
  {
    std::vector<T> kt(static_cast<size_t>(d * kBc)), srow(kBc), acc(static_cast<size_t>(kBr * d)), m(kBr), l(kBr);
#pragma omp for schedule(dynamic)
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
        transpose_block(kt.data(), kh, p.k.row, j0, cols, d);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = i0 + r, nv = visible_in_block(p, i, kvl, j0, cols);
          if (nv == 0) continue;
          T* s = srow.data();
          row_times_block(s, qh + i * p.q.row, kt.data(), nv, d);
          T mx = neg_inf;
          for (int64_t c = 0; c < nv; ++c) mx = std::max(mx, s[c] *= scale);
          const T m_new = std::max(m[r], mx);
          const T m_use = m_new == neg_inf ? T(0) : m_new;  // a row of -inf scores must not give -inf - -inf
          const T alpha = std::exp(m[r] - m_use);
          T sum = 0;
          for (int64_t c = 0; c < nv; ++c) sum += s[c] = std::exp(s[c] - m_use);
          l[r] = alpha * l[r] + sum;
          m[r] = m_new;
          if (dropout) apply_dropout(s, nv, dkey, b, h, i, j0, p.dropout_p, inv_keep);
          T* a = acc.data() + r * d;
          if (alpha != T(1))
            for (int64_t x = 0; x < d; ++x) a[x] *= alpha;
          for (int64_t c = 0; c < nv; ++c) axpy(a, s[c], vh + (j0 + c) * p.v.row, d);
        }
      }
      T* oh = o + b * p.o.batch + h * p.o.head;
      float* lh = lse + (b * H + h) * Tq;
      for (int64_t r = 0; r < rows; ++r) {
        T* out = oh + (i0 + r) * p.o.row;
        const T* a = acc.data() + r * d;
        if (l[r] > T(0)) {
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

size_t flash_attention_backward_workspace_bytes(const FlashParams& p) {
  return static_cast<size_t>(std::max<int64_t>(p.B * p.H * p.T, 1)) * sizeof(double);
}

template <class T>
void flash_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* o,
                              const float* lse, const FlashParams& p, void* workspace) {
  flash_check_params(p, "flash_attention_backward");
  const int64_t B = p.B, H = p.H, Tq = p.T, Tk = p.Tk, d = p.d;
  if (B == 0 || H == 0) return;
  const T scale = static_cast<T>(p.scale);
  const bool dropout = p.dropout_p > 0.0f;
  const uint64_t dkey = dropout ? flash_dropout_key(p.seed, p.offset) : 0;
  const T inv_keep = T(1) / (T(1) - static_cast<T>(p.dropout_p));
  double* D = static_cast<double*>(workspace);

  // Pass 1: D_i = Σ_x dO_ix · O_ix.
  const int64_t nrows = B * H * Tq;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < nrows; ++row) {
    const int64_t i = row % Tq, h = (row / Tq) % H, b = row / Tq / H;
    const T* g = dout + b * p.dout.batch + h * p.dout.head + i * p.dout.row;
    const T* y = o + b * p.o.batch + h * p.o.head + i * p.o.row;
    double s = 0;
    for (int64_t x = 0; x < d; ++x) s += static_cast<double>(g[x]) * static_cast<double>(y[x]);
    D[row] = s;
  }

  // Recomputes, for query i against keys j0 .. j0+nv-1, P (into pw, dropout applied when pd != nullptr: pd gets
  // P ⊙ M/(1-p)) and dS = P ⊙ (dP ⊙ M/(1-p) − D_i) (into ds). kt / vt: the key block's K and V transposed.
  const auto row_grads = [&](T* pd, T* ds, const T* kt, const T* vt, int64_t b, int64_t h, int64_t i, int64_t j0,
                             int64_t nv, T lse_i, T D_i) {
    const T* qi = q + b * p.q.batch + h * p.q.head + i * p.q.row;
    const T* gi = dout + b * p.dout.batch + h * p.dout.head + i * p.dout.row;
    row_times_block(pd, qi, kt, nv, d);
    for (int64_t c = 0; c < nv; ++c) pd[c] = std::exp(pd[c] * scale - lse_i);
    row_times_block(ds, gi, vt, nv, d);  // dP (before dropout)
    if (!dropout) {
      for (int64_t c = 0; c < nv; ++c) ds[c] = pd[c] * (ds[c] - D_i);
      return;
    }
    Philox4 bits{};
    for (int64_t c = 0; c < nv; ++c) {
      const int64_t j = j0 + c;
      if (c == 0 || (j & 3) == 0) bits = flash_dropout_bits4(dkey, b, h, i, j >> 2);
      const T z = flash_dropout_keep_word(flash_philox_word(bits, static_cast<int>(j & 3)), p.dropout_p) ? inv_keep
                                                                                                          : T(0);
      ds[c] = pd[c] * (ds[c] * z - D_i);
      pd[c] *= z;
    }
  };

  // Pass 2: dK, dV per (b, h, key block), looping over the query blocks that can see the keys.
  const int64_t nkb = (Tk + kBc - 1) / kBc;
  if (Tk > 0) {
#pragma omp parallel
    {
      std::vector<T> kt(static_cast<size_t>(d * kBc)), vt(kt.size()), dka(kt.size()), dva(kt.size()), pw(kBc),
          ds(kBc);
#pragma omp for schedule(dynamic)
      for (int64_t task = 0; task < B * H * nkb; ++task) {
        const int64_t kb = task % nkb, h = (task / nkb) % H, b = task / nkb / H;
        const int64_t j0 = kb * kBc, cols = std::min(kBc, Tk - j0), kvl = kv_len_of(p, b);
        std::fill(dka.begin(), dka.end(), T(0));
        std::fill(dva.begin(), dva.end(), T(0));
        if (j0 < kvl) {
          transpose_block(kt.data(), k + b * p.k.batch + h * p.k.head, p.k.row, j0, cols, d);
          transpose_block(vt.data(), v + b * p.v.batch + h * p.v.head, p.v.row, j0, cols, d);
          const int64_t q_first = p.causal ? std::max<int64_t>(0, j0 - (Tk - Tq)) : 0;
          const float* lh = lse + (b * H + h) * Tq;
          const double* Dh = D + (b * H + h) * Tq;
          for (int64_t i = q_first; i < Tq; ++i) {
            const int64_t nv = visible_in_block(p, i, kvl, j0, cols);
            if (nv == 0 || std::isinf(lh[i])) continue;  // fully masked rows contribute nothing
            row_grads(pw.data(), ds.data(), kt.data(), vt.data(), b, h, i, j0, nv, static_cast<T>(lh[i]),
                      static_cast<T>(Dh[i]));
            const T* qi = q + b * p.q.batch + h * p.q.head + i * p.q.row;
            const T* gi = dout + b * p.dout.batch + h * p.dout.head + i * p.dout.row;
            for (int64_t c = 0; c < nv; ++c) {
              axpy(dva.data() + c * d, pw[c], gi, d);
              axpy(dka.data() + c * d, ds[c], qi, d);
            }
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
    }
  }

  // Pass 3: dQ per (b, h, query block), keys in blocks; accumulated in fixed order (no atomics).
  const int64_t nqb = (Tq + kBr - 1) / kBr;
#pragma omp parallel
  {
    std::vector<T> kt(static_cast<size_t>(d * kBc)), vt(kt.size()), dqa(static_cast<size_t>(kBr * d)), pw(kBc),
        ds(kBc);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < B * H * nqb; ++task) {
      const int64_t qb = task % nqb, h = (task / nqb) % H, b = task / nqb / H;
      const int64_t i0 = qb * kBr, rows = std::min(kBr, Tq - i0), kvl = kv_len_of(p, b);
      const T* kh = k + b * p.k.batch + h * p.k.head;
      const float* lh = lse + (b * H + h) * Tq;
      const double* Dh = D + (b * H + h) * Tq;
      std::fill(dqa.begin(), dqa.end(), T(0));
      const int64_t kend = flash_key_limit(i0 + rows - 1, Tq, Tk, p.causal, kvl);
      for (int64_t j0 = 0; j0 < kend; j0 += kBc) {
        const int64_t cols = std::min(kBc, kend - j0);
        transpose_block(kt.data(), kh, p.k.row, j0, cols, d);
        transpose_block(vt.data(), v + b * p.v.batch + h * p.v.head, p.v.row, j0, cols, d);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = i0 + r, nv = visible_in_block(p, i, kvl, j0, cols);
          if (nv == 0 || std::isinf(lh[i])) continue;
          row_grads(pw.data(), ds.data(), kt.data(), vt.data(), b, h, i, j0, nv, static_cast<T>(lh[i]),
                    static_cast<T>(Dh[i]));
          T* a = dqa.data() + r * d;
          for (int64_t c = 0; c < nv; ++c) axpy(a, ds[c], kh + (j0 + c) * p.k.row, d);
        }
      }
      T* dqh = dq + b * p.dq.batch + h * p.dq.head;
      for (int64_t r = 0; r < rows; ++r) {
        T* out = dqh + (i0 + r) * p.dq.row;
        for (int64_t x = 0; x < d; ++x) out[x] = scale * dqa[r * d + x];
      }
    }
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
