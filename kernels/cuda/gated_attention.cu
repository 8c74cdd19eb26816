// CUDA kernels of the gated-attention scores (MEGA / GAU, specs/lra.md §6.2, §6.4). Math:
// kernels/cpu/gated_attention.h; tiling and determinism: kernels/cuda/gated_attention.h. Kernels first, launchers
// after.
#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/gated_attention.h"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kTile = 32;                     // queries and keys per score tile
constexpr int kPerRow = 4;                    // threads per tile row
constexpr int kThreads = kTile * kPerRow;     // 128
constexpr int kCols = kTile / kPerRow;        // score columns per thread: sub + 4·m, m < 8
constexpr int kSlice = 64;                    // output columns (of E or Z) per block
constexpr int kSliceCols = kSlice / kPerRow;  // accumulators per thread: sub + 4·m, m < 16
constexpr int kPad = kTile + 1;               // row pitch of the 32-wide shared tiles (no bank conflicts)
constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Shared {
  float a[kTile][kPad];    // 32 columns of the row operand's rows (q or dout)
  float b[kTile][kPad];    // the same columns of the column operand's rows (k or v)
  float p[kTile][kPad];    // the tile's A or ds, [query][key]
  float m[kTile][kSlice];  // a 64-column slice of 32 rows of V, K, dout or Q
};

// The tile of span positions a block works on: [r0, r1) of the span whose valid block is blk; [r0, rv) are valid.
struct TileGeom {
  GattBlock blk;
  int64_t r0, r1, rv;
};

__device__ __forceinline__ int64_t tiles_per_span(const GattSizes& s) { return (s.span + kTile - 1) / kTile; }

__device__ TileGeom tile_geom(const GattSizes& s, const int32_t* lengths, int64_t b, int64_t tile) {
  const int64_t tps = tiles_per_span(s), si = tile / tps, ti = tile % tps;
  TileGeom g;
  g.blk = gatt_block(s, si, gatt_valid_length(lengths, b, s.length));
  const int64_t span_end = min(s.length, (si + 1) * s.span);
  g.r0 = min(span_end, si * s.span + ti * kTile);
  g.r1 = min(span_end, g.r0 + kTile);
  g.rv = max(g.r0, min(g.r1, g.blk.hi));
  return g;
}

__device__ __forceinline__ int tile_row() { return threadIdx.x / kPerRow; }
__device__ __forceinline__ int tile_sub() { return threadIdx.x % kPerRow; }

// acc[m] = Σ_x A[(i0 + r)·D + x]·B[(j0 + sub + 4m)·D + x] for the thread's row r; rows of A at or past a_end and
// rows of B at or past b_end read as 0. A and B point at the sample's first row.
__device__ void dot_tile(float (&acc)[kCols], const float* A, int64_t i0, int64_t a_end, const float* B, int64_t j0,
                         int64_t b_end, int64_t D, Shared& sh) {
#pragma unroll
  for (int m = 0; m < kCols; ++m) acc[m] = 0.f;
  const int r = tile_row(), sub = tile_sub();
  for (int64_t x0 = 0; x0 < D; x0 += kTile) {
    for (int idx = threadIdx.x; idx < kTile * kTile; idx += kThreads) {
      const int rr = idx / kTile, xx = idx % kTile;
      const int64_t x = x0 + xx;
      sh.a[rr][xx] = (i0 + rr < a_end && x < D) ? A[(i0 + rr) * D + x] : 0.f;
      sh.b[rr][xx] = (j0 + rr < b_end && x < D) ? B[(j0 + rr) * D + x] : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int xx = 0; xx < kTile; ++xx) {
      const float av = sh.a[r][xx];
#pragma unroll
      for (int m = 0; m < kCols; ++m) acc[m] += av * sh.b[sub + kPerRow * m][xx];
    }
    __syncthreads();
  }
}

// sh.m[rr][w] = M[(r0 + rr)·W + w0 + w] for rows before `end` and columns before W, else 0.
__device__ void load_slice(Shared& sh, const float* M, int64_t r0, int64_t end, int64_t W, int64_t w0) {
  for (int idx = threadIdx.x; idx < kTile * kSlice; idx += kThreads) {
    const int rr = idx / kSlice, w = idx % kSlice;
    sh.m[rr][w] = (r0 + rr < end && w0 + w < W) ? M[(r0 + rr) * W + w0 + w] : 0.f;
  }
}

// acc[m] += Σ_c P·sh.m[c][sub + 4m] with P = sh.p[r][c] (row form: the thread's row is a query) or sh.p[c][r]
// (transposed: the thread's row is a key).
template <bool kTransposed>
__device__ void accumulate(float (&acc)[kSliceCols], const Shared& sh) {
  const int r = tile_row(), sub = tile_sub();
#pragma unroll 4
  for (int c = 0; c < kTile; ++c) {
    const float p = kTransposed ? sh.p[c][r] : sh.p[r][c];
#pragma unroll
    for (int m = 0; m < kSliceCols; ++m) acc[m] += p * sh.m[c][sub + kPerRow * m];
  }
}

// Out[row·W + w0 + sub + 4m] = acc[m]·factor for the thread's row r0 + r when it is before r1.
__device__ void store_slice(float* out, const float (&acc)[kSliceCols], int64_t r0, int64_t r1, int64_t W, int64_t w0,
                            float factor) {
  const int64_t row = r0 + tile_row();
  if (row >= r1) return;
#pragma unroll
  for (int m = 0; m < kSliceCols; ++m) {
    const int64_t w = w0 + tile_sub() + kPerRow * m;
    if (w < W) out[row * W + w] = acc[m] * factor;
  }
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kFullMask, v, 1);
  return v + __shfl_xor_sync(kFullMask, v, 2);
}

// The argument of f (or of the softmax) for the thread's score s of query i and key j.
__device__ __forceinline__ float score_arg(float s, float scale, const float* bias, int64_t half, int64_t i,
                                           int64_t j) {
  return s * scale + gatt_bias(bias, half, i, j);
}

// Running softmax state of the thread's row: max m and sum l; rescales acc to the block's new max and writes
// exp(x − m) (0 where masked) to sh.p.
__device__ void online_softmax(float (&x)[kCols], const bool (&ok)[kCols], float& m_run, float& l_run,
                               float (&acc)[kSliceCols], Shared& sh) {
  float mx = kNegInf;
#pragma unroll
  for (int m = 0; m < kCols; ++m)
    if (ok[m]) mx = fmaxf(mx, x[m]);
  const float m_new = fmaxf(m_run, quad_max(mx));
  const float corr = m_new == kNegInf ? 1.f : expf(m_run - m_new);  // m_run = −inf: corr 0 (acc and l are 0)
  float sum = 0.f;
  const int r = tile_row(), sub = tile_sub();
#pragma unroll
  for (int m = 0; m < kCols; ++m) {
    const float p = ok[m] ? expf(x[m] - m_new) : 0.f;
    sum += p;
    sh.p[r][sub + kPerRow * m] = p;
  }
  l_run = l_run * corr + quad_sum(sum);
  m_run = m_new;
#pragma unroll
  for (int m = 0; m < kSliceCols; ++m) acc[m] *= corr;
}

// grid (span tiles, E slices, B).
__global__ void forward_kernel(float* out, float* lse, const float* q, const float* k, const float* v,
                               const float* bias, const int32_t* lengths, GattSizes s) {
  __shared__ Shared sh;
  const int64_t b = blockIdx.z, w0 = int64_t(blockIdx.y) * kSlice;
  const TileGeom g = tile_geom(s, lengths, b, blockIdx.x);
  const float* qb = q + b * s.length * s.zdim;
  const float* kb = k + b * s.length * s.zdim;
  const float* vb = v + b * s.length * s.vdim;
  const float scale = gatt_scale<float>(s, g.blk);
  const int r = tile_row(), sub = tile_sub();
  const int64_t i = g.r0 + r;
  float acc[kSliceCols] = {};
  float m_run = kNegInf, l_run = 0.f;
  if (g.rv > g.r0) {
    for (int64_t j0 = g.blk.lo; j0 < g.blk.hi; j0 += kTile) {
      float x[kCols];
      bool ok[kCols];
      dot_tile(x, qb, g.r0, g.rv, kb, j0, g.blk.hi, s.zdim, sh);
#pragma unroll
      for (int m = 0; m < kCols; ++m) {
        const int64_t j = j0 + sub + kPerRow * m;
        ok[m] = i < g.rv && j < g.blk.hi;
        x[m] = ok[m] ? score_arg(x[m], scale, bias, s.bias_half, i, j) : 0.f;
      }
      if (s.fn == GattFn::softmax) {
        online_softmax(x, ok, m_run, l_run, acc, sh);
      } else {
#pragma unroll
        for (int m = 0; m < kCols; ++m) sh.p[r][sub + kPerRow * m] = ok[m] ? gatt_value(s.fn, x[m]) : 0.f;
      }
      load_slice(sh, vb, j0, g.blk.hi, s.vdim, w0);
      __syncthreads();
      accumulate<false>(acc, sh);
      __syncthreads();
    }
  }
  const bool valid = i < g.rv;
  const float inv = (s.fn == GattFn::softmax && valid) ? 1.f / l_run : 1.f;
  store_slice(out + b * s.length * s.vdim, acc, g.r0, g.r1, s.vdim, w0, valid ? inv : 0.f);
  if (s.fn == GattFn::softmax && valid && blockIdx.y == 0 && sub == 0) lse[b * s.length + i] = m_run + logf(l_run);
}

// D[row] = dout_row·out_row, one warp per row.
__global__ void row_dots_kernel(float* D, const float* dout, const float* out, int64_t rows, int64_t E) {
  const int64_t row = int64_t(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  float acc = 0.f;
  for (int64_t e = threadIdx.x % 32; e < E; e += 32) acc += dout[row * E + e] * out[row * E + e];
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(kFullMask, acc, o);
  if (threadIdx.x % 32 == 0) D[row] = acc;
}

// Everything the backward kernels read.
struct BackwardArgs {
  const float *q, *k, *v, *dout, *lse, *D, *bias;
  const int32_t* lengths;
  GattSizes s;
};

// ds (with_dp) or A (!with_dp) of the tile (queries i0 + r, keys j0 + c) into sh.p, 0 outside [i0, i_end) × [j0,
// j_end). x holds the thread's raw scores q·k, dp its dout·v products (with_dp only).
__device__ void grad_values(const BackwardArgs& a, int64_t b, float scale, int64_t i0, int64_t i_end, int64_t j0,
                            int64_t j_end, const float (&x)[kCols], const float (&dp)[kCols], bool with_dp,
                            Shared& sh) {
  const GattSizes& s = a.s;
  const int r = tile_row(), sub = tile_sub();
  const int64_t i = i0 + r;
  const bool row_ok = i < i_end;
  const float row_lse = (row_ok && s.fn == GattFn::softmax) ? a.lse[b * s.length + i] : 0.f;
  const float row_D = (row_ok && s.fn == GattFn::softmax && with_dp) ? a.D[b * s.length + i] : 0.f;
#pragma unroll
  for (int m = 0; m < kCols; ++m) {
    const int64_t j = j0 + sub + kPerRow * m;
    float val = 0.f;
    if (row_ok && j < j_end) {
      const float arg = score_arg(x[m], scale, a.bias, s.bias_half, i, j);
      if (s.fn == GattFn::softmax) {
        const float p = expf(arg - row_lse);
        val = with_dp ? p * (dp[m] - row_D) : p;
      } else {
        val = with_dp ? gatt_grad(s.fn, arg) * dp[m] : gatt_value(s.fn, arg);
      }
    }
    sh.p[r][sub + kPerRow * m] = val;
  }
}

// part[P − 1 + (j0 − i0) + d] += Σ_r sh.p[r][r + d] for the tile's 63 diagonals d = c − r (in range only).
__device__ void add_diagonals(float* part, const Shared& sh, int64_t half, int64_t i0, int64_t j0) {
  const int t = threadIdx.x;
  if (t >= 2 * kTile - 1) return;
  const int d = t - (kTile - 1);
  const int64_t idx = half - 1 + (j0 - i0) + d;
  if (idx < 0 || idx > 2 * half - 2) return;
  float acc = 0.f;
  for (int rr = max(0, -d); rr < min(kTile, kTile - d); ++rr) acc += sh.p[rr][rr + d];
  part[idx] += acc;
}

// grid (groups, Z slices, B): group g takes the span tiles g, g + G, ... of its sample in order.
__global__ void dq_kernel(float* dq, float* part, BackwardArgs a, int64_t groups) {
  __shared__ Shared sh;
  const GattSizes& s = a.s;
  const int64_t b = blockIdx.z, w0 = int64_t(blockIdx.y) * kSlice;
  const int64_t ntiles = s.spans() * tiles_per_span(s);
  const float* qb = a.q + b * s.length * s.zdim;
  const float* kb = a.k + b * s.length * s.zdim;
  const float* ob = a.dout + b * s.length * s.vdim;
  const float* vb = a.v + b * s.length * s.vdim;
  float* row_part = (part != nullptr && blockIdx.y == 0) ? part + (b * groups + blockIdx.x) * s.bias_len() : nullptr;
  for (int64_t tile = blockIdx.x; tile < ntiles; tile += groups) {
    const TileGeom g = tile_geom(s, a.lengths, b, tile);
    const float scale = gatt_scale<float>(s, g.blk);
    float acc[kSliceCols] = {};
    if (g.rv > g.r0) {
      for (int64_t j0 = g.blk.lo; j0 < g.blk.hi; j0 += kTile) {
        float x[kCols], dp[kCols];
        dot_tile(x, qb, g.r0, g.rv, kb, j0, g.blk.hi, s.zdim, sh);
        dot_tile(dp, ob, g.r0, g.rv, vb, j0, g.blk.hi, s.vdim, sh);
        grad_values(a, b, scale, g.r0, g.rv, j0, g.blk.hi, x, dp, true, sh);
        load_slice(sh, kb, j0, g.blk.hi, s.zdim, w0);
        __syncthreads();
        accumulate<false>(acc, sh);
        if (row_part != nullptr) add_diagonals(row_part, sh, s.bias_half, g.r0, j0);
        __syncthreads();
      }
    }
    store_slice(dq + b * s.length * s.zdim, acc, g.r0, g.r1, s.zdim, w0, scale);
  }
}

// grid (span tiles of keys, Z slices then E slices, B): dk (slice y < nz) or dv for the block's 32 keys.
__global__ void dkv_kernel(float* dk, float* dv, BackwardArgs a, int64_t nz) {
  __shared__ Shared sh;
  const GattSizes& s = a.s;
  const int64_t b = blockIdx.z;
  const bool is_dk = blockIdx.y < nz;
  const int64_t w0 = (is_dk ? int64_t(blockIdx.y) : int64_t(blockIdx.y) - nz) * kSlice;
  const TileGeom g = tile_geom(s, a.lengths, b, blockIdx.x);
  const float* qb = a.q + b * s.length * s.zdim;
  const float* kb = a.k + b * s.length * s.zdim;
  const float* ob = a.dout + b * s.length * s.vdim;
  const float* vb = a.v + b * s.length * s.vdim;
  const float scale = gatt_scale<float>(s, g.blk);
  float acc[kSliceCols] = {};
  if (g.rv > g.r0) {
    for (int64_t i0 = g.blk.lo; i0 < g.blk.hi; i0 += kTile) {
      float x[kCols], dp[kCols] = {};
      dot_tile(x, qb, i0, g.blk.hi, kb, g.r0, g.rv, s.zdim, sh);
      if (is_dk) dot_tile(dp, ob, i0, g.blk.hi, vb, g.r0, g.rv, s.vdim, sh);
      grad_values(a, b, scale, i0, g.blk.hi, g.r0, g.rv, x, dp, is_dk, sh);
      if (is_dk)
        load_slice(sh, qb, i0, g.blk.hi, s.zdim, w0);
      else
        load_slice(sh, ob, i0, g.blk.hi, s.vdim, w0);
      __syncthreads();
      accumulate<true>(acc, sh);
      __syncthreads();
    }
  }
  if (is_dk)
    store_slice(dk + b * s.length * s.zdim, acc, g.r0, g.r1, s.zdim, w0, scale);
  else
    store_slice(dv + b * s.length * s.vdim, acc, g.r0, g.r1, s.vdim, w0, 1.f);
}

// dbias[x] = Σ_{b, g} part[b][g][x] in (b, g) order.
__global__ void reduce_partials_kernel(float* dbias, const float* part, int64_t rows, int64_t n) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= n) return;
  float acc = 0.f;
  for (int64_t r = 0; r < rows; ++r) acc += part[r * n + x];
  dbias[x] = acc;
}

// ---- Launchers -------------------------------------------------------------------------------------------------

int64_t span_tiles(const GattSizes& s) { return s.spans() * ((s.span + kTile - 1) / kTile); }
int64_t slices(int64_t width) { return (width + kSlice - 1) / kSlice; }

// Query-tile groups of dq_kernel: one per tile without a bias; with one, enough groups for about 1024 blocks (each
// group owns a [2P − 1] partial row, so memory is B·G·(2P − 1), linear in P).
int64_t dq_groups(const GattSizes& s) {
  const int64_t tiles = span_tiles(s);
  if (s.bias_half == 0) return tiles;
  const int64_t per_sample = std::max<int64_t>(1, (1024 + s.batch * slices(s.zdim) - 1) / (s.batch * slices(s.zdim)));
  return std::min(tiles, per_sample);
}

void check_grid(const GattSizes& s, int64_t x, int64_t y, const char* what) {
  if (s.batch > 65535 || y > 65535 || x > 0x7fffffff)
    throw std::invalid_argument(std::string("gated_attention (CUDA): ") + what + " grid too large (B = " +
                                std::to_string(s.batch) + ", slices = " + std::to_string(y) + ")");
}

}  // namespace

void gated_attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const float* bias,
                             const int32_t* lengths, const GattSizes& s, cudaStream_t stream) {
  const int64_t tiles = span_tiles(s), ns = slices(s.vdim);
  check_grid(s, tiles, ns, "forward");
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(ns), static_cast<unsigned>(s.batch));
  forward_kernel<<<grid, kThreads, 0, stream>>>(out, lse, q, k, v, bias, lengths, s);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

size_t gated_attention_backward_workspace_bytes(const GattSizes& s) {
  return size_t(s.batch * s.length + s.batch * dq_groups(s) * s.bias_len()) * sizeof(float);
}

void gated_attention_backward(float* dq, float* dk, float* dv, float* dbias, float* workspace, const float* dout,
                              const float* q, const float* k, const float* v, const float* out, const float* lse,
                              const float* bias, const int32_t* lengths, const GattSizes& s, cudaStream_t stream) {
  const int64_t rows = s.batch * s.length, groups = dq_groups(s), nz = slices(s.zdim), ne = slices(s.vdim);
  float* D = workspace;
  float* part = bias != nullptr ? workspace + rows : nullptr;
  if (s.fn == GattFn::softmax) {
    const int64_t per_block = kThreads / 32;
    row_dots_kernel<<<static_cast<unsigned>((rows + per_block - 1) / per_block), kThreads, 0, stream>>>(D, dout, out,
                                                                                                        rows, s.vdim);
    MIXGRAD_CUDA_LAUNCH_CHECK();
  }
  const int64_t npart = s.batch * groups * s.bias_len();
  if (part != nullptr) MIXGRAD_CUDA_CHECK(cudaMemsetAsync(part, 0, size_t(npart) * sizeof(float), stream));
  const BackwardArgs a{q, k, v, dout, lse, D, bias, lengths, s};
  check_grid(s, groups, nz, "dq");
  dq_kernel<<<dim3(unsigned(groups), unsigned(nz), unsigned(s.batch)), kThreads, 0, stream>>>(dq, part, a, groups);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  const int64_t tiles = span_tiles(s);
  check_grid(s, tiles, nz + ne, "dk/dv");
  dkv_kernel<<<dim3(unsigned(tiles), unsigned(nz + ne), unsigned(s.batch)), kThreads, 0, stream>>>(dk, dv, a, nz);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  if (part != nullptr) {
    const int64_t n = s.bias_len();
    reduce_partials_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(dbias, part, s.batch * groups,
                                                                                       n);
    MIXGRAD_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace mixgrad::kernels::cuda
