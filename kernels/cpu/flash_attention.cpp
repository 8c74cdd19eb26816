// CPU flash attention (see kernels/cpu/flash_attention.h). Keys are transposed into a d × 64 tile (zero-padded
// past the block's last key) so score rows are computed 64 wide, the head dim is a compile-time constant for
// d ∈ {16, 32, 64, 128}, and float exponentials use vec::exp (kernels/cpu/vec_math.h), which vectorises. Every
// accumulation has a fixed order, so results are bitwise reproducible for any thread count.
#include "kernels/cpu/flash_attention.h"

#include "kernels/cpu/vec_math.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
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

// out[c] = Σ_x a[x] · bt[x * kBc + c] for all kBc columns (axpy form: vectorises over c, fixed order over x).
template <class T, int DC>
void row_times_block(T* __restrict out, const T* __restrict a, const T* __restrict bt, HeadDim<DC> hd) {
  const int64_t d = hd();
  T acc[kBc] = {};
  for (int64_t x = 0; x < d; ++x) {
    const T ax = a[x];
    const T* b = bt + x * kBc;
#pragma omp simd
    for (int64_t c = 0; c < kBc; ++c) acc[c] += ax * b[c];
  }
  std::memcpy(out, acc, sizeof(acc));
}

// y[x] += a · v[x] for x < d.
template <class T, int DC>
void axpy(T* __restrict y, T a, const T* __restrict v, HeadDim<DC> hd) {
  const int64_t d = hd();
#pragma omp simd
  for (int64_t x = 0; x < d; ++x) y[x] += a * v[x];
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
        transpose_block(kt.data(), kh, p.k.row, j0, cols, hd);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = i0 + r, nv = visible_in_block(p, i, kvl, j0, cols);
          if (nv == 0) continue;
          T* s = srow.data();
          row_times_block(s, qh + i * p.q.row, kt.data(), hd);
          T mx = neg_inf;
          for (int64_t c = 0; c < nv; ++c) mx = std::max(mx, s[c]);
          mx *= scale;  // scale > 0 keeps the maximum's position; scale <= 0 is handled below
          if (!(scale > T(0))) {
            mx = neg_inf;
            for (int64_t c = 0; c < nv; ++c) mx = std::max(mx, s[c] * scale);
          }
          const T m_new = std::max(m[r], mx);
          const T alpha = m[r] == neg_inf ? T(0) : std::exp(m[r] - m_new);
          exp_shifted(s, s, scale, m_new, nv);
          T sum = 0;
          for (int64_t c = 0; c < nv; ++c) sum += s[c];
          l[r] = alpha * l[r] + sum;
          m[r] = m_new;
          if (dropout) apply_dropout(s, nv, dkey, b, h, i, j0, p.dropout_p, inv_keep);
          T* a = acc.data() + r * d;
          if (alpha != T(1))
            for (int64_t x = 0; x < d; ++x) a[x] *= alpha;
          for (int64_t c = 0; c < nv; ++c) axpy(a, s[c], vh + (j0 + c) * p.v.row, hd);
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
  const T* g_row(int64_t b, int64_t h, int64_t i) const {
    return dout + b * p.dout.batch + h * p.dout.head + i * p.dout.row;
  }

  // Recomputes, for query i against keys j0 .. j0+nv-1, P (into pd; P ⊙ M/(1-p) under dropout) and
  // dS = P ⊙ (dP ⊙ M/(1-p) − D_i) (into ds). kt / vt: the key block's K and V transposed.
  void row_grads(T* pd, T* ds, const T* kt, const T* vt, int64_t b, int64_t h, int64_t i, int64_t j0,
                 int64_t nv) const {
    const int64_t row = (b * p.H + h) * p.T + i;
    const T lse_i = static_cast<T>(lse[row]), D_i = static_cast<T>(D[row]);
    row_times_block(pd, q_row(b, h, i), kt, hd);
    exp_shifted(pd, pd, scale, lse_i, nv);
    row_times_block(ds, g_row(b, h, i), vt, hd);  // dP (before dropout)
    if (!dropout) {
#pragma omp simd
      for (int64_t c = 0; c < nv; ++c) ds[c] = pd[c] * (ds[c] - D_i);
      return;
    }
    Philox4 bits{};
    for (int64_t c = 0; c < nv; ++c) {
      const int64_t j = j0 + c;
      if (c == 0 || (j & 3) == 0) bits = flash_dropout_bits4(dkey, b, h, i, j >> 2);
      const T z =
          flash_dropout_keep_word(flash_philox_word(bits, static_cast<int>(j & 3)), p.dropout_p) ? inv_keep : T(0);
      ds[c] = pd[c] * (ds[c] * z - D_i);
      pd[c] *= z;
    }
  }

  // dK, dV of key block j0 (cols keys) of head (b, h), accumulated over the queries that see it into dka / dva
  // (cols × d, zeroed here) and written scaled to dK / dV. When dqa is non-null it also accumulates
  // dQ_i += Σ_c dS_ic k_c into dqa (T × d rows of this head), in the same per-element order as dq_pass.
  void key_block(T* dk, T* dv, T* dka, T* dva, T* kt, T* vt, T* pw, T* ds, T* dqa, int64_t b, int64_t h,
                 int64_t j0, int64_t cols) const {
    const int64_t d = hd(), Tq = p.T, Tk = p.Tk, kvl = kv_len_of(p, b);
    std::fill(dka, dka + cols * d, T(0));
    std::fill(dva, dva + cols * d, T(0));
    if (j0 < kvl) {
      const T* kh = k + b * p.k.batch + h * p.k.head;
      transpose_block(kt, kh, p.k.row, j0, cols, hd);
      transpose_block(vt, v + b * p.v.batch + h * p.v.head, p.v.row, j0, cols, hd);
      const int64_t q_first = p.causal ? std::max<int64_t>(0, j0 - (Tk - Tq)) : 0;
      const float* lh = lse + (b * p.H + h) * Tq;
      for (int64_t i = q_first; i < Tq; ++i) {
        const int64_t nv = visible_in_block(p, i, kvl, j0, cols);
        if (nv == 0 || std::isinf(lh[i])) continue;  // fully masked rows contribute nothing
        row_grads(pw, ds, kt, vt, b, h, i, j0, nv);
        const T* qi = q_row(b, h, i);
        const T* gi = g_row(b, h, i);
        for (int64_t c = 0; c < nv; ++c) {
          axpy(dva + c * d, pw[c], gi, hd);
          axpy(dka + c * d, ds[c], qi, hd);
        }
        if (dqa != nullptr) {
          T* a = dqa + i * d;
          for (int64_t c = 0; c < nv; ++c) axpy(a, ds[c], kh + (j0 + c) * p.k.row, hd);
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

  // dQ rows i0 .. i0+rows-1 of head (b, h) from all visible key blocks, accumulated into dqa (rows × d).
  void dq_block(T* dqa, T* kt, T* vt, T* pw, T* ds, int64_t b, int64_t h, int64_t i0, int64_t rows) const {
    const int64_t d = hd(), Tq = p.T, kvl = kv_len_of(p, b);
    const T* kh = k + b * p.k.batch + h * p.k.head;
    const float* lh = lse + (b * p.H + h) * Tq;
    std::fill(dqa, dqa + rows * d, T(0));
    const int64_t kend = flash_key_limit(i0 + rows - 1, Tq, p.Tk, p.causal, kvl);
    for (int64_t j0 = 0; j0 < kend; j0 += kBc) {
      const int64_t cols = std::min(kBc, kend - j0);
      transpose_block(kt, kh, p.k.row, j0, cols, hd);
      transpose_block(vt, v + b * p.v.batch + h * p.v.head, p.v.row, j0, cols, hd);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r, nv = visible_in_block(p, i, kvl, j0, cols);
        if (nv == 0 || std::isinf(lh[i])) continue;
        row_grads(pw, ds, kt, vt, b, h, i, j0, nv);
        T* a = dqa + r * d;
        for (int64_t c = 0; c < nv; ++c) axpy(a, ds[c], kh + (j0 + c) * p.k.row, hd);
      }
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
    double s = 0;
    for (int64_t x = 0; x < d; ++x) s += static_cast<double>(g[x]) * static_cast<double>(y[x]);
    D[row] = s;
  }

  const int64_t nkb = (Tk + kBc - 1) / kBc, nqb = (Tq + kBr - 1) / kBr;
  const size_t tile = static_cast<size_t>(d * kBc);
  if (B * H >= 2 * static_cast<int64_t>(omp_get_max_threads())) {
    // Enough heads to keep every thread busy: one task per (b, h) walks its key blocks once, accumulating dK and
    // dV per block and dQ for all the head's rows, so P and dS are computed once instead of twice.
#pragma omp parallel
    {
      std::vector<T> kt(tile), vt(tile), dka(tile), dva(tile), pw(kBc), ds(kBc),
          dqa(static_cast<size_t>(std::max<int64_t>(Tq, 1) * d));
#pragma omp for schedule(dynamic)
      for (int64_t bh = 0; bh < B * H; ++bh) {
        const int64_t h = bh % H, b = bh / H;
        std::fill(dqa.begin(), dqa.end(), T(0));
        for (int64_t kb = 0; kb < nkb; ++kb) {
          const int64_t j0 = kb * kBc;
          ctx.key_block(dk, dv, dka.data(), dva.data(), kt.data(), vt.data(), pw.data(), ds.data(), dqa.data(), b,
                        h, j0, std::min(kBc, Tk - j0));
        }
        if (Tq > 0) ctx.write_dq(dq, dqa.data(), b, h, 0, Tq);
      }
    }
    return;
  }

  // Few heads: pass 2 (dK, dV per (b, h, key block)) and pass 3 (dQ per (b, h, query block)) parallelise over
  // blocks too, at the cost of computing P and dS twice. Same per-element order as above: same bits.
  if (Tk > 0) {
#pragma omp parallel
    {
      std::vector<T> kt(tile), vt(tile), dka(tile), dva(tile), pw(kBc), ds(kBc);
#pragma omp for schedule(dynamic)
      for (int64_t task = 0; task < B * H * nkb; ++task) {
        const int64_t kb = task % nkb, h = (task / nkb) % H, b = task / nkb / H;
        const int64_t j0 = kb * kBc;
        ctx.key_block(dk, dv, dka.data(), dva.data(), kt.data(), vt.data(), pw.data(), ds.data(), nullptr, b, h, j0,
                      std::min(kBc, Tk - j0));
      }
    }
  }
#pragma omp parallel
  {
    std::vector<T> kt(tile), vt(tile), dqa(static_cast<size_t>(kBr * d)), pw(kBc), ds(kBc);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < B * H * nqb; ++task) {
      const int64_t qb = task % nqb, h = (task / nqb) % H, b = task / nqb / H;
      const int64_t i0 = qb * kBr, rows = std::min(kBr, Tq - i0);
      ctx.dq_block(dqa.data(), kt.data(), vt.data(), pw.data(), ds.data(), b, h, i0, rows);
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
