// CSP forward/backward on CUDA: Design A (thread per (b, group, channel)), Design B (shared-memory window per
// (b, channel tile, row band), falling back to A's direct loads per CTA when the tile's shift spread is too wide) and
// Design C (a thread-block cluster holds whole channel slabs of a sample in distributed shared memory).
// Kernels first, launchers after.
#include "kernels/cuda/csp.h"

#include <cooperative_groups.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/device_facts.h"

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

// Design D backward: one thread per dv element (b, i, c), c fastest, so dv is written row-contiguously (Design A's
// backward scatters it). Source row i sits at shifted position j = (i + s) mod n, slot j mod K of group j0; the
// group's other members are source rows i - (j mod K) + k (mod n), a few rows around i (cached loads shared by the
// warp's channels). v[i]'s rank counts the members ordered before it, ties by slot, exactly as group_ranks does;
// dv[i] = dy[j0 + rank]: the one scattered access left is a read.
template <int K>
__global__ void csp_gather_backward_kernel(float* dv, const float* dy, const float* v, const int32_t* shifts,
                                           const int32_t* lengths, int64_t B, int64_t N, int64_t D) {
  const int64_t total = B * N * D;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = t % D, bi = t / D, i = bi % N, b = bi / N;
    const int64_t n = lengths ? static_cast<int64_t>(lengths[b]) : N;
    if (i >= n) {
      dv[t] = 0.0f;
      continue;
    }
    const int64_t base = b * N * D, s = static_cast<int64_t>(shifts[c]) % n;
    const int64_t j = i + s < n ? i + s : i + s - n;
    const int64_t j0 = j - j % K;
    const int slot = static_cast<int>(j - j0);
    const int m = static_cast<int>(min(int64_t{K}, n - j0));
    const float x = v[t];
    int rank = 0;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (k < m && k != slot) {
        const float u = v[base + source_row(j0 + k, s, n) * D + c];
        rank += k < slot ? !csp_before(x, u) : csp_before(u, x);
      }
    }
    dv[t] = dy[base + (j0 + rank) * D + c];
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

// Design E forward: CTA (octet, band, b) = 8 channels [c0, c0 + 8) × output rows [j0, j0 + kEBand) of sample b. The
// source rows the band needs over the octet, [j0 - smax, j0 + rows - smin) (mod n), are staged once in shared
// memory as 32-byte row pieces, 8 lanes per piece, so every global read uses the whole sector it fetches. Design A
// uses 4 bytes of each 32-byte sector it reads (neighbouring channels read rows far apart), which makes Path-X's
// forward L2-bound (Nsight Compute on an H100: L2 99 %, DRAM 28 %). The band is long so that a wide shift spread
// inside the octet costs a small fraction of re-read window; a CTA whose window would not fit falls back to direct
// loads. Writes are 32-byte pieces too. threadIdx.x: channel lane = x % 8, row lane = x / 8.
// Measured on an H100 it is slower than A and B at every bench size (Path-X forward 1.38 vs 1.07 ms for A): the
// staged load (4-byte loads, 2 CTAs per SM for 96 KiB of window, no overlap of the load with the compute) costs more
// than the L2 traffic it saves. Correct and tested; only run when asked for. The next step would be a pipelined
// version (cp.async / TMA double-buffering of the window with 16-byte loads).
constexpr int kOct = 8;
constexpr int kEBand = 1024;
constexpr int kEWindow = 3072;  // rows of window: 3072 × 8 × 4 B = 96 KiB of dynamic shared memory
constexpr int kERowLanes = kThreads / kOct;

template <int K>
__global__ void __launch_bounds__(kThreads) csp_window_kernel(float* out, const float* v, const int32_t* shifts,
                                                              const int32_t* lengths, int64_t N, int64_t D) {
  extern __shared__ float win[];  // [kEWindow][kOct]
  const int cl = static_cast<int>(threadIdx.x) % kOct, rl = static_cast<int>(threadIdx.x) / kOct;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kOct + cl;
  const int64_t j0 = static_cast<int64_t>(blockIdx.y) * kEBand, b = blockIdx.z;
  const bool channel_ok = c < D;
  const int64_t n = lengths ? static_cast<int64_t>(lengths[b]) : N;
  const int64_t base = b * N * D;
  const int band_rows = static_cast<int>(min(int64_t{kEBand}, N - j0));
  const int valid_rows = static_cast<int>(max(int64_t{0}, min(int64_t{band_rows}, n - j0)));
  const int groups = band_rows / K;  // N % K == 0 and j0 % K == 0
  const int64_t s = channel_ok && valid_rows > 0 ? static_cast<int64_t>(shifts[c]) % n : 0;

  // Shift spread over the octet: the 8 lanes of a piece are 8 consecutive lanes of one warp.
  int64_t smin = channel_ok ? s : INT64_MAX, smax = channel_ok ? s : -1;
#pragma unroll
  for (int o = 1; o < kOct; o <<= 1) {
    smin = min(smin, __shfl_xor_sync(0xffffffffu, smin, o));
    smax = max(smax, __shfl_xor_sync(0xffffffffu, smax, o));
  }
  const bool staged = valid_rows > 0 && valid_rows + (smax - smin) <= kEWindow;
  const int span = staged ? valid_rows + static_cast<int>(smax - smin) : 0;
  const int offset = static_cast<int>(smax - s);  // window slot of shifted row j0 for this channel
  // Slot w holds source row (j0 - smax + w) mod n, which lies in [-n, n) before the wrap (w < span).
  if (staged) {
#pragma unroll 4
    for (int w = rl; w < span; w += kERowLanes)
      win[w * kOct + cl] = channel_ok ? v[base + source_row(j0 + w, smax, n) * D + c] : 0.0f;
  }
  __syncthreads();
  if (!channel_ok) return;
  for (int gl = rl; gl < groups; gl += kERowLanes) {
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
        u[k] = staged ? win[(t0 + k + offset) * kOct + cl] : v[base + src[k] * D + c];
      }
    }
    finish_group<K, false>(out, nullptr, base, j0 + t0, m, D, c, u, src);
  }
}

// Copies rows [0, rows) × channels [c0, c0 + C) between a row-major [*, D] tensor (at row r0) and a [rows][C] slab
// with every thread keeping kUnroll independent transfers in flight: 16-byte vectors when kVec (D % 4 == 0 and the
// tensor 16-byte aligned), single floats otherwise. Load: channels >= D and rows >= n read as 0. Store: channels >= D
// are skipped.
template <int C, bool kVec, bool kLoad>
__device__ __forceinline__ void slab_copy(float* slab, float* g, int64_t r0, int rows, int64_t n, int64_t c0, int64_t D) {
  constexpr int kW = kVec ? 4 : 1;
  constexpr int kUnroll = 4;
  constexpr int kPerRow = C / kW;  // vectors per slab row
  const int total = rows * kPerRow;
  for (int e0 = threadIdx.x; e0 < total; e0 += kThreads * kUnroll) {
    float buf[kUnroll][kW];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int e = e0 + u * kThreads;
      if (e >= total) break;
      const int row = e / kPerRow, cl = (e % kPerRow) * kW;
      const int64_t c = c0 + cl, grow = r0 + row;
      if constexpr (kLoad) {
        if constexpr (kVec) {
          if (c < D && grow < n) {
            const float4 x = *reinterpret_cast<const float4*>(g + grow * D + c);
            buf[u][0] = x.x, buf[u][1] = x.y, buf[u][2] = x.z, buf[u][3] = x.w;
          } else {
            buf[u][0] = buf[u][1] = buf[u][2] = buf[u][3] = 0.0f;
          }
        } else {
          buf[u][0] = c < D && grow < n ? g[grow * D + c] : 0.0f;
        }
      } else {
#pragma unroll
        for (int w = 0; w < kW; ++w) buf[u][w] = slab[row * C + cl + w];
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int e = e0 + u * kThreads;
      if (e >= total) break;
      const int row = e / kPerRow, cl = (e % kPerRow) * kW;
      const int64_t c = c0 + cl, grow = r0 + row;
      if constexpr (kLoad) {
#pragma unroll
        for (int w = 0; w < kW; ++w) slab[row * C + cl + w] = buf[u][w];
      } else if (c < D) {
        if constexpr (kVec)
          *reinterpret_cast<float4*>(g + grow * D + c) = make_float4(buf[u][0], buf[u][1], buf[u][2], buf[u][3]);
        else
          g[grow * D + c] = buf[u][0];
      }
    }
  }
}

// Design C: a cluster of P CTAs (blockIdx.x = rank) owns sample blockIdx.z, channels [c0, c0 + C) for all N rows;
// CTA r stages rows [r·R, r·R + R) of the slab in shared memory with row-contiguous (coalesced) loads. After a
// cluster barrier every CTA computes the groups of its own output rows, reading the K members of each group — rows
// (j - s_c) mod n, anywhere in the sample — from whichever CTA holds them (distributed shared memory). Forward: the
// sorted values go straight to y. Backward: dy of the own rows is read from global memory and each value is stored
// at its source row in the owning CTA's dv slab; after a second barrier every CTA writes its dv rows out coalesced.
// Bytes moved: v read once, y written once (forward); v and dy read once, dv written once (backward).
// kThreads % C == 0, so a thread's channel lane is fixed: its shift is read once.
template <int K, int C, bool kBackward, bool kVec>
__global__ void __launch_bounds__(kThreads) csp_slab_kernel(float* out, const float* dy, const float* v,
                                                            const int32_t* shifts, const int32_t* lengths, int64_t N,
                                                            int64_t D, int rows_per_cta) {
  static_assert(kThreads % C == 0, "a thread's channel lane must stay fixed");
  namespace cg = cooperative_groups;
  extern __shared__ float4 slab_storage[];  // [R][C] values of v; backward: then [R][C] of dv
  float* vs = reinterpret_cast<float*>(slab_storage);
  float* dvs = vs + static_cast<int64_t>(rows_per_cta) * C;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int64_t b = blockIdx.z, c0 = static_cast<int64_t>(blockIdx.y) * C;
  const int n = lengths ? lengths[b] : static_cast<int>(N);
  const int64_t base = b * N * D;
  const int r0 = rank * rows_per_cta;
  const int rows = max(0, min(rows_per_cta, static_cast<int>(N) - r0));

  slab_copy<C, kVec, true>(vs, const_cast<float*>(v) + base, r0, rows, n, c0, D);
  if constexpr (kBackward)
    for (int e = threadIdx.x; e < rows * C; e += kThreads) dvs[e] = 0.0f;  // rows >= n keep it
  cluster.sync();

  const int cl = threadIdx.x % C;
  const int64_t c = c0 + cl;
  const int s = c < D && n > 0 ? static_cast<int>(static_cast<int64_t>(shifts[c]) % n) : 0;
  const int groups = rows / K;  // r0 and R are multiples of 8, N % K == 0
  if (c < D) {
#pragma unroll 4
    for (int g = threadIdx.x / C; g < groups; g += kThreads / C) {
      const int j0 = r0 + g * K;
      const int m = max(0, min(K, n - j0));
      float u[K];
      int64_t src[K];
      int owner[K], local[K];
#pragma unroll
      for (int k = 0; k < K; ++k) {
        src[k] = 0, owner[k] = 0, local[k] = 0;
        u[k] = 0.0f;
        if (k < m) {
          int i = j0 + k - s;
          i = i < 0 ? i + n : i;
          src[k] = i;
          owner[k] = i / rows_per_cta;
          local[k] = i - owner[k] * rows_per_cta;
          u[k] = cluster.map_shared_rank(vs, owner[k])[local[k] * C + cl];
        }
      }
      if constexpr (kBackward) {
        int rk[K];
        group_ranks<K>(u, m, rk);
        float g_in[K];
#pragma unroll
        for (int k = 0; k < K; ++k) g_in[k] = k < m ? dy[base + (j0 + rk[k]) * D + c] : 0.0f;
#pragma unroll
        for (int k = 0; k < K; ++k)
          if (k < m) cluster.map_shared_rank(dvs, owner[k])[local[k] * C + cl] = g_in[k];
      } else {
        finish_group<K, false>(out, dy, base, j0, m, D, c, u, src);
      }
    }
  }
  cluster.sync();  // no CTA may leave while another still reads (or writes) its shared memory

  if constexpr (kBackward) slab_copy<C, kVec, false>(dvs, out + base, r0, rows, n, c0, D);
}

// Design C's shape for (N, D): channel slab width C, rows per CTA R (a multiple of 8), cluster size P and the shared
// memory per CTA. Widest slab first (row loads of C·4 bytes), narrowed while the cluster would exceed 8 CTAs (the
// portable size) of kSlabBudget bytes; then up to 16 CTAs (Hopper's non-portable maximum), then 16 CTAs of up to
// kSlabMaxBytes. ok = false when even that does not hold N rows.
constexpr int64_t kSlabBudget = 64 * 1024;
constexpr int64_t kSlabMaxBytes = 200 * 1024;
constexpr int kPortableCluster = 8, kMaxCluster = 16;
struct SlabPlan {
  bool ok = false;
  int C = 32, P = 1, R = 8;
  size_t smem = 0;
};
SlabPlan plan_slab(int64_t N, int64_t D, bool backward) {
  SlabPlan p;
  const int64_t nbuf = backward ? 2 : 1;
  p.C = D > 16 ? 32 : D > 8 ? 16 : 8;
  auto ctas_for = [&](int64_t per_cta) { return (N * p.C * 4 * nbuf + per_cta - 1) / per_cta; };
  while (p.C > 8 && ctas_for(kSlabBudget) > kPortableCluster) p.C /= 2;
  int64_t P = std::min<int64_t>(kMaxCluster, std::max<int64_t>(1, ctas_for(kSlabBudget)));
  int64_t R = (N + P - 1) / P;
  R = (R + 7) / 8 * 8;
  P = (N + R - 1) / R;
  const int64_t bytes = R * p.C * 4 * nbuf;
  if (bytes > kSlabMaxBytes || N > INT32_MAX / 2) return p;
  p.ok = true, p.P = static_cast<int>(P), p.R = static_cast<int>(R), p.smem = static_cast<size_t>(bytes);
  return p;
}

// Clusters need compute capability 9.0 (cached per device in kernels/cuda/device_facts.h).
bool clusters_supported() { return current_device_facts().clusters; }

template <int K, int C, bool kBackward, bool kVec>
void launch_slab(const SlabPlan& p, float* out, const float* dy, const float* v, const int32_t* shifts,
                 const int32_t* lengths, int64_t B, int64_t N, int64_t D, cudaStream_t stream) {
  auto kernel = csp_slab_kernel<K, C, kBackward, kVec>;
  if (p.smem > 48 * 1024)
    MIXGRAD_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(p.smem)));
  if (p.P > kPortableCluster)
    MIXGRAD_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(p.P), static_cast<unsigned>((D + C - 1) / C), static_cast<unsigned>(B));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = p.smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(p.P);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  MIXGRAD_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, out, dy, v, shifts, lengths, N, D, p.R));
}

template <int K, int C, bool kBackward>
void launch_slab(const SlabPlan& p, float* out, const float* dy, const float* v, const int32_t* shifts,
                 const int32_t* lengths, int64_t B, int64_t N, int64_t D, cudaStream_t stream) {
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  if (D % 4 == 0 && aligned(v) && aligned(out))
    launch_slab<K, C, kBackward, true>(p, out, dy, v, shifts, lengths, B, N, D, stream);
  else
    launch_slab<K, C, kBackward, false>(p, out, dy, v, shifts, lengths, B, N, D, stream);
}

// MIXGRAD_CSP_DESIGN=simple|tiled|slab|gather|window overrides the automatic choice (benchmarks); read once.
CspDesign design_from_env() {
  static const CspDesign d = [] {
    const char* e = std::getenv("MIXGRAD_CSP_DESIGN");
    const std::string s = e ? e : "";
    return s == "simple"   ? CspDesign::simple
           : s == "tiled"  ? CspDesign::tiled
           : s == "slab"   ? CspDesign::slab
           : s == "gather" ? CspDesign::gather
           : s == "window" ? CspDesign::window
                           : CspDesign::automatic;
  }();
  return d;
}

int64_t grid_for(int64_t work) { return std::max<int64_t>(1, std::min(kMaxGrid, (work + kThreads - 1) / kThreads)); }

template <int K, bool kBackward>
void launch(float* out, const float* dy, const float* v, const int32_t* shifts, const int32_t* lengths, int64_t B,
            int64_t N, int64_t D, cudaStream_t stream, CspDesign design) {
  if (design == CspDesign::automatic) design = design_from_env();
  // automatic backward for N > 4096: Design D (gather) — 1.23 vs 3.02 ms (A) at Path-X on an H100.
  if (kBackward && design == CspDesign::automatic && N > 4096) design = CspDesign::gather;
  if (design == CspDesign::slab) {
    const SlabPlan p = plan_slab(N, D, kBackward);
    const bool fits = p.ok && B <= 65535 && (D + p.C - 1) / p.C <= 65535 && clusters_supported();
    if (!fits)
      throw std::invalid_argument("csp: the slab design cannot hold N = " + std::to_string(N) +
                                  " rows in one cluster on this device (or B, D too large); use tiled or simple");
    switch (p.C) {
      case 32: return launch_slab<K, 32, kBackward>(p, out, dy, v, shifts, lengths, B, N, D, stream);
      case 16: return launch_slab<K, 16, kBackward>(p, out, dy, v, shifts, lengths, B, N, D, stream);
      default: return launch_slab<K, 8, kBackward>(p, out, dy, v, shifts, lengths, B, N, D, stream);
    }
  }
  if (design == CspDesign::window) {
    const int64_t octets = (D + kOct - 1) / kOct, bands = (N + kEBand - 1) / kEBand;
    if constexpr (!kBackward) {
      if (octets <= INT32_MAX && bands <= 65535 && B <= 65535) {
        constexpr int kSmem = kEWindow * kOct * static_cast<int>(sizeof(float));
        // Per call (cheap), so that every device the kernel runs on has the opt-in above 48 KiB.
        MIXGRAD_CUDA_CHECK(
            cudaFuncSetAttribute(csp_window_kernel<K>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
        const dim3 grid(static_cast<unsigned>(octets), static_cast<unsigned>(bands), static_cast<unsigned>(B));
        csp_window_kernel<K><<<grid, kThreads, kSmem, stream>>>(out, v, shifts, lengths, N, D);
        MIXGRAD_CUDA_LAUNCH_CHECK();
        return;
      }
      design = CspDesign::simple;  // a grid too large for the window layout
    } else {
      design = CspDesign::gather;  // Design E's backward is Design D's
    }
  }
  if (design == CspDesign::gather) {
    if constexpr (kBackward) {
      csp_gather_backward_kernel<K><<<static_cast<unsigned>(grid_for(B * N * D)), kThreads, 0, stream>>>(
          out, dy, v, shifts, lengths, B, N, D);
      MIXGRAD_CUDA_LAUNCH_CHECK();
      return;
    }
    design = CspDesign::simple;  // Design D's forward is Design A's
  }
  const int64_t bands = (N + kBand - 1) / kBand, tiles = (D + kTileC - 1) / kTileC;
  const bool tiled_fits = bands <= INT32_MAX && tiles <= 65535 && B <= 65535;
  // automatic: tiled for D >= 16 and N <= 4096, else simple (the backward above 4096 took gather earlier). Measured
  // on an H100 (docs/benchmarks/gpu-h100.md): tiled is fastest at the ViT and LRA sizes, A at Path-X's forward
  // (N = 16384, where the exponential schedule's shift spread overflows most tiles' windows and B's per-tile
  // fallback loses to A); the slab design was slower everywhere.
  const bool auto_tiled = D >= 16 && N <= 4096;
  const bool use_tiled = tiled_fits && (design == CspDesign::tiled || (design == CspDesign::automatic && auto_tiled));
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

__global__ void prepare_lengths_kernel(int32_t* out, const void* lengths, bool is_int64, int64_t B, int64_t N,
                                       int* bad) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const int64_t n = is_int64 ? static_cast<const int64_t*>(lengths)[b] : static_cast<const int32_t*>(lengths)[b];
  if (n < 1 || n > N) *bad = 1;
  out[b] = static_cast<int32_t>(n < 1 ? 1 : (n > N ? N : n));
}

// One block per mask row: the first padding position and the last valid one, reduced over the block.
__global__ void mask_lengths_kernel(int32_t* lengths, const uint8_t* mask, int64_t N, int* not_prefix, int* empty) {
  __shared__ int64_t first_pad[kThreads / 32], last_valid[kThreads / 32];
  const int64_t b = blockIdx.x;
  const uint8_t* row = mask + b * N;
  int64_t fp = N, lv = -1;
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    if (row[j])
      lv = j;  // j grows per thread, so the last hit is the thread's largest
    else
      fp = min(fp, j);
  }
  for (int o = 16; o > 0; o >>= 1) {
    fp = min(fp, __shfl_xor_sync(0xffffffffu, fp, o));
    lv = max(lv, __shfl_xor_sync(0xffffffffu, lv, o));
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) first_pad[warp] = fp, last_valid[warp] = lv;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w)
      fp = min(fp, first_pad[w]), lv = max(lv, last_valid[w]);
    if (lv > fp) *not_prefix = 1;
    if (fp == 0) *empty = 1;
    lengths[b] = static_cast<int32_t>(fp == 0 ? 1 : fp);
  }
}

}  // namespace

void csp_mask_lengths(int32_t* lengths, const uint8_t* mask, int64_t B, int64_t N, int* not_prefix, int* empty,
                      cudaStream_t stream) {
  if (B <= 0) return;
  mask_lengths_kernel<<<static_cast<unsigned>(B), kThreads, 0, stream>>>(lengths, mask, N, not_prefix, empty);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void csp_prepare_lengths(int32_t* lengths32, const void* lengths, bool is_int64, int64_t B, int64_t N, int* bad,
                         cudaStream_t stream) {
  if (B <= 0) return;
  constexpr int kThreads = 256;
  prepare_lengths_kernel<<<static_cast<unsigned>((B + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      lengths32, lengths, is_int64, B, N, bad);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void csp_forward(float* y, const float* v, const int32_t* shifts, const int32_t* lengths, int64_t B, int64_t N,
                 int64_t D, int K, cudaStream_t stream, CspDesign design) {
  dispatch<false>("csp_forward", y, nullptr, v, shifts, lengths, B, N, D, K, stream, design);
}

void csp_backward(float* dv, const float* dy, const float* v, const int32_t* shifts, const int32_t* lengths,
                  int64_t B, int64_t N, int64_t D, int K, cudaStream_t stream, CspDesign design) {
  dispatch<true>("csp_backward", dv, dy, v, shifts, lengths, B, N, D, K, stream, design);
}

}  // namespace mixgrad::kernels::cuda
