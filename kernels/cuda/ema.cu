// CUDA kernels of the damped multi-dimensional EMA (MEGA, specs/lra.md §6.2). Paths (chosen by the engine op):
// the scan runs when the kernel spans the whole sequence (truncation 0 or >= L), where it is exact, in O(L·ndim)
// per channel; the direct convolution with the materialised taps runs when truncation < L (the scan would add taps
// the truncated kernel lacks), in O(L·k). Neither forms [d, L, L]. Full rationale: kernels/cpu/ema.h.
// Thread layout: kernels/cuda/ema.h. Kernels first, launchers after.
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/ema.h"
#include "kernels/cuda/reduce_utils.cuh"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__global__ void coefficients_kernel(float* coef, float* decay, const float* delta, const float* alpha,
                                    const float* beta, const float* gamma, int64_t count, float scale) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) ema_coef(delta[i], alpha[i], beta[i], gamma[i], scale, coef[i], decay[i]);
}

__global__ void coefficients_backward_kernel(float* ddelta, float* dalpha, float* dbeta, float* dgamma,
                                             const float* dcoef, const float* ddecay, const float* delta,
                                             const float* alpha, const float* beta, const float* gamma, int64_t count,
                                             float scale) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count)
    ema_coef_backward(dcoef[i], ddecay[i], delta[i], alpha[i], beta[i], gamma[i], scale, ddelta[i], dalpha[i], dbeta[i],
                      dgamma[i]);
}

__global__ void taps_kernel(float* kernel, const float* coef, const float* decay, int64_t rows, int64_t ndim,
                            int64_t k) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * k) return;
  const int64_t r = i / k, l = i % k;
  float acc = 0.f;
  for (int64_t h = 0; h < ndim; ++h) acc += coef[r * ndim + h] * ema_pow(decay[r * ndim + h], l);
  kernel[i] = acc;
}

// One block per (row, n): dcoef = Σ_l dK·q^l, ddecay = coef·Σ_l dK·l·q^(l−1).
__global__ void kernel_backward_kernel(float* dcoef, float* ddecay, const float* dkernel, const float* coef,
                                       const float* decay, int64_t ndim, int64_t k) {
  __shared__ float smem[32];
  const int64_t rh = blockIdx.x, r = rh / ndim;
  const float q = decay[rh];
  float dc = 0.f, dq = 0.f;
  for (int64_t l = threadIdx.x; l < k; l += blockDim.x) {
    const float g = dkernel[r * k + l];
    dc += g * ema_pow(q, l);
    if (l > 0) dq += g * float(l) * ema_pow(q, l - 1);
  }
  dc = block_sum(dc, smem);
  dq = block_sum(dq, smem);
  if (threadIdx.x == 0) {
    dcoef[rh] = dc;
    ddecay[rh] = dq * coef[rh];
  }
}

// One thread per output element (b, t, j), channels fastest.
__global__ void conv_forward_kernel(float* out, float* pre, const float* x, const int32_t* lengths, const float* kernel,
                                    const float* omega, EmaSizes s) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t D = s.channels, L = s.length, k = s.kernel_length;
  if (i >= s.batch * L * D) return;
  const int64_t j = i % D, t = (i / D) % L, b = i / (D * L);
  const int64_t n = ema_valid_length(lengths, b, L);
  if (t >= n) {
    pre[i] = 0.f;
    out[i] = 0.f;
    return;
  }
  const float* kf = kernel + j * k;
  float acc = 0.f;
  const int64_t mf = t < k - 1 ? t : k - 1;
  for (int64_t m = 0; m <= mf; ++m) acc += kf[m] * x[i - m * D];
  if (s.bidirectional) {
    const float* kb = kernel + (D + j) * k;
    const int64_t mb = n - 1 - t < k - 1 ? n - 1 - t : k - 1;
    for (int64_t m = 0; m <= mb; ++m) acc += kb[m] * x[i + m * D];
  }
  const float z = acc + omega[j] * x[i];
  pre[i] = z;
  out[i] = ema_silu(z);
}

// One direction's scan for one (b, j) into y (added): states in registers (H <= HMAX; lanes h >= H have coef 0).
template <int HMAX>
__device__ void scan_direction(float* y, const float* x, const float* coef, const float* decay, int64_t H, int64_t n,
                               int64_t D, bool reverse, bool accumulate) {
  float c[HMAX], q[HMAX], st[HMAX];
#pragma unroll
  for (int h = 0; h < HMAX; ++h) {
    c[h] = h < H ? coef[h] : 0.f;
    q[h] = h < H ? decay[h] : 0.f;
    st[h] = 0.f;
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = reverse ? n - 1 - i : i;
    const float xv = x[t * D];
    float acc = 0.f;
#pragma unroll
    for (int h = 0; h < HMAX; ++h) {
      st[h] = q[h] * st[h] + xv;
      acc += c[h] * st[h];
    }
    y[t * D] = accumulate ? y[t * D] + acc : acc;
  }
}

// One thread per (b, j): pre holds y after the scans, then pre/out are finalised.
template <int HMAX>
__global__ void scan_forward_kernel(float* out, float* pre, const float* x, const int32_t* lengths, const float* coef,
                                    const float* decay, const float* omega, EmaSizes s) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t D = s.channels, L = s.length, H = s.ndim;
  if (i >= s.batch * D) return;
  const int64_t j = i % D, b = i / D;
  const int64_t n = ema_valid_length(lengths, b, L);
  const int64_t base = b * L * D + j;
  scan_direction<HMAX>(pre + base, x + base, coef + j * H, decay + j * H, H, n, D, false, false);
  if (s.bidirectional)
    scan_direction<HMAX>(pre + base, x + base, coef + (D + j) * H, decay + (D + j) * H, H, n, D, true, true);
  const float w = omega[j];
  for (int64_t t = 0; t < L; ++t) {
    const int64_t e = base + t * D;
    const float z = t < n ? pre[e] + w * x[e] : 0.f;
    pre[e] = z;
    out[e] = t < n ? ema_silu(z) : 0.f;
  }
}

__global__ void pre_grad_kernel(float* dpre, const float* dout, const float* pre, const int32_t* lengths, EmaSizes s) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t D = s.channels, L = s.length;
  if (i >= s.batch * L * D) return;
  const int64_t t = (i / D) % L, b = i / (D * L);
  dpre[i] = t < ema_valid_length(lengths, b, L) ? dout[i] * ema_silu_grad(pre[i]) : 0.f;
}

// One block per channel: domega[j] = Σ_{b, t} dpre·x (dpre is 0 on padded rows).
__global__ void omega_grad_kernel(float* domega, const float* dpre, const float* x, EmaSizes s) {
  __shared__ float smem[32];
  const int64_t j = blockIdx.x, D = s.channels, rows = s.batch * s.length;
  float acc = 0.f;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) acc += dpre[r * D + j] * x[r * D + j];
  acc = block_sum(acc, smem);
  if (threadIdx.x == 0) domega[j] = acc;
}

// dx = omega·dz + transposed convolution (Kf taps look ahead, Kb taps look back); 0 on padded rows.
__global__ void conv_dx_kernel(float* dx, const float* dpre, const int32_t* lengths, const float* kernel,
                               const float* omega, EmaSizes s) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t D = s.channels, L = s.length, k = s.kernel_length;
  if (i >= s.batch * L * D) return;
  const int64_t j = i % D, t = (i / D) % L, b = i / (D * L);
  const int64_t n = ema_valid_length(lengths, b, L);
  if (t >= n) {
    dx[i] = 0.f;
    return;
  }
  float acc = omega[j] * dpre[i];
  const float* kf = kernel + j * k;
  const int64_t mf = n - 1 - t < k - 1 ? n - 1 - t : k - 1;
  for (int64_t m = 0; m <= mf; ++m) acc += kf[m] * dpre[i + m * D];
  if (s.bidirectional) {
    const float* kb = kernel + (D + j) * k;
    const int64_t mb = t < k - 1 ? t : k - 1;
    for (int64_t m = 0; m <= mb; ++m) acc += kb[m] * dpre[i - m * D];
  }
  dx[i] = acc;
}

// One block per (row, tap m): dKf[j, m] = Σ_{b, t} dz[t]·x̃[t − m], dKb[j, m] = Σ_{b, t} x̃[t]·dz[t − m].
__global__ void conv_dtaps_kernel(float* dkernel, const float* dpre, const float* x, const int32_t* lengths,
                                  EmaSizes s) {
  __shared__ float smem[32];
  const int64_t D = s.channels, L = s.length, k = s.kernel_length;
  const int64_t r = blockIdx.x / k, m = blockIdx.x % k;
  const bool backward_row = r >= D;
  const int64_t j = backward_row ? r - D : r;
  float acc = 0.f;
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t n = ema_valid_length(lengths, b, L);
    const float* zb = dpre + b * L * D + j;
    const float* xb = x + b * L * D + j;
    for (int64_t t = m + threadIdx.x; t < n; t += blockDim.x)
      acc += backward_row ? xb[t * D] * zb[(t - m) * D] : zb[t * D] * xb[(t - m) * D];
  }
  acc = block_sum(acc, smem);
  if (threadIdx.x == 0) dkernel[blockIdx.x] = acc;
}

// Scan backward of one direction for one (b, j), as scan_direction_backward in kernels/cpu/ema.cpp: dx (added) from
// the adjoint running against the direction; per-sample dcoef/ddecay partials from forward-mode scans.
template <int HMAX>
__device__ void scan_direction_backward(float* dx, float* part_coef, float* part_decay, const float* dz, const float* x,
                                        const float* coef, const float* decay, int64_t H, int64_t n, int64_t D,
                                        bool reverse) {
  float c[HMAX], q[HMAX], a[HMAX], g[HMAX], dc[HMAX], dq[HMAX];
#pragma unroll
  for (int h = 0; h < HMAX; ++h) {
    c[h] = h < H ? coef[h] : 0.f;
    q[h] = h < H ? decay[h] : 0.f;
    a[h] = g[h] = dc[h] = dq[h] = 0.f;
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = reverse ? i : n - 1 - i;
    const float zv = dz[t * D];
    float acc = 0.f;
#pragma unroll
    for (int h = 0; h < HMAX; ++h) {
      a[h] = q[h] * a[h] + zv;
      acc += c[h] * a[h];
    }
    dx[t * D] += acc;
  }
#pragma unroll
  for (int h = 0; h < HMAX; ++h) a[h] = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = reverse ? n - 1 - i : i;
    const float zv = dz[t * D], xv = x[t * D];
#pragma unroll
    for (int h = 0; h < HMAX; ++h) {
      g[h] = a[h] + q[h] * g[h];
      a[h] = q[h] * a[h] + xv;
      dc[h] += zv * a[h];
      dq[h] += zv * g[h];
    }
  }
#pragma unroll
  for (int h = 0; h < HMAX; ++h) {
    if (h < H) {
      part_coef[h] = dc[h];
      part_decay[h] = dq[h] * c[h];
    }
  }
}

template <int HMAX>
__global__ void scan_backward_kernel(float* dx, float* partial, const float* dpre, const float* x,
                                     const int32_t* lengths, const float* coef, const float* decay, const float* omega,
                                     EmaSizes s) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t D = s.channels, L = s.length, H = s.ndim, R = s.rows();
  if (i >= s.batch * D) return;
  const int64_t j = i % D, b = i / D;
  const int64_t n = ema_valid_length(lengths, b, L);
  const int64_t base = b * L * D + j;
  const float w = omega[j];
  for (int64_t t = 0; t < L; ++t) dx[base + t * D] = t < n ? w * dpre[base + t * D] : 0.f;
  float* part_coef = partial;
  float* part_decay = partial + s.batch * R * H;
  const int64_t rf = (b * R + j) * H;
  scan_direction_backward<HMAX>(dx + base, part_coef + rf, part_decay + rf, dpre + base, x + base, coef + j * H,
                                decay + j * H, H, n, D, false);
  if (s.bidirectional) {
    const int64_t rb = (b * R + D + j) * H;
    scan_direction_backward<HMAX>(dx + base, part_coef + rb, part_decay + rb, dpre + base, x + base, coef + (D + j) * H,
                                  decay + (D + j) * H, H, n, D, true);
  }
}

// dcoef/ddecay = Σ_b partials, in sample order (as the CPU).
__global__ void reduce_partials_kernel(float* dcoef, float* ddecay, const float* partial, int64_t batch,
                                       int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  float c = 0.f, q = 0.f;
  for (int64_t b = 0; b < batch; ++b) {
    c += partial[b * count + i];
    q += partial[(batch + b) * count + i];
  }
  dcoef[i] = c;
  ddecay[i] = q;
}

// Calls f.template operator()<HMAX>() with the smallest supported register budget HMAX >= ndim.
template <class F>
void dispatch_ndim(const char* op, int64_t ndim, F&& f) {
  if (ndim <= 4) return f.template operator()<4>();
  if (ndim <= 8) return f.template operator()<8>();
  if (ndim <= 16) return f.template operator()<16>();
  if (ndim <= 32) return f.template operator()<32>();
  if (ndim <= kEmaMaxNdim) return f.template operator()<64>();
  throw std::invalid_argument(std::string(op) + ": ndim = " + std::to_string(ndim) + " is above the CUDA limit of " +
                              std::to_string(kEmaMaxNdim));
}

float inv_sqrt_ndim(int64_t ndim) { return 1.f / sqrtf(float(ndim)); }

}  // namespace

void ema_coefficients(float* coef, float* decay, const float* delta, const float* alpha, const float* beta,
                      const float* gamma, int64_t rows, int64_t ndim, cudaStream_t stream) {
  const int64_t count = rows * ndim;
  if (count == 0) return;
  coefficients_kernel<<<blocks_for(count), kThreads, 0, stream>>>(coef, decay, delta, alpha, beta, gamma, count,
                                                                  inv_sqrt_ndim(ndim));
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void ema_coefficients_backward(float* ddelta, float* dalpha, float* dbeta, float* dgamma, const float* dcoef,
                               const float* ddecay, const float* delta, const float* alpha, const float* beta,
                               const float* gamma, int64_t rows, int64_t ndim, cudaStream_t stream) {
  const int64_t count = rows * ndim;
  if (count == 0) return;
  coefficients_backward_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
      ddelta, dalpha, dbeta, dgamma, dcoef, ddecay, delta, alpha, beta, gamma, count, inv_sqrt_ndim(ndim));
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void ema_kernel(float* kernel, const float* coef, const float* decay, int64_t rows, int64_t ndim, int64_t k,
                cudaStream_t stream) {
  if (rows * k == 0) return;
  taps_kernel<<<blocks_for(rows * k), kThreads, 0, stream>>>(kernel, coef, decay, rows, ndim, k);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void ema_kernel_backward(float* dcoef, float* ddecay, const float* dkernel, const float* coef, const float* decay,
                         int64_t rows, int64_t ndim, int64_t k, cudaStream_t stream) {
  if (rows * ndim == 0) return;
  kernel_backward_kernel<<<static_cast<unsigned>(rows * ndim), kThreads, 0, stream>>>(dcoef, ddecay, dkernel, coef,
                                                                                      decay, ndim, k);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void ema_conv_forward(float* out, float* pre, const float* x, const int32_t* lengths, const float* kernel,
                      const float* omega, const EmaSizes& s, cudaStream_t stream) {
  const int64_t count = s.batch * s.length * s.channels;
  if (count == 0) return;
  conv_forward_kernel<<<blocks_for(count), kThreads, 0, stream>>>(out, pre, x, lengths, kernel, omega, s);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void ema_scan_forward(float* out, float* pre, const float* x, const int32_t* lengths, const float* coef,
                      const float* decay, const float* omega, const EmaSizes& s, cudaStream_t stream) {
  const int64_t count = s.batch * s.channels;
  if (count == 0) return;
  dispatch_ndim("ema_scan_forward", s.ndim, [&]<int HMAX>() {
    scan_forward_kernel<HMAX><<<blocks_for(count), kThreads, 0, stream>>>(out, pre, x, lengths, coef, decay, omega, s);
  });
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void ema_pre_grad(float* dpre, float* domega, const float* dout, const float* pre, const float* x,
                  const int32_t* lengths, const EmaSizes& s, cudaStream_t stream) {
  const int64_t count = s.batch * s.length * s.channels;
  if (count == 0) return;
  pre_grad_kernel<<<blocks_for(count), kThreads, 0, stream>>>(dpre, dout, pre, lengths, s);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  omega_grad_kernel<<<static_cast<unsigned>(s.channels), kThreads, 0, stream>>>(domega, dpre, x, s);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void ema_conv_backward(float* dx, float* dkernel, const float* dpre, const float* x, const int32_t* lengths,
                       const float* kernel, const float* omega, const EmaSizes& s, cudaStream_t stream) {
  const int64_t count = s.batch * s.length * s.channels;
  if (count == 0) return;
  conv_dx_kernel<<<blocks_for(count), kThreads, 0, stream>>>(dx, dpre, lengths, kernel, omega, s);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  conv_dtaps_kernel<<<static_cast<unsigned>(s.rows() * s.kernel_length), kThreads, 0, stream>>>(dkernel, dpre, x,
                                                                                                lengths, s);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void ema_scan_backward(float* dx, float* dcoef, float* ddecay, float* partial, const float* dpre, const float* x,
                       const int32_t* lengths, const float* coef, const float* decay, const float* omega,
                       const EmaSizes& s, cudaStream_t stream) {
  const int64_t count = s.batch * s.channels;
  if (count == 0) return;
  dispatch_ndim("ema_scan_backward", s.ndim, [&]<int HMAX>() {
    scan_backward_kernel<HMAX>
        <<<blocks_for(count), kThreads, 0, stream>>>(dx, partial, dpre, x, lengths, coef, decay, omega, s);
  });
  MIXGRAD_CUDA_LAUNCH_CHECK();
  const int64_t params = s.rows() * s.ndim;
  reduce_partials_kernel<<<blocks_for(params), kThreads, 0, stream>>>(dcoef, ddecay, partial, s.batch, params);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace mixgrad::kernels::cuda
