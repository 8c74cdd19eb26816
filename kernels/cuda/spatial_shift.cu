// S2-MLPv2 spatial shifts and split-attention passes on CUDA: gathers with one thread per output element
// (grid-stride loops, at most two reads per element, no atomics), and the token reductions with one block per
// (sample, 32-channel tile) whose 8 rows of threads stride over the tokens. Kernels first, then the launchers.
#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/spatial_shift.h"

namespace mixgrad::kernels::cuda {
namespace {

using s2::S2Geometry;

constexpr int kThreads = 256;
constexpr int kTile = 32, kRows = 8;  // reductions: channels per block (one warp), token rows per block

int blocks_for(int64_t n) { return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

#define MIXGRAD_GRID_STRIDE(i, total)                                                        \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (total); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void shift_forward_kernel(float* y, const float* x, int64_t B, int64_t H, int64_t W, int64_t C,
                                     int variant) {
  const int64_t N = H * W;
  MIXGRAD_GRID_STRIDE(i, B * N * C) {
    const int64_t c = i % C, bp = i / C, b = bp / N, p = bp - b * N;
    const int64_t s = s2::grid_source(p, s2::quarter_shift(variant, s2::quarter_of(c, C)), H, W, N);
    y[i] = x[(b * N + s) * C + c];
  }
}

__global__ void shift_backward_kernel(float* dx, const float* dy, int64_t B, int64_t H, int64_t W, int64_t C,
                                      int variant) {
  const int64_t N = H * W;
  MIXGRAD_GRID_STRIDE(i, B * N * C) {
    const int64_t c = i % C, bp = i / C, b = bp / N, p = bp - b * N;
    int64_t r[2] = {0, 0};
    const int n = s2::grid_readers(p, s2::quarter_shift(variant, s2::quarter_of(c, C)), H, W, N, r);
    float s = 0.f;
    for (int k = 0; k < n; ++k) s += dy[(b * N + r[k]) * C + c];
    dx[i] = s;
  }
}

__global__ void branch_sum_backward_kernel(float* dz, const float* da, const int32_t* lengths, S2Geometry g) {
  const int64_t row = 3 * g.C;
  MIXGRAD_GRID_STRIDE(i, g.B * g.N * row) {
    const int64_t col = i % row, bp = i / row, b = bp / g.N, p = bp - b * g.N;
    const int k = static_cast<int>(col / g.C);
    const int64_t c = col - k * g.C;
    const int64_t n = s2::valid_tokens(lengths, b, g.N);
    float v = 0.f;
    if (p < n) {
      int64_t r[2] = {0, 0};
      v = da[b * g.C + c] * float(s2::reader_tokens(p, k, s2::quarter_of(c, g.C), g, s2::grid_present(n, g), r));
    }
    dz[i] = v;
  }
}

__global__ void combine_kernel(float* out, const float* z, const float* abar, const int32_t* lengths, S2Geometry g) {
  const int64_t row = 3 * g.C;
  MIXGRAD_GRID_STRIDE(i, g.B * g.N * g.C) {
    const int64_t c = i % g.C, bp = i / g.C, b = bp / g.N, p = bp - b * g.N;
    const int64_t n = s2::valid_tokens(lengths, b, g.N);
    float v = 0.f;
    if (p < n) {
      const int64_t ng = s2::grid_present(n, g);
      const int q = s2::quarter_of(c, g.C);
      const float* w = abar + b * 3 * g.C + c;
      const float x0 = z[(b * g.N + s2::source_token(p, 0, q, g, ng)) * row + c];
      const float x1 = z[(b * g.N + s2::source_token(p, 1, q, g, ng)) * row + g.C + c];
      const float x2 = z[bp * row + 2 * g.C + c];
      v = w[0] * x0 + w[g.C] * x1 + w[2 * g.C] * x2;
    }
    out[i] = v;
  }
}

__global__ void combine_dz_kernel(float* dz, const float* dout, const float* abar, const int32_t* lengths,
                                  S2Geometry g) {
  const int64_t row = 3 * g.C;
  MIXGRAD_GRID_STRIDE(i, g.B * g.N * row) {
    const int64_t col = i % row, bp = i / row, b = bp / g.N, p = bp - b * g.N;
    const int k = static_cast<int>(col / g.C);
    const int64_t c = col - k * g.C;
    const int64_t n = s2::valid_tokens(lengths, b, g.N);
    float v = 0.f;
    if (p < n) {
      int64_t r[2] = {0, 0};
      const int m = s2::reader_tokens(p, k, s2::quarter_of(c, g.C), g, s2::grid_present(n, g), r);
      float s = 0.f;
      for (int t = 0; t < m; ++t) s += dout[(b * g.N + r[t]) * g.C + c];
      v = s * abar[(b * 3 + k) * g.C + c];
    }
    dz[i] = v;
  }
}

// One block per (sample, 32-channel tile), tiles fastest; thread (x, y) sums tokens y, y + kRows, ... of channel
// tile·32 + x, and row 0 adds the kRows partial sums in order. kDabar = false: a = Σ_p Σ_k X_k (one sum); true: dabar_k
// = Σ_p dout·X_k (three sums).
template <bool kDabar>
__global__ void token_reduce_kernel(float* out, const float* z, const float* dout, const int32_t* lengths,
                                    S2Geometry g) {
  constexpr int kSums = kDabar ? 3 : 1;
  __shared__ float part[kSums][kRows][kTile];
  const int64_t tiles = (g.C + kTile - 1) / kTile, b = blockIdx.x / tiles;
  const int64_t c = (blockIdx.x - b * tiles) * kTile + threadIdx.x, row = 3 * g.C;
  const int64_t n = s2::valid_tokens(lengths, b, g.N), ng = s2::grid_present(n, g);
  float acc[kSums] = {};
  if (c < g.C) {
    const int q = s2::quarter_of(c, g.C);
    for (int64_t p = threadIdx.y; p < n; p += kRows) {
      const float d = kDabar ? dout[(b * g.N + p) * g.C + c] : 1.f;
      for (int k = 0; k < 3; ++k) {
        const float x = z[(b * g.N + s2::source_token(p, k, q, g, ng)) * row + k * g.C + c];
        acc[kDabar ? k : 0] += kDabar ? d * x : x;
      }
    }
  }
  for (int s = 0; s < kSums; ++s) part[s][threadIdx.y][threadIdx.x] = acc[s];
  __syncthreads();
  if (threadIdx.y != 0 || c >= g.C) return;
  for (int s = 0; s < kSums; ++s) {
    float total = 0.f;
    for (int r = 0; r < kRows; ++r) total += part[s][r][threadIdx.x];
    out[(b * kSums + s) * g.C + c] = total;
  }
}

#undef MIXGRAD_GRID_STRIDE

template <bool kDabar>
void launch_token_reduce(float* out, const float* z, const float* dout, const int32_t* lengths, const S2Geometry& g,
                         cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>((g.C + kTile - 1) / kTile * g.B);  // the engine op bounds B·C
  token_reduce_kernel<kDabar><<<grid, dim3(kTile, kRows), 0, stream>>>(out, z, dout, lengths, g);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

bool empty(const S2Geometry& g) { return g.B <= 0 || g.N <= 0 || g.C <= 0; }

}  // namespace

void spatial_shift_forward(float* y, const float* x, int64_t B, int64_t H, int64_t W, int64_t C, int variant,
                           cudaStream_t stream) {
  const int64_t total = B * H * W * C;
  if (total <= 0) return;
  shift_forward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(y, x, B, H, W, C, variant);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void spatial_shift_backward(float* dx, const float* dy, int64_t B, int64_t H, int64_t W, int64_t C, int variant,
                            cudaStream_t stream) {
  const int64_t total = B * H * W * C;
  if (total <= 0) return;
  shift_backward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(dx, dy, B, H, W, C, variant);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void s2_branch_sum(float* a, const float* z, const int32_t* lengths, S2Geometry g, cudaStream_t stream) {
  if (empty(g)) return;
  launch_token_reduce<false>(a, z, nullptr, lengths, g, stream);
}

void s2_branch_sum_backward(float* dz, const float* da, const int32_t* lengths, S2Geometry g, cudaStream_t stream) {
  if (empty(g)) return;
  branch_sum_backward_kernel<<<blocks_for(g.B * g.N * 3 * g.C), kThreads, 0, stream>>>(dz, da, lengths, g);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void s2_split_combine(float* out, const float* z, const float* abar, const int32_t* lengths, S2Geometry g,
                      cudaStream_t stream) {
  if (empty(g)) return;
  combine_kernel<<<blocks_for(g.B * g.N * g.C), kThreads, 0, stream>>>(out, z, abar, lengths, g);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void s2_split_combine_backward(float* dz, float* dabar, const float* dout, const float* z, const float* abar,
                               const int32_t* lengths, S2Geometry g, cudaStream_t stream) {
  if (empty(g)) return;
  combine_dz_kernel<<<blocks_for(g.B * g.N * 3 * g.C), kThreads, 0, stream>>>(dz, dout, abar, lengths, g);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  launch_token_reduce<true>(dabar, z, dout, lengths, g, stream);
}

}  // namespace mixgrad::kernels::cuda
