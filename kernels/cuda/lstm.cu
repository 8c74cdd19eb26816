// LSTM recurrence on CUDA: per step a cuBLAS GEMM over the batch and one pointwise kernel (a thread per (b, j)),
// the cell formula shared with the CPU through kernels/lstm_math.h. Kernels first, launchers after.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/lstm.h"
#include "kernels/lstm_math.h"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = int64_t{1} << 20;

int grid_for(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min(kMaxGrid, (n + kThreads - 1) / kThreads)));
}

__global__ void forward_step_kernel(float* gates, float* y, float* cell, float* h_prev, float* h_state, float* c_state,
                                    const float* rec, const int32_t* lengths, int64_t B, int64_t L, int64_t H,
                                    int64_t dirs, int64_t dir, int64_t t) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < B * H;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = k / H, j = k % H;
    const LstmStep s = lstm_step(lengths, b, L, t, dir);
    float* g = gates + (b * L + s.pos) * dirs * 4 * H + dir * 4 * H;
    const int64_t o = (b * L + s.pos) * dirs * H + dir * H + j;
    if (!s.valid) {
      for (int q = 0; q < 4; ++q) g[q * H + j] = 0.0f;
      y[o] = cell[o] = h_prev[o] = 0.0f;
      continue;
    }
    const float* r = rec + b * 4 * H;
    float a[4], act[4], c, h;
    for (int q = 0; q < 4; ++q) a[q] = g[q * H + j] + r[q * H + j];
    lstm_cell_forward(a, c_state[k], act, c, h);
    for (int q = 0; q < 4; ++q) g[q * H + j] = act[q];
    h_prev[o] = h_state[k];
    cell[o] = c;
    y[o] = h;
    c_state[k] = c;
    h_state[k] = h;
  }
}

__global__ void backward_step_kernel(float* dgates, float* dstep, const float* dh_rec, float* dc_state, const float* dy,
                                     const float* dh_n, const float* gates, const float* cell, const int32_t* lengths,
                                     int64_t B, int64_t L, int64_t H, int64_t dirs, int64_t dir, int64_t t) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < B * H;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = k / H, j = k % H;
    const LstmStep s = lstm_step(lengths, b, L, t, dir);
    float* dg = dgates + (b * L + s.pos) * dirs * 4 * H + dir * 4 * H;
    float* ds = dstep + b * 4 * H;
    if (!s.valid) {
      for (int q = 0; q < 4; ++q) dg[q * H + j] = ds[q * H + j] = 0.0f;
      continue;
    }
    const bool first = t + 1 == s.len;
    const float* g = gates + (b * L + s.pos) * dirs * 4 * H + dir * 4 * H;
    const int64_t o = (b * L + s.pos) * dirs * H + dir * H + j;
    const float dh = (first ? dh_n[k] : dh_rec[k]) + dy[o];
    const float dc_next = first ? 0.0f : dc_state[k];
    const float c_prev = s.prev < 0 ? 0.0f : cell[(b * L + s.prev) * dirs * H + dir * H + j];
    float act[4], da[4], dc_prev;
    for (int q = 0; q < 4; ++q) act[q] = g[q * H + j];
    lstm_cell_backward(act, cell[o], c_prev, dh, dc_next, da, dc_prev);
    for (int q = 0; q < 4; ++q) dg[q * H + j] = ds[q * H + j] = da[q];
    dc_state[k] = dc_prev;
  }
}

__global__ void zero_padding_kernel(float* x, const int32_t* lengths, int64_t B, int64_t L, int64_t D) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < B * L * D;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t bt = k / D, b = bt / L, t = bt % L;
    if (t >= static_cast<int64_t>(lengths[b])) x[k] = 0.0f;
  }
}

}  // namespace

int64_t lstm_work_size(int64_t B, int64_t H) { return 6 * B * H; }

void lstm_forward(float* gates, float* y, float* cell, float* h_prev, float* h_n, const float* w_hh,
                  const int32_t* lengths, int64_t B, int64_t L, int64_t H, int64_t dirs, int64_t dir, float* work,
                  cudaStream_t stream) {
  if (B == 0 || L == 0 || H == 0) return;
  float* c_state = work;
  float* rec = work + B * H;
  MIXGRAD_CUDA_CHECK(cudaMemsetAsync(h_n, 0, sizeof(float) * B * H, stream));
  MIXGRAD_CUDA_CHECK(cudaMemsetAsync(c_state, 0, sizeof(float) * B * H, stream));
  for (int64_t t = 0; t < L; ++t) {
    gemm_strided_batched(false, true, B, 4 * H, H, 1.0f, h_n, H, 0, w_hh, H, 0, 0.0f, rec, 4 * H, 0, 1, false, stream);
    forward_step_kernel<<<grid_for(B * H), kThreads, 0, stream>>>(gates, y, cell, h_prev, h_n, c_state, rec, lengths, B,
                                                                  L, H, dirs, dir, t);
    MIXGRAD_CUDA_LAUNCH_CHECK();
  }
}

void lstm_backward(float* dgates, const float* dy, const float* dh_n, const float* gates, const float* cell,
                   const float* w_hh, const int32_t* lengths, int64_t B, int64_t L, int64_t H, int64_t dirs,
                   int64_t dir, float* work, cudaStream_t stream) {
  if (B == 0 || L == 0 || H == 0) return;
  float* dh_rec = work;
  float* dc_state = work + B * H;
  float* dstep = work + 2 * B * H;
  MIXGRAD_CUDA_CHECK(cudaMemsetAsync(dh_rec, 0, sizeof(float) * 2 * B * H, stream));
  for (int64_t t = L - 1; t >= 0; --t) {
    backward_step_kernel<<<grid_for(B * H), kThreads, 0, stream>>>(dgates, dstep, dh_rec, dc_state, dy, dh_n, gates,
                                                                   cell, lengths, B, L, H, dirs, dir, t);
    MIXGRAD_CUDA_LAUNCH_CHECK();
    gemm_strided_batched(false, false, B, H, 4 * H, 1.0f, dstep, 4 * H, 0, w_hh, H, 0, 0.0f, dh_rec, H, 0, 1, false,
                         stream);
  }
}

void lstm_zero_padding(float* x, const int32_t* lengths, int64_t B, int64_t L, int64_t D, cudaStream_t stream) {
  if (!lengths || B * L * D == 0) return;
  zero_padding_kernel<<<grid_for(B * L * D), kThreads, 0, stream>>>(x, lengths, B, L, D);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace mixgrad::kernels::cuda
