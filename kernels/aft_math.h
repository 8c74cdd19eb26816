// AFT (specs/mixers.md §4): the position-bias band every AFT variant is described by, which keys a query sees, and
// the exact per-(t, d) streaming formula used by the underflow fallback — shared by kernels/cpu/aft.cpp (float and
// double) and kernels/cuda/aft.cu (float). Kernels only: included by those two sources, not by public headers.
#pragma once
#include <cstdint>

#include "kernels/aft_band.h"
#include "kernels/common.h"
#include "kernels/elementwise_math.h"

namespace mixgrad::kernels {

// Keys t' < aft_key_end(...) are the ones query t of a sample with n valid tokens sees (padded keys never count).
MIXGRAD_HD int64_t aft_key_end(const AftBand& band, int64_t t, int64_t n) {
  return band.causal ? (t + 1 < n ? t + 1 : n) : n;
}

// n_b: lengths[b] clamped to [0, N] (lengths on a GPU are not validated by a read-back), N without lengths.
MIXGRAD_HD int64_t aft_valid_length(const int32_t* lengths, int64_t b, int64_t N) {
  if (!lengths) return N;
  const int64_t n = lengths[b];
  return n < 0 ? 0 : (n > N ? N : n);
}

// The head of channel c (of D, split into `heads` equal groups).
MIXGRAD_HD int64_t aft_head_of(int64_t c, int64_t D, int64_t heads) { return c / (D / heads); }

MIXGRAD_HD int64_t aft_bias_index(const AftBiasLayout& l, int64_t h, int64_t t, int64_t j) {
  return h * l.head_stride + t * l.row_stride + j + l.offset;
}

// w'(h, t, t'): the stored bias inside row t's band, 0 outside (AFT-local's 0, not −∞: spec §4.1).
template <class T>
MIXGRAD_HD T aft_bias_at(const T* w, const AftBand& band, int64_t h, int64_t t, int64_t tp) {
  const int64_t j = tp - t - band.lo;
  return (j >= 0 && j < band.width) ? w[aft_bias_index(band.bias, h, t, j)] : T(0);
}

// Smallest den the GEMM form trusts: the smallest normal divided by the machine epsilon, so num = Ȳ·den keeps full
// precision too (derived; spec §4.3 says "below the smallest normal").
template <class T>
MIXGRAD_HD T aft_den_floor();
template <>
MIXGRAD_HD float aft_den_floor<float>() {
  return 1.17549435e-38f / 1.1920929e-07f;
}
template <>
MIXGRAD_HD double aft_den_floor<double>() {
  return 2.2250738585072014e-308 / 2.220446049250313e-16;
}

template <class T>
struct AftDirect {
  T max, den, num;  // m = max_t' s(t'), den = Σ e^{s − m}, num = Σ e^{s − m}·V, s(t') = K_t' + w'(t, t')
};

// The exact per-(t, d) form of one output element over keys [0, end) of one (sample, channel) column: k and v point
// at the column's first element, consecutive tokens `stride` apart. Two passes (max, then sums): never under- or
// overflows for finite inputs. end >= 1.
template <class T>
MIXGRAD_HD AftDirect<T> aft_direct(const T* k, const T* v, int64_t stride, const T* w, const AftBand& band, int64_t h,
                                   int64_t t, int64_t end) {
  T m = k[0] + aft_bias_at(w, band, h, t, 0);
  for (int64_t tp = 1; tp < end; ++tp) {
    const T s = k[tp * stride] + aft_bias_at(w, band, h, t, tp);
    m = s > m ? s : m;
  }
  AftDirect<T> r{m, T(0), T(0)};
  for (int64_t tp = 0; tp < end; ++tp) {
    const T e = ew_math::exp(k[tp * stride] + aft_bias_at(w, band, h, t, tp) - m);
    r.den += e;
    r.num += e * v[tp * stride];
  }
  return r;
}

// Causal AFT-simple of one (sample, channel) column by a prefix scan with a running max (spec §4.5), as the CUDA
// kernels run it (kernels/cpu/aft.cpp runs the same recurrences over blocks of contiguous channels, vectorised, with
// one exponential per step where this form has two and the other is exp(0) = 1: the same values). Never under- or
// overflows, so it needs no fallback. Elements `stride` apart; rows [0, n) valid, [n, N) padded (y = ybar = 0).
// Saves the running max M_t and the running den L_t (in the frame of M_t) for the backward.
template <class T>
MIXGRAD_HD void aft_simple_scan_column(T* y, T* ybar, T* run_max, T* run_den, const T* q, const T* k, const T* v,
                                       int64_t stride, int64_t n, int64_t N) {
  T m = T(0), den = T(0), num = T(0);
  for (int64_t t = 0; t < n; ++t) {
    const int64_t i = t * stride;
    const T kt = k[i], m_new = (t == 0 || kt > m) ? kt : m;
    const T scale = t == 0 ? T(0) : ew_math::exp(m - m_new), e = ew_math::exp(kt - m_new);
    den = den * scale + e;
    num = num * scale + e * v[i];
    m = m_new;
    ybar[i] = num / den;
    y[i] = stable_sigmoid(q[i]) * ybar[i];
    run_max[i] = m;
    run_den[i] = den;
  }
  for (int64_t t = n; t < N; ++t) {
    const int64_t i = t * stride;
    y[i] = ybar[i] = run_max[i] = T(0);
    run_den[i] = T(1);
  }
}

// Its backward by the reverse scan (derived): with Gq_t = dY_t·σ(Q_t) and the weights P_{t,t'} = e^{K_t' − M_t}/L_t,
// R_t' = Σ_{t >= t'} Gq_t·e^{M_t' − M_t}/L_t obeys R_t' = Gq_t'/L_t' + e^{M_t' − M_t'+1}·R_t'+1 (factors <= 1, since M
// never decreases), RY the same with Gq_t·Ȳ_t; then dV_t' = e^{K_t' − M_t'}·R_t', dK_t' = e^{K_t' − M_t'}·(V_t'·R_t'
// − RY_t'), dQ_t = dY_t·Ȳ_t·σ'(Q_t). Padded rows get 0.
template <class T>
MIXGRAD_HD void aft_simple_scan_column_backward(T* dq, T* dk, T* dv, const T* dy, const T* q, const T* k, const T* v,
                                                const T* ybar, const T* run_max, const T* run_den, int64_t stride,
                                                int64_t n, int64_t N) {
  T r = T(0), ry = T(0);
  for (int64_t t = n - 1; t >= 0; --t) {
    const int64_t i = t * stride;
    if (t + 1 < n) {
      const T f = ew_math::exp(run_max[i] - run_max[i + stride]);
      r *= f;
      ry *= f;
    }
    const T s = stable_sigmoid(q[i]), gq = dy[i] * s;
    r += gq / run_den[i];
    ry += gq * ybar[i] / run_den[i];
    const T e = ew_math::exp(k[i] - run_max[i]);
    dv[i] = e * r;
    dk[i] = e * (v[i] * r - ry);
    dq[i] = dy[i] * ybar[i] * s * (T(1) - s);
  }
  for (int64_t t = n; t < N; ++t) dq[t * stride] = dk[t * stride] = dv[t * stride] = T(0);
}

}  // namespace mixgrad::kernels
