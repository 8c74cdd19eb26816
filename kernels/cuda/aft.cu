// AFT on CUDA (specs/mixers.md §4.3–4.5), float32; the paths (dense GEMM form, band form, underflow fallback) and
// what each step computes are described in kernels/cpu/aft.cpp and kernels/cpu/aft.h, the CPU reference.
// Thread mappings: one thread per output element for the element-wise steps and the band loops; one thread per
// (sample, column) for the scans, the key maxima and the fallback backward; one warp per (head, row, band entry) for
// the band bias gradient (shuffle reduction, deterministic).
#include <algorithm>

#include "kernels/aft_math.h"
#include "kernels/cuda/aft.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm.h"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) { return int(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 20)); }

#define AFT_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); i += int64_t{gridDim.x} * blockDim.x)

__device__ __forceinline__ int64_t clamp_index(int64_t i, int64_t n) { return i < 0 ? 0 : (i > n ? n : i); }

__global__ void row_max_kernel(float* row_max, const float* w, AftBand band, int64_t N) {
  AFT_GRID_LOOP(i, band.heads * N) {
    const int64_t h = i / N, t = i % N, end = band.causal ? t + 1 : N;
    const int64_t first = t + band.lo > 0 ? t + band.lo : 0;
    const int64_t last = t + band.lo + band.width < end ? t + band.lo + band.width : end;
    float m = -INFINITY;
    for (int64_t tp = first; tp < last; ++tp) m = fmaxf(m, w[aft_bias_index(band.bias, h, t, tp - t - band.lo)]);
    if ((last > first ? last - first : 0) < end) m = fmaxf(m, 0.f);
    row_max[i] = m;
  }
}

__global__ void band_weights_kernel(float* aband, float* coef, const float* w, const float* row_max, AftBand band,
                                    int64_t N) {
  const int64_t W = band.width, per_row = W > 0 ? W : 1;
  AFT_GRID_LOOP(i, band.heads * N * per_row) {
    const int64_t j = i % per_row, ht = i / per_row, h = ht / N, t = ht % N;
    const float m = row_max[ht];
    if (j == 0) coef[ht] = expf(-m);
    if (W == 0) continue;
    const int64_t tp = t + band.lo + j, end = band.causal ? t + 1 : N;
    aband[ht * W + j] = (tp >= 0 && tp < end) ? expf(w[aft_bias_index(band.bias, h, t, j)] - m) : 0.f;
  }
}

__global__ void dense_weights_kernel(float* a, const float* w, const float* row_max, AftBand band, int64_t N) {
  AFT_GRID_LOOP(i, N * N) {
    const int64_t t = i / N, tp = i % N, end = band.causal ? t + 1 : N;
    a[i] = tp < end ? expf(aft_bias_at(w, band, 0, t, tp) - row_max[t]) : 0.f;
  }
}

__global__ void key_weights_kernel(float* x, const float* k, const float* v, const int32_t* lengths, int64_t B,
                                   int64_t N, int64_t D) {
  AFT_GRID_LOOP(i, B * D) {
    const int64_t b = i / D, c = i % D, n = aft_valid_length(lengths, b, N);
    const float* kc = k + b * N * D + c;
    float m = -INFINITY;
    for (int64_t t = 0; t < n; ++t) m = fmaxf(m, kc[t * D]);
    for (int64_t t = 0; t < N; ++t) {
      const float e = t < n ? expf(kc[t * D] - m) : 0.f;
      float* xr = x + (b * N + t) * 2 * D;
      xr[c] = e * v[(b * N + t) * D + c];
      xr[D + c] = e;
    }
  }
}

// prefix[b, i, c] = Σ_{t < i} wt·in, suffix[b, i, c] = Σ_{t >= i} wt·in (wt = 1, or coef of the column's head).
__global__ void band_scan_kernel(float* prefix, float* suffix, const float* in, const float* coef, AftBand band,
                                 int64_t B, int64_t N, int64_t D) {
  const int64_t C = 2 * D;
  AFT_GRID_LOOP(i, B * C) {
    const int64_t b = i / C, c = i % C, h = aft_head_of(c % D, D, band.heads);
    const float* x = in + b * N * C + c;
    float* p = prefix + b * (N + 1) * C + c;
    float* s = suffix + b * (N + 1) * C + c;
    float acc = 0.f;
    p[0] = 0.f;
    for (int64_t t = 0; t < N; ++t) {
      acc += (coef ? coef[h * N + t] : 1.f) * x[t * C];
      p[(t + 1) * C] = acc;
    }
    acc = 0.f;
    s[N * C] = 0.f;
    for (int64_t t = N - 1; t >= 0; --t) {
      acc += (coef ? coef[h * N + t] : 1.f) * x[t * C];
      s[t * C] = acc;
    }
  }
}

__global__ void band_apply_kernel(float* out, const float* prefix, const float* suffix, const float* in,
                                  const float* aband, const float* coef, AftBand band, int64_t B, int64_t N, int64_t D,
                                  bool transposed) {
  const int64_t C = 2 * D, W = band.width, lo = band.lo;
  AFT_GRID_LOOP(i, B * N * C) {
    const int64_t c = i % C, t = (i / C) % N, b = i / (N * C), h = aft_head_of(c % D, D, band.heads);
    const float* p = prefix + b * (N + 1) * C + c;
    const float* s = suffix + b * (N + 1) * C + c;
    const float* x = in + b * N * C + c;
    float acc;
    if (!transposed) {
      const float outside = p[clamp_index(t + lo, N) * C] + (band.causal ? 0.f : s[clamp_index(t + lo + W, N) * C]);
      acc = coef[h * N + t] * outside;
      for (int64_t j = 0; j < W; ++j) {
        const int64_t tp = t + lo + j;
        if (tp >= 0 && tp < N) acc += aband[(h * N + t) * W + j] * x[tp * C];
      }
    } else {
      acc = s[clamp_index(t - lo + 1, N) * C] + (band.causal ? 0.f : p[clamp_index(t - lo - W + 1, N) * C]);
      for (int64_t j = 0; j < W; ++j) {
        const int64_t r = t - lo - j;
        if (r >= 0 && r < N) acc += aband[(h * N + r) * W + j] * x[r * C];
      }
    }
    out[i] = acc;
  }
}

__global__ void forward_finish_kernel(float* y, float* ybar, float* den, const float* q, const float* k, const float* v,
                                      const float* nd, const float* w, AftBand band, const int32_t* lengths, int64_t B,
                                      int64_t N, int64_t D) {
  AFT_GRID_LOOP(i, B * N * D) {
    const int64_t c = i % D, t = (i / D) % N, b = i / (N * D), n = aft_valid_length(lengths, b, N);
    if (t >= n) {
      y[i] = ybar[i] = 0.f, den[i] = 1.f;
      continue;
    }
    const float dn = nd[2 * (i - c) + D + c];
    float yb;
    if (dn >= aft_den_floor<float>()) {
      yb = nd[2 * (i - c) + c] / dn;
      den[i] = dn;
    } else {
      const AftDirect<float> r = aft_direct(k + b * N * D + c, v + b * N * D + c, D, w, band,
                                            aft_head_of(c, D, band.heads), t, aft_key_end(band, t, n));
      yb = r.num / r.den;
      den[i] = 0.f;
    }
    ybar[i] = yb;
    y[i] = stable_sigmoid(q[i]) * yb;
  }
}

__global__ void backward_prep_kernel(float* g, float* dq, const float* dy, const float* q, const float* ybar,
                                     const float* den, const int32_t* lengths, int64_t B, int64_t N, int64_t D) {
  AFT_GRID_LOOP(i, B * N * D) {
    const int64_t c = i % D, t = (i / D) % N, b = i / (N * D);
    const bool valid = t < aft_valid_length(lengths, b, N);
    const float s = stable_sigmoid(q[i]), gq = valid ? dy[i] * s : 0.f, dn = den[i];
    dq[i] = valid ? dy[i] * ybar[i] * s * (1.f - s) : 0.f;
    g[2 * (i - c) + c] = dn != 0.f ? gq / dn : 0.f;
    g[2 * (i - c) + D + c] = dn != 0.f ? -gq * ybar[i] / dn : 0.f;
  }
}

__global__ void backward_keys_kernel(float* dk, float* dv, const float* h, const float* x, const float* v, int64_t B,
                                     int64_t N, int64_t D) {
  AFT_GRID_LOOP(i, B * N * D) {
    const int64_t c = i % D, base = 2 * (i - c);
    const float e = x[base + D + c], hn = h[base + c], hd = h[base + D + c];
    dv[i] = e * hn;
    dk[i] = e * (hd + v[i] * hn);
  }
}

// One warp per (h, t, j).
__global__ void band_bias_grad_kernel(float* dw, AftBiasLayout dw_layout, const float* g, const float* x,
                                      const float* aband, AftBand band, int64_t B, int64_t N, int64_t D) {
  const int64_t W = band.width, C = 2 * D, per_head = D / band.heads, total = band.heads * N * W;
  const int64_t warp = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= total) return;
  const int64_t j = warp % W, t = (warp / W) % N, h = warp / (N * W), tp = t + band.lo + j;
  if (tp < 0 || tp >= N) return;  // the whole warp leaves together
  float acc = 0.f;
  for (int64_t e = lane; e < B * per_head; e += 32) {
    const int64_t b = e / per_head, c = h * per_head + e % per_head;
    const float* gr = g + (b * N + t) * C;
    const float* xr = x + (b * N + tp) * C;
    acc += gr[c] * xr[c] + gr[D + c] * xr[D + c];
  }
  for (int off = 16; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0) dw[aft_bias_index(dw_layout, h, t, j)] = acc * aband[(h * N + t) * W + j];
}

__global__ void dense_bias_grad_kernel(float* dw, AftBiasLayout dw_layout, const float* da, const float* a,
                                       AftBand band, int64_t N) {
  AFT_GRID_LOOP(i, N * band.width) {
    const int64_t t = i / band.width, j = i % band.width, tp = t + band.lo + j, end = band.causal ? t + 1 : N;
    if (tp >= 0 && tp < end) dw[aft_bias_index(dw_layout, 0, t, j)] = da[t * N + tp] * a[t * N + tp];
  }
}

__global__ void fallback_backward_kernel(float* dk, float* dv, float* dw, AftBiasLayout dw_layout, const float* dy,
                                         const float* q, const float* k, const float* v, const float* ybar,
                                         const float* den, const float* w, AftBand band, const int32_t* lengths,
                                         int64_t B, int64_t N, int64_t D) {
  AFT_GRID_LOOP(col_index, B * D) {
    const int64_t b = col_index / D, c = col_index % D, n = aft_valid_length(lengths, b, N);
    const int64_t h = aft_head_of(c, D, band.heads), col = b * N * D + c;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t i = col + t * D;
      if (den[i] != 0.f) continue;
      const int64_t end = aft_key_end(band, t, n);
      const AftDirect<float> r = aft_direct(k + col, v + col, D, w, band, h, t, end);
      const float gq = dy[i] * stable_sigmoid(q[i]);
      for (int64_t tp = 0; tp < end; ++tp) {
        const float gp = gq * expf(k[col + tp * D] + aft_bias_at(w, band, h, t, tp) - r.max) / r.den;
        const float gs = gp * (v[col + tp * D] - ybar[i]);
        dv[col + tp * D] += gp;
        dk[col + tp * D] += gs;
        const int64_t j = tp - t - band.lo;
        if (dw && j >= 0 && j < band.width) atomicAdd(dw + aft_bias_index(dw_layout, h, t, j), gs);
      }
    }
  }
}

__global__ void band_product_kernel(float* out, const float* u, const float* vp, int64_t N, int64_t R, int64_t lo,
                                    int64_t W) {
  AFT_GRID_LOOP(i, N * W) {
    const int64_t t = i / W, tp = t + lo + i % W;
    float acc = 0.f;
    if (tp >= 0 && tp < N)
      for (int64_t r = 0; r < R; ++r) acc += u[t * R + r] * vp[tp * R + r];
    out[i] = acc;
  }
}

// i over 2·N·R: the first N·R threads write du[t, r], the rest dvp[t', r].
__global__ void band_product_backward_kernel(float* du, float* dvp, const float* g, const float* u, const float* vp,
                                             int64_t N, int64_t R, int64_t lo, int64_t W) {
  AFT_GRID_LOOP(i, 2 * N * R) {
    const bool first = i < N * R;
    const int64_t e = first ? i : i - N * R, t = e / R, r = e % R;
    float acc = 0.f;
    for (int64_t j = 0; j < W; ++j) {
      if (first) {
        const int64_t tp = t + lo + j;
        if (tp >= 0 && tp < N) acc += g[t * W + j] * vp[tp * R + r];
      } else {
        const int64_t row = t - lo - j;
        if (row >= 0 && row < N) acc += g[row * W + j] * u[row * R + r];
      }
    }
    (first ? du : dvp)[e] = acc;
  }
}

__global__ void simple_scan_kernel(float* y, float* ybar, float* run_max, float* run_den, const float* q,
                                   const float* k, const float* v, const int32_t* lengths, int64_t B, int64_t N,
                                   int64_t D) {
  AFT_GRID_LOOP(col, B * D) {
    const int64_t b = col / D, o = b * N * D + col % D;
    aft_simple_scan_column(y + o, ybar + o, run_max + o, run_den + o, q + o, k + o, v + o, D,
                           aft_valid_length(lengths, b, N), N);
  }
}

__global__ void simple_scan_backward_kernel(float* dq, float* dk, float* dv, const float* dy, const float* q,
                                            const float* k, const float* v, const float* ybar, const float* run_max,
                                            const float* run_den, const int32_t* lengths, int64_t B, int64_t N,
                                            int64_t D) {
  AFT_GRID_LOOP(col, B * D) {
    const int64_t b = col / D, o = b * N * D + col % D;
    aft_simple_scan_column_backward(dq + o, dk + o, dv + o, dy + o, q + o, k + o, v + o, ybar + o, run_max + o,
                                    run_den + o, D, aft_valid_length(lengths, b, N), N);
  }
}

}  // namespace

void aft_bias_row_max(float* row_max, const float* w, const AftBand& band, int64_t N, cudaStream_t stream) {
  if (band.heads * N == 0) return;
  row_max_kernel<<<blocks_for(band.heads * N), kThreads, 0, stream>>>(row_max, w, band, N);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_band_weights(float* aband, float* coef, const float* w, const float* row_max, const AftBand& band, int64_t N,
                      cudaStream_t stream) {
  const int64_t n = band.heads * N * std::max<int64_t>(band.width, 1);
  if (n == 0) return;
  band_weights_kernel<<<blocks_for(n), kThreads, 0, stream>>>(aband, coef, w, row_max, band, N);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_dense_weights(float* a, const float* w, const float* row_max, const AftBand& band, int64_t N,
                       cudaStream_t stream) {
  if (N == 0) return;
  dense_weights_kernel<<<blocks_for(N * N), kThreads, 0, stream>>>(a, w, row_max, band, N);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_key_weights(float* x, const float* k, const float* v, const int32_t* lengths, int64_t B, int64_t N, int64_t D,
                     cudaStream_t stream) {
  if (B * N * D == 0) return;
  key_weights_kernel<<<blocks_for(B * D), kThreads, 0, stream>>>(x, k, v, lengths, B, N, D);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_dense_matmul(float* out, const float* a, const float* in, int64_t B, int64_t N, int64_t D, bool transposed,
                      bool /*causal*/, cudaStream_t stream) {
  const int64_t C = 2 * D;
  gemm_strided_batched(transposed, false, N, C, N, 1.f, a, N, 0, in, C, N * C, 0.f, out, C, N * C, B, false, stream);
}

int64_t aft_band_scan_elems(int64_t B, int64_t N, int64_t D) { return 2 * B * (N + 1) * 2 * D; }

void aft_band_matmul(float* out, float* scan, const float* in, const float* aband, const float* coef,
                     const AftBand& band, int64_t B, int64_t N, int64_t D, bool transposed, cudaStream_t stream) {
  if (B * N * D == 0) return;
  float* prefix = scan;
  float* suffix = scan + B * (N + 1) * 2 * D;
  band_scan_kernel<<<blocks_for(B * 2 * D), kThreads, 0, stream>>>(prefix, suffix, in, transposed ? coef : nullptr,
                                                                   band, B, N, D);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  band_apply_kernel<<<blocks_for(B * N * 2 * D), kThreads, 0, stream>>>(out, prefix, suffix, in, aband, coef, band, B,
                                                                        N, D, transposed);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_forward_finish(float* y, float* ybar, float* den, const float* q, const float* k, const float* v,
                        const float* nd, const float* w, const AftBand& band, const int32_t* lengths, int64_t B,
                        int64_t N, int64_t D, cudaStream_t stream) {
  if (B * N * D == 0) return;
  forward_finish_kernel<<<blocks_for(B * N * D), kThreads, 0, stream>>>(y, ybar, den, q, k, v, nd, w, band, lengths, B,
                                                                        N, D);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_backward_prep(float* g, float* dq, const float* dy, const float* q, const float* ybar, const float* den,
                       const int32_t* lengths, int64_t B, int64_t N, int64_t D, cudaStream_t stream) {
  if (B * N * D == 0) return;
  backward_prep_kernel<<<blocks_for(B * N * D), kThreads, 0, stream>>>(g, dq, dy, q, ybar, den, lengths, B, N, D);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_backward_keys(float* dk, float* dv, const float* h, const float* x, const float* v, int64_t B, int64_t N,
                       int64_t D, cudaStream_t stream) {
  if (B * N * D == 0) return;
  backward_keys_kernel<<<blocks_for(B * N * D), kThreads, 0, stream>>>(dk, dv, h, x, v, B, N, D);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_bias_outer(float* da, const float* g, const float* x, int64_t B, int64_t N, int64_t D, bool /*causal*/,
                    cudaStream_t stream) {
  const int64_t C = 2 * D;
  // One GEMM per sample accumulating into dA (cuBLAS runs batches concurrently, so no overlapping batched call).
  for (int64_t b = 0; b < B; ++b)
    gemm_strided_batched(false, true, N, N, C, 1.f, g + b * N * C, C, 0, x + b * N * C, C, 0, b == 0 ? 0.f : 1.f, da, N,
                         0, 1, false, stream);
}

void aft_band_bias_grad(float* dw, const AftBiasLayout& dw_layout, const float* g, const float* x, const float* aband,
                        const AftBand& band, int64_t B, int64_t N, int64_t D, cudaStream_t stream) {
  const int64_t warps = band.heads * N * band.width;
  if (warps == 0) return;
  band_bias_grad_kernel<<<blocks_for(warps * 32), kThreads, 0, stream>>>(dw, dw_layout, g, x, aband, band, B, N, D);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_dense_bias_grad(float* dw, const AftBiasLayout& dw_layout, const float* da, const float* a,
                         const AftBand& band, int64_t N, cudaStream_t stream) {
  if (N * band.width == 0) return;
  dense_bias_grad_kernel<<<blocks_for(N * band.width), kThreads, 0, stream>>>(dw, dw_layout, da, a, band, N);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_fallback_backward(float* dk, float* dv, float* dw, const AftBiasLayout& dw_layout, const float* dy,
                           const float* q, const float* k, const float* v, const float* ybar, const float* den,
                           const float* w, const AftBand& band, const int32_t* lengths, int64_t B, int64_t N, int64_t D,
                           cudaStream_t stream) {
  if (B * N * D == 0) return;
  fallback_backward_kernel<<<blocks_for(B * D), kThreads, 0, stream>>>(dk, dv, dw, dw_layout, dy, q, k, v, ybar, den, w,
                                                                       band, lengths, B, N, D);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_band_product(float* out, const float* u, const float* vp, int64_t N, int64_t R, int64_t lo, int64_t W,
                      cudaStream_t stream) {
  if (N * W == 0) return;
  band_product_kernel<<<blocks_for(N * W), kThreads, 0, stream>>>(out, u, vp, N, R, lo, W);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_band_product_backward(float* du, float* dvp, const float* g, const float* u, const float* vp, int64_t N,
                               int64_t R, int64_t lo, int64_t W, cudaStream_t stream) {
  if (N * R == 0) return;
  band_product_backward_kernel<<<blocks_for(2 * N * R), kThreads, 0, stream>>>(du, dvp, g, u, vp, N, R, lo, W);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_simple_scan(float* y, float* ybar, float* run_max, float* run_den, const float* q, const float* k,
                     const float* v, const int32_t* lengths, int64_t B, int64_t N, int64_t D, cudaStream_t stream) {
  if (B * N * D == 0) return;
  simple_scan_kernel<<<blocks_for(B * D), kThreads, 0, stream>>>(y, ybar, run_max, run_den, q, k, v, lengths, B, N, D);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void aft_simple_scan_backward(float* dq, float* dk, float* dv, const float* dy, const float* q, const float* k,
                              const float* v, const float* ybar, const float* run_max, const float* run_den,
                              const int32_t* lengths, int64_t B, int64_t N, int64_t D, cudaStream_t stream) {
  if (B * N * D == 0) return;
  simple_scan_backward_kernel<<<blocks_for(B * D), kThreads, 0, stream>>>(dq, dk, dv, dy, q, k, v, ybar, run_max,
                                                                          run_den, lengths, B, N, D);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace mixgrad::kernels::cuda
