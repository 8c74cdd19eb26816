// CSP forward/backward on CUDA: Design A (thread per (b, group, channel)) and Design B (shared-memory window per
// (b, channel tile, row band), falling back to A's direct loads per CTA when the tile's shift spread is too wide).
// Kernels first, launchers after.
#include "kernels/cuda/csp.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = int64_t{1} << 20;
// Design B tile: 32 channels (one warp lane each) × 8 row lanes; a band of 64 output rows; window budget of 192
// rows of shift spread (64 + 192 rows × 32 channels × 4 bytes = 32 KiB of shared memory).
constexpr int kTileC = 32;
constexpr int kRowLanes = 8;
constexpr int kBand = 64;
constexpr int kMaxSpread = 192;
constexpr int kWindow = kBand + kMaxSpread;

// Spec §5 order: NaN after every number, -0 == +0 (a < b is false for them); ties resolved by position below.
__device__ __forceinline__ bool csp_before(float a, float b) { return (!isnan(a) && isnan(b)) || a < b; }

// rank[k] for the first m (<= K) of u, stable; constant indices only so u and rank stay in registers.
template <int K>
__device__ __forceinline__ void group_ranks(const float (&u)[K], int m, int (&rank)[K]) {
#pragma unroll
  for (int k = 0; k < K; ++k) rank[k] = 0;
#pragma unroll
  for (int a = 0; a < K; ++a)
#pragma unroll
    for (int b = a + 1; b < K; ++b)
      if (b < m) {
        if (csp_before(u[b], u[a]))
          ++rank[a];
        else
          ++rank[b];
      }
}

// Source row of shifted-frame position j for a sample of valid length n and shift s (both < n, j < n).
__device__ __forceinline__ int64_t source_row(int64_t j, int64_t s, int64_t n) {
  const int64_t i = j - s;
  return i < 0 ? i + n : i;
}

// One group (rows [j0, j0 + K) of sample base, channel c) with m = valid members given its loaded values u and
// source rows src: forward writes y; backward gathers dy into dv at the source rows. Rows j0 + k for k >= m are
// padding (>= n): y and dv there are 0.
template <int K, bool kBackward>
__device__ __forceinline__ void finish_group(float* out, const float* dy, int64_t base, int64_t j0, int m, int64_t D,
                                             int64_t c, const float (&u)[K], const int64_t (&src)[K]) {
  int rank[K];
  group_ranks<K>(u, m, rank);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    if (k < m) {
      if constexpr (kBackward)
        out[base + src[k] * D + c] = dy[base + (j0 + rank[k]) * D + c];
      else
        out[base + (j0 + rank[k]) * D + c] = u[k];
    } else {
      out[base + (j0 + k) * D + c] = 0.0f;
    }
  }
}

// Design A: one thread per (b, g, c), c fastest.
template <int K, bool kBackward>
__global__ void csp_simple_kernel(float* out, const float* dy, const float* v, const int32_t* shifts,
                                  const int32_t* lengths, int64_t B, int64_t N, int64_t D) {
  const int64_t G = N / K, total = B * G * D;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = t % D, bg = t / D, g = bg % G, b = bg / G;
    const int64_t n = lengths ? static_cast<int64_t>(lengths[b]) : N;
    const int64_t j0 = g * K, base = b * N * D;
    const int m = static_cast<int>(max(int64_t{0}, min(int64_t{K}, n - j0)));
    const int64_t s = m > 0 ? static_cast<int64_t>(shifts[c]) % n : 0;
    float u[K];
    int64_t src[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      src[k] = 0;
      u[k] = 0.0f;
      if (k < m) {
        src[k] = source_row(j0 + k, s, n);
        u[k] = v[base + src[k] * D + c];
      }
    }
    finish_group<K, kBackward>(out, dy, base, j0, m, D, c, u, src);
  }
}

// Design B: CTA (band, channel tile, b); threadIdx.x = channel lane, threadIdx.y = row lane.
template <int K, bool kBackward>
__global__ void __launch_bounds__(kTileC* kRowLanes) csp_tiled_kernel(float* out, const float* dy, const float* v,
                                                                      const int32_t* shifts, const int32_t* lengths,
                                                                      int64_t N, int64_t D) {
  __shared__ float window[kWindow][kTileC];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t b = blockIdx.z, j0 = static_cast<int64_t>(blockIdx.x) * kBand;
  const int64_t c = static_cast<int64_t>(blockIdx.y) * kTileC + tx;
  const bool channel_ok = c < D;
  const int64_t n = lengths ? static_cast<int64_t>(lengths[b]) : N;
  const int64_t base = b * N * D;
  const int band_rows = static_cast<int>(min(int64_t{kBand}, N - j0));             // rows of the tensor in the band
  const int valid_rows = static_cast<int>(max(int64_t{0}, min(int64_t{band_rows}, n - j0)));  // rows < n
  const int groups = band_rows / K;                                                // N % K == 0, j0 % K == 0
  const int64_t s = channel_ok && valid_rows > 0 ? static_cast<int64_t>(shifts[c]) % n : 0;

  // Shift spread over the tile's channels (every warp is one full tile row of lanes, so each reduces on its own).
  int64_t smin = channel_ok ? s : INT64_MAX, smax = channel_ok ? s : -1;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    smin = min(smin, __shfl_xor_sync(0xffffffffu, smin, o));
    smax = max(smax, __shfl_xor_sync(0xffffffffu, smax, o));
  }
  const bool tiled = valid_rows > 0 && smax - smin <= kMaxSpread;
  const int span = tiled ? valid_rows + static_cast<int>(smax - smin) : 0;  // window rows in use
  const int offset = static_cast<int>(smax - s);                           // window slot of shifted row j0 - this
  // Window slot w holds source row (j0 - smax + w) mod n.
  auto window_row = [&](int w) { return source_row(j0 + w, smax, n); };

  if (tiled && channel_ok)
    for (int w = ty; w < span; w += kRowLanes) window[w][tx] = v[base + window_row(w) * D + c];
  __syncthreads();

  for (int gl = ty; gl < groups; gl += kRowLanes) {
    if (!channel_ok) continue;
    const int t0 = gl * K;
    const int m = max(0, min(K, valid_rows - t0));
    float u[K];
    int64_t src[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      src[k] = 0;
      u[k] = 0.0f;
      if (k < m) {
        src[k] = source_row(j0 + t0 + k, s, n);
        u[k] = tiled ? window[t0 + k + offset][tx] : v[base + src[k] * D + c];
      }
    }
    if (kBackward && tiled) {
      // Gather dy into this channel's own window slots (disjoint from every other group's), written back below.
      int rank[K];
      group_ranks<K>(u, m, rank);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        if (k < m)
          window[t0 + k + offset][tx] = dy[base + (j0 + t0 + rank[k]) * D + c];
        else
          out[base + (j0 + t0 + k) * D + c] = 0.0f;
      }
    } else {
      finish_group<K, kBackward>(out, dy, base, j0 + t0, m, D, c, u, src);
    }
  }
  if constexpr (kBackward) {
    __syncthreads();
    // Write back the slots this channel owns: shifted rows [j0, j0 + valid_rows) ↔ slots [offset, offset + valid).
    if (tiled && channel_ok)
      for (int w = ty; w < span; w += kRowLanes)
        if (w >= offset && w < offset + valid_rows) out[base + window_row(w) * D + c] = window[w][tx];
  }
}

int64_t grid_for(int64_t work) { return std::max<int64_t>(1, std::min(kMaxGrid, (work + kThreads - 1) / kThreads)); }

template <int K, bool kBackward>
void launch(float* out, const float* dy, const float* v, const int32_t* shifts, const int32_t* lengths, int64_t B,
            int64_t N, int64_t D, cudaStream_t stream, CspDesign design) {
  const int64_t bands = (N + kBand - 1) / kBand, tiles = (D + kTileC - 1) / kTileC;
  const bool tiled_fits = bands <= INT32_MAX && tiles <= 65535 && B <= 65535;
  const bool use_tiled = tiled_fits && (design == CspDesign::tiled || (design == CspDesign::automatic && D >= 16));
  if (use_tiled) {
    const dim3 grid(static_cast<unsigned>(bands), static_cast<unsigned>(tiles), static_cast<unsigned>(B));
    const dim3 block(kTileC, kRowLanes);
    csp_tiled_kernel<K, kBackward><<<grid, block, 0, stream>>>(out, dy, v, shifts, lengths, N, D);
    MIXGRAD_CUDA_LAUNCH_CHECK();
  } else {
    csp_simple_kernel<K, kBackward><<<static_cast<unsigned>(grid_for(B * (N / K) * D)), kThreads, 0, stream>>>(
        out, dy, v, shifts, lengths, B, N, D);
    MIXGRAD_CUDA_LAUNCH_CHECK();
  }
}

template <bool kBackward>
void dispatch(const char* op, float* out, const float* dy, const float* v, const int32_t* shifts,
              const int32_t* lengths, int64_t B, int64_t N, int64_t D, int K, cudaStream_t stream, CspDesign design) {
  if (K != 2 && K != 4 && K != 8)
    throw std::invalid_argument(std::string(op) + ": K = " + std::to_string(K) + " is not supported (expected 2, 4 or 8)");
  if (B <= 0 || N <= 0 || D <= 0) return;
  switch (K) {
    case 2: return launch<2, kBackward>(out, dy, v, shifts, lengths, B, N, D, stream, design);
    case 4: return launch<4, kBackward>(out, dy, v, shifts, lengths, B, N, D, stream, design);
    default: return launch<8, kBackward>(out, dy, v, shifts, lengths, B, N, D, stream, design);
  }
}

}  // namespace

void csp_forward(float* y, const float* v, const int32_t* shifts, const int32_t* lengths, int64_t B, int64_t N,
                 int64_t D, int K, cudaStream_t stream, CspDesign design) {
  dispatch<false>("csp_forward", y, nullptr, v, shifts, lengths, B, N, D, K, stream, design);
}

void csp_backward(float* dv, const float* dy, const float* v, const int32_t* shifts, const int32_t* lengths,
                  int64_t B, int64_t N, int64_t D, int K, cudaStream_t stream, CspDesign design) {
  dispatch<true>("csp_backward", dv, dy, v, shifts, lengths, B, N, D, K, stream, design);
}

}  // namespace mixgrad::kernels::cuda
