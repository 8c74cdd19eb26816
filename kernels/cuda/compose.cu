// DCMHA Compose and the masked softmax on one chunk, CUDA float32 (the CPU reference: kernels/cpu/compose.cpp).
//
// Chunking (driven by engine/ops_compose.cpp, specs/mixers.md §3.6 Option A): queries are processed in chunks of
// `chunk` rows; a chunk's keys are the range its rows can see (all N for a global layer, [t0 − W + 1, t0 + tc) for a
// causal local window W). Per chunk the logits [B·H, tc, sc] come from one cuBLAS strided-batched GEMM, each Compose
// stage is one element-wise kernel (thread per (b, t, s), coalesced over s, a loop over the H heads at stride tc·sc),
// the softmax one block-per-row kernel, and P''·v one more GEMM. The backward recomputes the chunk and adds the
// chunk's contributions to dk, dv and the key-side weight gradients (beta = 1 GEMMs and += in the kernels, in chunk
// order on one stream: deterministic).
//
// Memory: nothing of size T·S survives a call (the backward keeps q, k, v and the dynamic weights only). A chunk
// buffer holds B·H·tc·sc floats: 2 in the forward, 4 in the backward, plus this file's backward workspace of
// (4R + [static] H)·B·tc·sc floats. Global layers: O(B·H·chunk·N) instead of O(B·H·N²); local: O(B·H·chunk·(chunk+W)).
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/compose.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/reduce_utils.cuh"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t q_slot(ComposeStage s) { return 2 * int64_t(s); }
__device__ __forceinline__ int64_t k_slot(ComposeStage s) { return 2 * int64_t(s) + 1; }

__global__ void __launch_bounds__(kThreads)
    compose_forward_kernel(float* out, const float* a, const float* dyn, const float* ws, ComposeChunk c,
                           ComposeStage stage) {
  const int H = int(c.H), R = int(c.R);
  const int64_t plane = c.tc * c.sc, points = c.B * plane;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < points; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = p / plane, ij = p % plane, i = ij / c.sc, j = ij % c.sc;
    const int64_t t = c.t0 + i, s = c.s0 + j, base = b * c.H * plane + ij;
    if (!compose_visible(c, compose_key_length(c, b), t, s)) {
      for (int n = 0; n < H; ++n) out[base + n * plane] = 0.f;
      continue;
    }
    float av[kComposeMaxHeads], ov[kComposeMaxHeads];
    for (int n = 0; n < H; ++n) av[n] = a[base + n * plane];
    compose_point(ov, av, dyn + compose_dyn_offset(c, q_slot(stage), b, t),
                  dyn + compose_dyn_offset(c, k_slot(stage), b, s), ws, H, R);
    for (int n = 0; n < H; ++n) out[base + n * plane] = ov[n];
  }
}

// da, the per-point factors f[k][b, i, j] (k = 0..R-1 hq, R..2R-1 hk, 2R.. uq, 3R.. uk; 0 at invisible points) and,
// when gm is given, g masked to the visible points.
__global__ void __launch_bounds__(kThreads)
    compose_backward_point_kernel(float* da, float* f, float* gm, const float* g, const float* a, const float* dyn,
                                  const float* ws, ComposeChunk c, ComposeStage stage) {
  const int H = int(c.H), R = int(c.R);
  const int64_t plane = c.tc * c.sc, points = c.B * plane;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < points; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = p / plane, ij = p % plane, i = ij / c.sc, j = ij % c.sc;
    const int64_t t = c.t0 + i, s = c.s0 + j, base = b * c.H * plane + ij;
    if (!compose_visible(c, compose_key_length(c, b), t, s)) {
      for (int n = 0; n < H; ++n) da[base + n * plane] = 0.f;
      for (int k = 0; k < 4 * R; ++k) f[k * points + p] = 0.f;
      if (gm)
        for (int n = 0; n < H; ++n) gm[base + n * plane] = 0.f;
      continue;
    }
    float av[kComposeMaxHeads], gv[kComposeMaxHeads], dv[kComposeMaxHeads];
    float hq[kComposeMaxRank], hk[kComposeMaxRank], uq[kComposeMaxRank], uk[kComposeMaxRank];
    for (int n = 0; n < H; ++n) av[n] = a[base + n * plane], gv[n] = g[base + n * plane];
    compose_point_backward(dv, hq, hk, uq, uk, av, gv, dyn + compose_dyn_offset(c, q_slot(stage), b, t),
                           dyn + compose_dyn_offset(c, k_slot(stage), b, s), ws, H, R);
    for (int n = 0; n < H; ++n) da[base + n * plane] = dv[n];
    for (int r = 0; r < R; ++r) {
      f[r * points + p] = hq[r];
      f[(R + r) * points + p] = hk[r];
      f[(2 * R + r) * points + p] = uq[r];
      f[(3 * R + r) * points + p] = uk[r];
    }
    if (gm)
      for (int n = 0; n < H; ++n) gm[base + n * plane] = gv[n];
  }
}

// Output o of one side's [2R + 1, H] weight gradient at one point (0 when invisible): side 0 = query (hq, uq),
// side 1 = key (hk, uk).
__device__ __forceinline__ float weight_grad_term(const float* g, const float* a, const float* f, const ComposeChunk& c,
                                                  int64_t points, int64_t p, int64_t base, int64_t plane, int o,
                                                  int side) {
  const int H = int(c.H), R = int(c.R);
  const int r = o / H, n = o % H;
  if (r < R) return a[base + n * plane] * f[((2 + side) * R + r) * points + p];      // ∂w1 = a_m·u_r
  if (r < 2 * R) return g[base + n * plane] * f[(side * R + (r - R)) * points + p];  // ∂w2 = g_n·h_r
  return g[base + n * plane] * a[base + n * plane];                                  // ∂dd = g_n·a_n
}

// Query side: block per chunk row (b, i), warp per output o, lanes over the row's keys (coalesced), warp sum.
__global__ void __launch_bounds__(kThreads)
    compose_backward_query_kernel(float* ddyn, const float* g, const float* a, const float* f, ComposeChunk c,
                                  ComposeStage stage) {
  const int W = int((2 * c.R + 1) * c.H), lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
  const int64_t plane = c.tc * c.sc, points = c.B * plane;
  for (int64_t row = blockIdx.x; row < c.B * c.tc; row += gridDim.x) {
    const int64_t b = row / c.tc, i = row % c.tc, t = c.t0 + i, len = compose_key_length(c, b);
    float* out = ddyn + compose_dyn_offset(c, q_slot(stage), b, t);
    for (int o = warp; o < W; o += nwarps) {
      float acc = 0.f;
      for (int64_t j = lane; j < c.sc; j += 32) {
        if (!compose_visible(c, len, t, c.s0 + j)) continue;
        const int64_t p = b * plane + i * c.sc + j;
        acc += weight_grad_term(g, a, f, c, points, p, b * c.H * plane + i * c.sc + j, plane, o, 0);
      }
      acc = warp_sum(acc);
      if (lane == 0) out[o] += acc;
    }
  }
}

// Key side: thread per (b, o, j), j fastest (coalesced), a loop over the chunk's rows in order.
__global__ void __launch_bounds__(kThreads)
    compose_backward_key_kernel(float* ddyn, const float* g, const float* a, const float* f, ComposeChunk c,
                                ComposeStage stage) {
  const int64_t W = (2 * c.R + 1) * c.H, plane = c.tc * c.sc, points = c.B * plane, total = c.B * W * c.sc;
  for (int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; x < total; x += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = x % c.sc, o = (x / c.sc) % W, b = x / (c.sc * W), s = c.s0 + j;
    const int64_t len = compose_key_length(c, b);
    float acc = 0.f;
    for (int64_t i = 0; i < c.tc; ++i) {
      if (!compose_visible(c, len, c.t0 + i, s)) continue;
      const int64_t p = b * plane + i * c.sc + j;
      acc += weight_grad_term(g, a, f, c, points, p, b * c.H * plane + i * c.sc + j, plane, int(o), 1);
    }
    ddyn[compose_dyn_offset(c, k_slot(stage), b, s) + o] += acc;
  }
}

__device__ __forceinline__ float block_max(float v, float* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  return warp_max(lane < nwarps ? smem[lane] : -INFINITY);
}

__global__ void __launch_bounds__(kThreads) masked_softmax_forward_kernel(float* p, const float* x, ComposeChunk c) {
  __shared__ float smem[32];
  for (int64_t row = blockIdx.x; row < c.B * c.H * c.tc; row += gridDim.x) {
    const int64_t b = row / (c.H * c.tc), t = c.t0 + row % c.tc, len = compose_key_length(c, b);
    const float* xr = x + row * c.sc;
    float* pr = p + row * c.sc;
    float m = -INFINITY;
    int any = 0;
    for (int64_t j = threadIdx.x; j < c.sc; j += blockDim.x)
      if (compose_visible(c, len, t, c.s0 + j)) m = fmaxf(m, xr[j]), any = 1;
    m = block_max(m, smem);
    const bool has_visible = __syncthreads_or(any) != 0;
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < c.sc; j += blockDim.x) {
      const float e = has_visible && compose_visible(c, len, t, c.s0 + j) ? expf(xr[j] - m) : 0.f;
      pr[j] = e;
      s += e;
    }
    s = block_sum(s, smem);
    const float inv = has_visible ? 1.f / s : 0.f;
    for (int64_t j = threadIdx.x; j < c.sc; j += blockDim.x) pr[j] *= inv;
    __syncthreads();
  }
}

__global__ void __launch_bounds__(kThreads)
    masked_softmax_backward_kernel(float* dx, const float* p, const float* dp, ComposeChunk c) {
  __shared__ float smem[32];
  for (int64_t row = blockIdx.x; row < c.B * c.H * c.tc; row += gridDim.x) {
    const int64_t b = row / (c.H * c.tc), t = c.t0 + row % c.tc, len = compose_key_length(c, b);
    const float *pr = p + row * c.sc, *dpr = dp + row * c.sc;
    float* dxr = dx + row * c.sc;
    float D = 0.f;
    for (int64_t j = threadIdx.x; j < c.sc; j += blockDim.x)
      if (compose_visible(c, len, t, c.s0 + j)) D += pr[j] * dpr[j];
    D = block_sum(D, smem);
    for (int64_t j = threadIdx.x; j < c.sc; j += blockDim.x)
      dxr[j] = compose_visible(c, len, t, c.s0 + j) ? pr[j] * (dpr[j] - D) : 0.f;
    __syncthreads();
  }
}

void check_chunk(const ComposeChunk& c, const char* op) {
  if (c.H < 1 || c.H > kComposeMaxHeads || c.R < 1 || c.R > kComposeMaxRank)
    throw std::invalid_argument(std::string(op) + ": H = " + std::to_string(c.H) + ", R = " + std::to_string(c.R) +
                                " (expected 1 <= H <= " + std::to_string(kComposeMaxHeads) +
                                ", 1 <= R <= " + std::to_string(kComposeMaxRank) + ")");
  if (c.t0 < 0 || c.s0 < 0 || c.t0 + c.tc > c.N || c.s0 + c.sc > c.N)
    throw std::invalid_argument(std::string(op) + ": chunk rows/keys outside [0, N)");
}

}  // namespace

void compose_forward(float* out, const float* a, const float* dyn, const float* ws, const ComposeChunk& c,
                     ComposeStage stage, cudaStream_t stream) {
  check_chunk(c, "compose_forward");
  const int64_t points = c.B * c.tc * c.sc;
  if (points == 0) return;
  compose_forward_kernel<<<grid_for(points, kThreads), kThreads, 0, stream>>>(out, a, dyn, ws, c, stage);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

size_t compose_backward_workspace_bytes(const ComposeChunk& c, bool has_ws) {
  const int64_t points = c.B * c.tc * c.sc;
  return size_t(4 * c.R * points + (has_ws ? c.H * points : 0)) * sizeof(float);
}

void compose_backward(float* da, float* ddyn, float* dws, const float* g, const float* a, const float* dyn,
                      const float* ws, const ComposeChunk& c, ComposeStage stage, void* workspace,
                      cudaStream_t stream) {
  check_chunk(c, "compose_backward");
  if ((ws == nullptr) != (dws == nullptr))
    throw std::invalid_argument("compose_backward: ws and dws must both be given or both be null");
  const int64_t plane = c.tc * c.sc, points = c.B * plane;
  if (points == 0) return;
  if (!workspace) throw std::invalid_argument("compose_backward: workspace is null");
  float* f = static_cast<float*>(workspace);
  float* gm = ws ? f + 4 * c.R * points : nullptr;
  compose_backward_point_kernel<<<grid_for(points, kThreads), kThreads, 0, stream>>>(da, f, gm, g, a, dyn, ws, c,
                                                                                     stage);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  compose_backward_query_kernel<<<unsigned(std::min<int64_t>(c.B * c.tc, kMaxGrid)), kThreads, 0, stream>>>(
      ddyn, g, a, f, c, stage);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  const int64_t key_threads = c.B * (2 * c.R + 1) * c.H * c.sc;
  compose_backward_key_kernel<<<grid_for(key_threads, kThreads), kThreads, 0, stream>>>(ddyn, g, a, f, c, stage);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  if (ws)  // ∂ws += Σ_b a_b·gm_bᵀ over the chunk's points, one sample after another (beta = 1, same stream).
    for (int64_t b = 0; b < c.B; ++b)
      gemm_strided_batched(false, true, c.H, c.H, plane, 1.f, a + b * c.H * plane, plane, 0, gm + b * c.H * plane,
                           plane, 0, 1.f, dws, c.H, 0, 1, /*allow_tf32=*/false, stream);
}

void masked_softmax_forward(float* p, const float* x, const ComposeChunk& c, cudaStream_t stream) {
  const int64_t rows = c.B * c.H * c.tc;
  if (rows == 0 || c.sc == 0) return;
  masked_softmax_forward_kernel<<<unsigned(std::min<int64_t>(rows, kMaxGrid)), kThreads, 0, stream>>>(p, x, c);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void masked_softmax_backward(float* dx, const float* p, const float* dp, const ComposeChunk& c, cudaStream_t stream) {
  const int64_t rows = c.B * c.H * c.tc;
  if (rows == 0 || c.sc == 0) return;
  masked_softmax_backward_kernel<<<unsigned(std::min<int64_t>(rows, kMaxGrid)), kThreads, 0, stream>>>(dx, p, dp, c);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace mixgrad::kernels::cuda
