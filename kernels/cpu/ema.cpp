// CPU reference kernels of the damped multi-dimensional EMA (MEGA, specs/lra.md §6.2). Paths (chosen by the engine op):
// the scan runs when the kernel spans the whole sequence (truncation 0 or >= L), where it is exact, in O(L·ndim)
// per channel; the direct convolution with the materialised taps runs when truncation < L (the scan would add taps
// the truncated kernel lacks), in O(L·k). Neither forms [d, L, L]. Full rationale: kernels/cpu/ema.h.
// OpenMP over channels: each thread owns whole channels (all samples), so every reduction over the batch and the
// positions is a plain loop in a fixed order (deterministic, no atomics). A channel's strided column is gathered
// into contiguous scratch once per sample so the tap loops run over contiguous memory.
#include "kernels/cpu/ema.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mixgrad::kernels::cpu {
namespace {

template <class T>
T inv_sqrt_ndim(int64_t ndim) {
  return T(1) / std::sqrt(T(ndim));
}

// col[t] = x[b, t, j] for t < n, 0 after (the zeroed padded inputs).
template <class T>
void gather_column(T* col, const T* x, int64_t b, int64_t j, int64_t n, const EmaSizes& s) {
  const T* src = x + b * s.length * s.channels + j;
  for (int64_t t = 0; t < n; ++t) col[t] = src[t * s.channels];
  for (int64_t t = n; t < s.length; ++t) col[t] = T(0);
}

// The tap sums as one vectorisable axpy per tap (taps outside, positions inside: the position loop has no
// loop-carried dependence, unlike a per-position dot product over reversed taps).
// y[t] += Σ_{m=0}^{min(k−1, t)} w[m]·v[t − m] for t < n (causal taps).
template <class T>
void add_causal_taps(T* y, const T* w, const T* v, int64_t n, int64_t k) {
  const int64_t taps = std::min(k, n);
  for (int64_t m = 0; m < taps; ++m) {
    const T wm = w[m];
    T* dst = y + m;  // dst[i] = y[m + i] += w[m]·v[i]
    for (int64_t i = 0; i < n - m; ++i) dst[i] += wm * v[i];
  }
}
// y[t] += Σ_{m=0}^{min(k−1, n−1−t)} w[m]·v[t + m] for t < n (anti-causal taps).
template <class T>
void add_anticausal_taps(T* y, const T* w, const T* v, int64_t n, int64_t k) {
  const int64_t taps = std::min(k, n);
  for (int64_t m = 0; m < taps; ++m) {
    const T wm = w[m];
    const T* src = v + m;
    for (int64_t t = 0; t < n - m; ++t) y[t] += wm * src[t];
  }
}
// Σ_{i<len} a[i]·b[i] with 32 independent partial sums (vector lanes and enough of them in flight to hide the FMA
// latency), added in a fixed order: the result depends on len only, never on the thread count.
template <class T>
T dot(const T* a, const T* b, int64_t len) {
  constexpr int kLanes = 32;
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  T tail = T(0);
  for (; i < len; ++i) tail += a[i] * b[i];
  for (int width = kLanes / 2; width >= 1; width /= 2)
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  return acc[0] + tail;
}

// pre/out for one (b, j) column from y (the convolution or scan result) on rows < n; zero rows >= n.
template <class T>
void write_outputs(T* out, T* pre, const T* x, const T* y, T omega, int64_t b, int64_t j, int64_t n,
                   const EmaSizes& s) {
  const int64_t base = b * s.length * s.channels + j;
  for (int64_t t = 0; t < s.length; ++t) {
    const int64_t i = base + t * s.channels;
    const T z = t < n ? y[t] + omega * x[i] : T(0);
    pre[i] = z;
    out[i] = t < n ? ema_silu(z) : T(0);
  }
}

// One scan direction over col[0, n) (reverse = from n − 1 down): y[t] += Σ_h coef[h]·s_t[h].
template <class T>
void scan_accumulate(T* y, const T* col, const T* coef, const T* decay, int64_t ndim, int64_t n, bool reverse,
                     std::vector<T>& state) {
  state.assign(size_t(ndim), T(0));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = reverse ? n - 1 - i : i;
    const T xv = col[t];
    T acc = T(0);
    for (int64_t h = 0; h < ndim; ++h) {
      state[h] = decay[h] * state[h] + xv;
      acc += coef[h] * state[h];
    }
    y[t] += acc;
  }
}

// Scan backward of one direction for one (b, j): dx[t] += Σ_h coef[h]·λ_t[h] with the adjoint λ running against the
// direction, and dcoef[h] += Σ_t dz_t·s_t[h], ddecay[h] += coef[h]·Σ_t dz_t·(ds_t/ddecay)[h] from a forward-mode scan
// along the direction (ds_t/ddecay = s_{t−1} + decay·ds_{t−1}/ddecay).
template <class T>
void scan_direction_backward(T* dx, T* dcoef, T* ddecay, const T* dz, const T* col, const T* coef, const T* decay,
                             int64_t ndim, int64_t n, bool reverse, std::vector<T>& a, std::vector<T>& b) {
  a.assign(size_t(ndim), T(0));  // λ
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = reverse ? i : n - 1 - i;  // against the direction
    T acc = T(0);
    for (int64_t h = 0; h < ndim; ++h) {
      a[h] = decay[h] * a[h] + dz[t];
      acc += coef[h] * a[h];
    }
    dx[t] += acc;
  }
  a.assign(size_t(ndim), T(0));  // s
  b.assign(size_t(ndim), T(0));  // ds/ddecay
  for (int64_t h = 0; h < ndim; ++h) dcoef[h] = ddecay[h] = T(0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = reverse ? n - 1 - i : i;
    for (int64_t h = 0; h < ndim; ++h) {
      b[h] = a[h] + decay[h] * b[h];
      a[h] = decay[h] * a[h] + col[t];
      dcoef[h] += dz[t] * a[h];
      ddecay[h] += dz[t] * b[h];
    }
  }
  for (int64_t h = 0; h < ndim; ++h) ddecay[h] *= coef[h];
}

}  // namespace

template <class T>
void ema_coefficients(T* coef, T* decay, const T* delta, const T* alpha, const T* beta, const T* gamma, int64_t rows,
                      int64_t ndim) {
  const T scale = inv_sqrt_ndim<T>(ndim);
  for (int64_t i = 0; i < rows * ndim; ++i) ema_coef(delta[i], alpha[i], beta[i], gamma[i], scale, coef[i], decay[i]);
}

template <class T>
void ema_coefficients_backward(T* ddelta, T* dalpha, T* dbeta, T* dgamma, const T* dcoef, const T* ddecay,
                               const T* delta, const T* alpha, const T* beta, const T* gamma, int64_t rows,
                               int64_t ndim) {
  const T scale = inv_sqrt_ndim<T>(ndim);
  for (int64_t i = 0; i < rows * ndim; ++i)
    ema_coef_backward(dcoef[i], ddecay[i], delta[i], alpha[i], beta[i], gamma[i], scale, ddelta[i], dalpha[i], dbeta[i],
                      dgamma[i]);
}

template <class T>
void ema_kernel(T* kernel, const T* coef, const T* decay, int64_t rows, int64_t ndim, int64_t k) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t l = 0; l < k; ++l) {
      T acc = T(0);
      for (int64_t h = 0; h < ndim; ++h) acc += coef[r * ndim + h] * ema_pow(decay[r * ndim + h], l);
      kernel[r * k + l] = acc;
    }
  }
}

template <class T>
void ema_kernel_backward(T* dcoef, T* ddecay, const T* dkernel, const T* coef, const T* decay, int64_t rows,
                         int64_t ndim, int64_t k) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < ndim; ++h) {
      const T q = decay[r * ndim + h];
      T dc = T(0), dq = T(0);
      for (int64_t l = 0; l < k; ++l) {
        const T g = dkernel[r * k + l];
        dc += g * ema_pow(q, l);
        if (l > 0) dq += g * T(l) * ema_pow(q, l - 1);
      }
      dcoef[r * ndim + h] = dc;
      ddecay[r * ndim + h] = dq * coef[r * ndim + h];
    }
  }
}

template <class T>
void ema_conv_forward(T* out, T* pre, const T* x, const int32_t* lengths, const T* kernel, const T* omega,
                      const EmaSizes& s) {
  const int64_t L = s.length, k = s.kernel_length;
#pragma omp parallel
  {
    std::vector<T> col(static_cast<size_t>(L)), y(static_cast<size_t>(L));
#pragma omp for schedule(static)
    for (int64_t j = 0; j < s.channels; ++j) {
      const T* kf = kernel + j * k;
      const T* kb = s.bidirectional ? kernel + (s.channels + j) * k : nullptr;
      for (int64_t b = 0; b < s.batch; ++b) {
        const int64_t n = ema_valid_length(lengths, b, L);
        gather_column(col.data(), x, b, j, n, s);
        std::fill(y.begin(), y.begin() + n, T(0));
        add_causal_taps(y.data(), kf, col.data(), n, k);
        if (s.bidirectional) add_anticausal_taps(y.data(), kb, col.data(), n, k);
        write_outputs(out, pre, x, y.data(), omega[j], b, j, n, s);
      }
    }
  }
}

template <class T>
void ema_scan_forward(T* out, T* pre, const T* x, const int32_t* lengths, const T* coef, const T* decay, const T* omega,
                      const EmaSizes& s) {
  const int64_t L = s.length, H = s.ndim;
#pragma omp parallel
  {
    std::vector<T> col(static_cast<size_t>(L)), y(static_cast<size_t>(L)), state;
#pragma omp for schedule(static)
    for (int64_t j = 0; j < s.channels; ++j) {
      for (int64_t b = 0; b < s.batch; ++b) {
        const int64_t n = ema_valid_length(lengths, b, L);
        gather_column(col.data(), x, b, j, n, s);
        std::fill(y.begin(), y.end(), T(0));
        scan_accumulate(y.data(), col.data(), coef + j * H, decay + j * H, H, n, false, state);
        if (s.bidirectional)
          scan_accumulate(y.data(), col.data(), coef + (s.channels + j) * H, decay + (s.channels + j) * H, H, n, true,
                          state);
        write_outputs(out, pre, x, y.data(), omega[j], b, j, n, s);
      }
    }
  }
}

template <class T>
void ema_pre_grad(T* dpre, T* domega, const T* dout, const T* pre, const T* x, const int32_t* lengths,
                  const EmaSizes& s) {
  const int64_t L = s.length, D = s.channels;
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < D; ++j) {
    T acc = T(0);
    for (int64_t b = 0; b < s.batch; ++b) {
      const int64_t n = ema_valid_length(lengths, b, L);
      for (int64_t t = 0; t < L; ++t) {
        const int64_t i = (b * L + t) * D + j;
        const T g = t < n ? dout[i] * ema_silu_grad(pre[i]) : T(0);
        dpre[i] = g;
        acc += g * x[i];
      }
    }
    domega[j] = acc;
  }
}

template <class T>
void ema_conv_backward(T* dx, T* dkernel, const T* dpre, const T* x, const int32_t* lengths, const T* kernel,
                       const T* omega, const EmaSizes& s) {
  const int64_t L = s.length, k = s.kernel_length, D = s.channels;
#pragma omp parallel
  {
    std::vector<T> col(static_cast<size_t>(L)), dz(static_cast<size_t>(L)), g(static_cast<size_t>(L));
#pragma omp for schedule(static)
    for (int64_t j = 0; j < D; ++j) {
      const T* kf = kernel + j * k;
      const T* kb = s.bidirectional ? kernel + (D + j) * k : nullptr;
      T* dkf = dkernel + j * k;
      T* dkb = s.bidirectional ? dkernel + (D + j) * k : nullptr;
      for (int64_t m = 0; m < k; ++m) dkf[m] = T(0);
      if (s.bidirectional)
        for (int64_t m = 0; m < k; ++m) dkb[m] = T(0);
      for (int64_t b = 0; b < s.batch; ++b) {
        const int64_t n = ema_valid_length(lengths, b, L);
        gather_column(col.data(), x, b, j, n, s);
        gather_column(dz.data(), dpre, b, j, n, s);
        T* dxb = dx + b * L * D + j;
        // dx̃[t] = Σ_m Kf[m]·dz[t + m] + Σ_m Kb[m]·dz[t − m] (the adjoint taps), then the ω term.
        std::fill(g.begin(), g.begin() + n, T(0));
        add_anticausal_taps(g.data(), kf, dz.data(), n, k);
        if (s.bidirectional) add_causal_taps(g.data(), kb, dz.data(), n, k);
        for (int64_t t = 0; t < L; ++t) dxb[t * D] = t < n ? omega[j] * dz[t] + g[t] : T(0);
        // dKf[m] += Σ_t dz[t]·x̃[t − m]; dKb[m] += Σ_t dz[t]·x̃[t + m] (= dKf with the roles of dz and x̃ swapped).
        for (int64_t m = 0; m < std::min(k, n); ++m) {
          dkf[m] += dot(dz.data() + m, col.data(), n - m);
          if (s.bidirectional) dkb[m] += dot(col.data() + m, dz.data(), n - m);
        }
      }
    }
  }
}

template <class T>
void ema_scan_backward(T* dx, T* dcoef, T* ddecay, T* partial, const T* dpre, const T* x, const int32_t* lengths,
                       const T* coef, const T* decay, const T* omega, const EmaSizes& s) {
  const int64_t L = s.length, H = s.ndim, D = s.channels, R = s.rows();
  T* part_coef = partial;                     // [B, rows, H]
  T* part_decay = partial + s.batch * R * H;  // [B, rows, H]
#pragma omp parallel
  {
    std::vector<T> col(static_cast<size_t>(L)), dz(static_cast<size_t>(L)), g(static_cast<size_t>(L)), a, bb;
#pragma omp for schedule(static)
    for (int64_t j = 0; j < D; ++j) {
      for (int64_t b = 0; b < s.batch; ++b) {
        const int64_t n = ema_valid_length(lengths, b, L);
        gather_column(col.data(), x, b, j, n, s);
        gather_column(dz.data(), dpre, b, j, n, s);
        for (int64_t t = 0; t < L; ++t) g[t] = t < n ? omega[j] * dz[t] : T(0);
        const int64_t rf = (b * R + j) * H;
        scan_direction_backward(g.data(), part_coef + rf, part_decay + rf, dz.data(), col.data(), coef + j * H,
                                decay + j * H, H, n, false, a, bb);
        if (s.bidirectional) {
          const int64_t rb = (b * R + D + j) * H;
          scan_direction_backward(g.data(), part_coef + rb, part_decay + rb, dz.data(), col.data(), coef + (D + j) * H,
                                  decay + (D + j) * H, H, n, true, a, bb);
        }
        T* dxb = dx + b * L * D + j;
        for (int64_t t = 0; t < L; ++t) dxb[t * D] = g[t];
      }
    }
  }
  // Batch reduction in sample order (the CUDA twin sums in the same order).
  for (int64_t i = 0; i < R * H; ++i) {
    T c = T(0), q = T(0);
    for (int64_t b = 0; b < s.batch; ++b) {
      c += part_coef[b * R * H + i];
      q += part_decay[b * R * H + i];
    }
    dcoef[i] = c;
    ddecay[i] = q;
  }
}

#define MIXGRAD_EMA_INSTANTIATE(T)                                                                                     \
  template void ema_coefficients<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t);                 \
  template void ema_coefficients_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, const T*,         \
                                             const T*, int64_t, int64_t);                                              \
  template void ema_kernel<T>(T*, const T*, const T*, int64_t, int64_t, int64_t);                                      \
  template void ema_kernel_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t);               \
  template void ema_conv_forward<T>(T*, T*, const T*, const int32_t*, const T*, const T*, const EmaSizes&);            \
  template void ema_scan_forward<T>(T*, T*, const T*, const int32_t*, const T*, const T*, const T*, const EmaSizes&);  \
  template void ema_pre_grad<T>(T*, T*, const T*, const T*, const T*, const int32_t*, const EmaSizes&);                \
  template void ema_conv_backward<T>(T*, T*, const T*, const T*, const int32_t*, const T*, const T*, const EmaSizes&); \
  template void ema_scan_backward<T>(T*, T*, T*, T*, const T*, const T*, const int32_t*, const T*, const T*, const T*, \
                                     const EmaSizes&);
MIXGRAD_EMA_INSTANTIATE(float)
MIXGRAD_EMA_INSTANTIATE(double)
#undef MIXGRAD_EMA_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
