// CUDA flash attention (see kernels/cuda/flash_attention.h): fp32 SIMT kernels first (forward, backward D, backward
// dK/dV, backward dQ), then the tensor-core kernels around kernels/flash_attention_tc.h, launchers last.
//
// Tiling (specs/mixers.md §2.5): a CTA of 256 threads owns 64 "own" rows (queries in the forward and dQ
// kernels, keys in the dK/dV kernel) and streams 64-row tiles of the other side. Thread (ty, tx) = (tid/16,
// tid%16) holds a 4×4 score micro-tile: own rows ty·4 + i, streamed rows tx + 16·j, and accumulates output
// columns tx + 16·e (e < D/16) of its four own rows. Own-side tiles live in shared memory transposed,
// [D][68] (float4 reads of four own rows), streamed tiles row-major [64][D+1] (the +1 makes the strided
// column reads of a half-warp conflict-free); P and dS go through a [64][68] shared tile. The 16 threads of a
// row are one half-warp, so row max/sum use xor shuffles 8..1. Everything is templated on the element type
// (loads widen to fp32, stores narrow) so bf16 storage with fp32 accumulation can be added; only float is
// instantiated now.
#include "kernels/cuda/flash_attention.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/check.h"
#include "kernels/cuda/device_facts.h"
#include "kernels/flash_attention_tc.h"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kTile = 64;      // Br = Bc
constexpr int kThreads = 256;  // 16 × 16 threads, 4×4 micro-tile each
constexpr int kTP = kTile + 4;  // row length of transposed [D][kTP] tiles and of P / dS tiles (16-byte rows)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr size_t kDefaultSmem = 48 * 1024;

template <class T>
__device__ __forceinline__ float load_f(const T* p) {
  return static_cast<float>(*p);
}
template <class T>
__device__ __forceinline__ void store_f(T* p, float x) {
  *p = static_cast<T>(x);
}

__device__ __forceinline__ float half_warp_max(float v) {
  for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}
__device__ __forceinline__ float half_warp_sum(float v) {
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float f4_get(const float4& v, int c) {
  return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w;
}

__device__ __forceinline__ int64_t kv_len_of(const FlashParams& p, int64_t b) {
  if (p.kv_len == nullptr) return p.Tk;
  const int64_t n = p.kv_len[b];
  return n < 0 ? 0 : (n > p.Tk ? p.Tk : n);
}

// dst[x * kTP + r] = src[(r0 + r) * row_stride + x] for the 64 rows from r0, zero outside nrows / d.
template <int D, class T>
__device__ __forceinline__ void load_transposed(float* dst, const T* src, int64_t row_stride, int64_t r0,
                                                int64_t nrows, int d) {
  for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {
    const int r = idx / D, x = idx % D;  // consecutive threads read consecutive x: coalesced
    float val = 0.0f;
    if (r0 + r < nrows && x < d) val = load_f(src + (r0 + r) * row_stride + x);
    dst[x * kTP + r] = val;
  }
}

// dst[r * (D + 1) + x] = src[(r0 + r) * row_stride + x], zero outside nrows / d.
template <int D, class T>
__device__ __forceinline__ void load_rows(float* dst, const T* src, int64_t row_stride, int64_t r0, int64_t nrows,
                                          int d) {
  for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {
    const int r = idx / D, x = idx % D;
    float val = 0.0f;
    if (r0 + r < nrows && x < d) val = load_f(src + (r0 + r) * row_stride + x);
    dst[r * (D + 1) + x] = val;
  }
}

// acc[i][j] += Σ_x own[x][ty·4 + i] · str[tx + 16·j][x]: own transposed [D][kTP], str row-major [64][D+1].
template <int D>
__device__ __forceinline__ void micro_tile_product(float (&acc)[4][4], const float* own_t, const float* str,
                                                   int ty, int tx) {
#pragma unroll 4
  for (int x = 0; x < D; ++x) {
    const float4 a = *reinterpret_cast<const float4*>(own_t + x * kTP + ty * 4);
    float bv[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) bv[j] = str[(tx + 16 * j) * (D + 1) + x];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      acc[0][j] = fmaf(a.x, bv[j], acc[0][j]);
      acc[1][j] = fmaf(a.y, bv[j], acc[1][j]);
      acc[2][j] = fmaf(a.z, bv[j], acc[2][j]);
      acc[3][j] = fmaf(a.w, bv[j], acc[3][j]);
    }
  }
}

// out[i][e] += Σ_c w[ty·4 + i][c] · rows[c][tx + 16·e]: w is a [64][kTP] tile, rows row-major [64][D+1].
template <int D>
__device__ __forceinline__ void accumulate_rows(float (&out)[4][D / 16], const float* w, const float* rows, int ty,
                                                int tx) {
  constexpr int E = D / 16;
#pragma unroll 2
  for (int c = 0; c < kTile; c += 4) {
    float4 wv[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) wv[i] = *reinterpret_cast<const float4*>(w + (ty * 4 + i) * kTP + c);
#pragma unroll
    for (int cc = 0; cc < 4; ++cc) {
      float rv[E];
#pragma unroll
      for (int e = 0; e < E; ++e) rv[e] = rows[(c + cc) * (D + 1) + tx + 16 * e];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float wi = f4_get(wv[i], cc);
#pragma unroll
        for (int e = 0; e < E; ++e) out[i][e] = fmaf(wi, rv[e], out[i][e]);
      }
    }
  }
}

// Dropout multiplier (0 or 1/(1-p)) of (b, h, query i, key j).
__device__ __forceinline__ float dropout_factor(uint64_t key, int64_t b, int64_t h, int64_t i, int64_t j, float p,
                                                float inv_keep) {
  const Philox4 r = flash_dropout_bits4(key, b, h, i, j >> 2);
  return flash_dropout_keep_word(flash_philox_word(r, static_cast<int>(j & 3)), p) ? inv_keep : 0.0f;
}

// ---------------------------------------------------------------------------------------------------------------
// Forward: one CTA per (b, h, query block). Shared: Qt [D][kTP], Ks, Vs [64][D+1], Ps [64][kTP].
template <int D, class T>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(T* __restrict__ o, float* __restrict__ lse,
                                                                 const T* __restrict__ q, const T* __restrict__ k,
                                                                 const T* __restrict__ v, FlashParams p, int64_t nqb,
                                                                 uint64_t dkey, float inv_keep) {
  constexpr int E = D / 16;
  extern __shared__ float4 smem4[];
  float* Qt = reinterpret_cast<float*>(smem4);
  float* Ks = Qt + D * kTP;
  float* Vs = Ks + kTile * (D + 1);
  float* Ps = Vs + kTile * (D + 1);

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4, d = static_cast<int>(p.d);
  const int64_t qb = blockIdx.x % nqb, bh = blockIdx.x / nqb, h = bh % p.H, b = bh / p.H;
  const int64_t i0 = qb * kTile, Tq = p.T, Tk = p.Tk, kvl = kv_len_of(p, b);
  const T* qh = q + b * p.q.batch + h * p.q.head;
  const T* kh = k + b * p.k.batch + h * p.k.head;
  const T* vh = v + b * p.v.batch + h * p.v.head;
  const bool dropout = p.dropout_p > 0.0f;
  const float sl2 = p.scale * kLog2e;

  load_transposed<D>(Qt, qh, p.q.row, i0, Tq, d);
  int64_t lim[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = i0 + ty * 4 + i;
    lim[i] = row < Tq ? flash_key_limit(row, Tq, Tk, p.causal, kvl) : 0;
  }
  const int64_t last = (i0 + kTile < Tq ? i0 + kTile : Tq) - 1;
  const int64_t kend = flash_key_limit(last, Tq, Tk, p.causal, kvl);

  float acc[4][E], m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY, l[i] = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[i][e] = 0.0f;
  }

  for (int64_t j0 = 0; j0 < kend; j0 += kTile) {
    __syncthreads();  // the previous tile's readers of Ks / Vs / Ps are done
    load_rows<D>(Ks, kh, p.k.row, j0, Tk, d);
    load_rows<D>(Vs, vh, p.v.row, j0, Tk, d);
    __syncthreads();
    float s[4][4] = {};
    micro_tile_product<D>(s, Qt, Ks, ty, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        s[i][j] = (j0 + tx + 16 * j < lim[i]) ? s[i][j] * sl2 : -INFINITY;  // log2 units
        mx = fmaxf(mx, s[i][j]);
      }
      mx = half_warp_max(mx);
      const float m_new = fmaxf(m[i], mx);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // fully masked so far: avoid -inf - -inf
      const float alpha = exp2f(m[i] - m_use);
      float rs = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        s[i][j] = exp2f(s[i][j] - m_use);
        rs += s[i][j];
      }
      l[i] = alpha * l[i] + rs;  // per-thread partial; the 16 partials are summed once at the end
      m[i] = m_new;
#pragma unroll
      for (int e = 0; e < E; ++e) acc[i][e] *= alpha;
      if (dropout) {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          s[i][j] *= dropout_factor(dkey, b, h, i0 + ty * 4 + i, j0 + tx + 16 * j, p.dropout_p, inv_keep);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) Ps[(ty * 4 + i) * kTP + tx + 16 * j] = s[i][j];
    }
    __syncthreads();
    accumulate_rows<D>(acc, Ps, Vs, ty, tx);
  }

  T* oh = o + b * p.o.batch + h * p.o.head;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float lt = half_warp_sum(l[i]);
    const int64_t row = i0 + ty * 4 + i;
    if (row >= Tq) continue;
    // lt = 0 only for a row that saw no key (O = 0, LSE = +inf); a NaN score makes lt NaN, and NaN must come out
    // (O and LSE NaN) as it does from softmax(QK^T)V, never the masked-row zeros.
    const bool saw_keys = lt != 0.0f;
    const float inv = saw_keys ? 1.0f / lt : 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int col = tx + 16 * e;
      if (col < d) store_f(oh + row * p.o.row + col, acc[i][e] * inv);
    }
    if (tx == 0) lse[bh * Tq + row] = saw_keys ? (m[i] + log2f(lt)) * kLn2 : INFINITY;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Backward preprocess: D_i = Σ_x dO_ix · O_ix, one warp per row.
template <class T>
__global__ void flash_backward_dot_kernel(float* __restrict__ Dsum, const T* __restrict__ dout,
                                          const T* __restrict__ o, FlashParams p, int64_t nrows) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  if (row >= nrows) return;  // whole warps leave together
  const int64_t i = row % p.T, h = (row / p.T) % p.H, b = row / p.T / p.H;
  const T* g = dout + b * p.dout.batch + h * p.dout.head + i * p.dout.row;
  const T* y = o + b * p.o.batch + h * p.o.head + i * p.o.row;
  float s = 0.0f;
  for (int64_t x = lane; x < p.d; x += 32) s = fmaf(load_f(g + x), load_f(y + x), s);
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(kFullMask, s, off);
  if (lane == 0) Dsum[row] = s;
}

// ---------------------------------------------------------------------------------------------------------------
// Backward dK / dV: one CTA per (b, h, key block); own rows are keys, streamed rows are queries.
// Shared: Kt, Vt [D][kTP], Qs, dOs [64][D+1], Ps, dSs [64][kTP], then per streamed query: LSE·log2e, D, limit.
template <int D, class T>
__global__ void __launch_bounds__(kThreads) flash_backward_dkdv_kernel(
    T* __restrict__ dk, T* __restrict__ dv, const T* __restrict__ dout, const T* __restrict__ q,
    const T* __restrict__ k, const T* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ Dsum,
    FlashParams p, int64_t nkb, uint64_t dkey, float inv_keep) {
  constexpr int E = D / 16;
  extern __shared__ float4 smem4[];
  float* Kt = reinterpret_cast<float*>(smem4);
  float* Vt = Kt + D * kTP;
  float* Qs = Vt + D * kTP;
  float* dOs = Qs + kTile * (D + 1);
  float* Ps = dOs + kTile * (D + 1);
  float* dSs = Ps + kTile * kTP;
  float* lse2s = dSs + kTile * kTP;
  float* Ds = lse2s + kTile;
  int64_t* limq = reinterpret_cast<int64_t*>(Ds + kTile);  // 8-byte aligned: offset is a multiple of 4 floats

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4, d = static_cast<int>(p.d);
  const int64_t kb = blockIdx.x % nkb, bh = blockIdx.x / nkb, h = bh % p.H, b = bh / p.H;
  const int64_t j0 = kb * kTile, Tq = p.T, Tk = p.Tk, kvl = kv_len_of(p, b);
  const T* qh = q + b * p.q.batch + h * p.q.head;
  const T* gh = dout + b * p.dout.batch + h * p.dout.head;
  const bool dropout = p.dropout_p > 0.0f;
  const float sl2 = p.scale * kLog2e;

  float dka[4][E], dva[4][E];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int e = 0; e < E; ++e) dka[i][e] = dva[i][e] = 0.0f;

  if (j0 < kvl) {  // keys at or past kv_len are seen by no query: their gradients stay 0
    load_transposed<D>(Kt, k + b * p.k.batch + h * p.k.head, p.k.row, j0, Tk, d);
    load_transposed<D>(Vt, v + b * p.v.batch + h * p.v.head, p.v.row, j0, Tk, d);
    // Causal: query i sees key j0 iff j0 <= i + Tk - T, so earlier query blocks are skipped.
    const int64_t q_first = p.causal ? (j0 - (Tk - Tq) > 0 ? j0 - (Tk - Tq) : 0) : 0;
    for (int64_t i0 = (q_first / kTile) * kTile; i0 < Tq; i0 += kTile) {
      __syncthreads();  // previous block's readers of Qs / dOs / Ps / dSs are done
      load_rows<D>(Qs, qh, p.q.row, i0, Tq, d);
      load_rows<D>(dOs, gh, p.dout.row, i0, Tq, d);
      for (int r = threadIdx.x; r < kTile; r += kThreads) {
        const int64_t row = i0 + r;
        const bool in = row < Tq;
        lse2s[r] = in ? lse[bh * Tq + row] * kLog2e : INFINITY;
        Ds[r] = in ? Dsum[bh * Tq + row] : 0.0f;
        limq[r] = in ? flash_key_limit(row, Tq, Tk, p.causal, kvl) : 0;
      }
      __syncthreads();
      float s[4][4] = {}, dp[4][4] = {};
      micro_tile_product<D>(s, Kt, Qs, ty, tx);    // Sᵀ: keys × queries
      micro_tile_product<D>(dp, Vt, dOs, ty, tx);  // dPᵀ before dropout
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int qc = tx + 16 * j;
        const float lse2 = lse2s[qc], Dq = Ds[qc];
        const int64_t lq = limq[qc];
        Philox4 bits{};
        if (dropout) bits = flash_dropout_bits4(dkey, b, h, i0 + qc, (j0 + ty * 4) >> 2);  // this thread's 4 keys
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int64_t key = j0 + ty * 4 + i;
          const float P = key < lq ? exp2f(s[i][j] * sl2 - lse2) : 0.0f;
          const float z =
              dropout ? (flash_dropout_keep_word(flash_philox_word(bits, i), p.dropout_p) ? inv_keep : 0.0f) : 1.0f;
          Ps[(ty * 4 + i) * kTP + qc] = P * z;
          dSs[(ty * 4 + i) * kTP + qc] = P * (dp[i][j] * z - Dq);
        }
      }
      __syncthreads();
      accumulate_rows<D>(dva, Ps, dOs, ty, tx);
      accumulate_rows<D>(dka, dSs, Qs, ty, tx);
    }
  }

  T* dkh = dk + b * p.dk.batch + h * p.dk.head;
  T* dvh = dv + b * p.dv.batch + h * p.dv.head;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t key = j0 + ty * 4 + i;
    if (key >= Tk) continue;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int col = tx + 16 * e;
      if (col >= d) continue;
      store_f(dkh + key * p.dk.row + col, p.scale * dka[i][e]);
      store_f(dvh + key * p.dv.row + col, dva[i][e]);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Backward dQ: one CTA per (b, h, query block), looping over key blocks; dQ accumulates in registers.
// Shared: Qt, dOt [D][kTP], Ks, Vs [64][D+1], dSs [64][kTP].
template <int D, class T>
__global__ void __launch_bounds__(kThreads) flash_backward_dq_kernel(
    T* __restrict__ dq, const T* __restrict__ dout, const T* __restrict__ q, const T* __restrict__ k,
    const T* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ Dsum, FlashParams p,
    int64_t nqb, uint64_t dkey, float inv_keep) {
  constexpr int E = D / 16;
  extern __shared__ float4 smem4[];
  float* Qt = reinterpret_cast<float*>(smem4);
  float* dOt = Qt + D * kTP;
  float* Ks = dOt + D * kTP;
  float* Vs = Ks + kTile * (D + 1);
  float* dSs = Vs + kTile * (D + 1);

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4, d = static_cast<int>(p.d);
  const int64_t qb = blockIdx.x % nqb, bh = blockIdx.x / nqb, h = bh % p.H, b = bh / p.H;
  const int64_t i0 = qb * kTile, Tq = p.T, Tk = p.Tk, kvl = kv_len_of(p, b);
  const T* kh = k + b * p.k.batch + h * p.k.head;
  const T* vh = v + b * p.v.batch + h * p.v.head;
  const bool dropout = p.dropout_p > 0.0f;
  const float sl2 = p.scale * kLog2e;

  load_transposed<D>(Qt, q + b * p.q.batch + h * p.q.head, p.q.row, i0, Tq, d);
  load_transposed<D>(dOt, dout + b * p.dout.batch + h * p.dout.head, p.dout.row, i0, Tq, d);
  int64_t lim[4];
  float lse2[4], Dr[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = i0 + ty * 4 + i;
    const bool in = row < Tq;
    lim[i] = in ? flash_key_limit(row, Tq, Tk, p.causal, kvl) : 0;
    lse2[i] = in ? lse[bh * Tq + row] * kLog2e : INFINITY;
    Dr[i] = in ? Dsum[bh * Tq + row] : 0.0f;
  }
  const int64_t last = (i0 + kTile < Tq ? i0 + kTile : Tq) - 1;
  const int64_t kend = flash_key_limit(last, Tq, Tk, p.causal, kvl);

  float dqa[4][E];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int e = 0; e < E; ++e) dqa[i][e] = 0.0f;

  for (int64_t j0 = 0; j0 < kend; j0 += kTile) {
    __syncthreads();
    load_rows<D>(Ks, kh, p.k.row, j0, Tk, d);
    load_rows<D>(Vs, vh, p.v.row, j0, Tk, d);
    __syncthreads();
    float s[4][4] = {}, dp[4][4] = {};
    micro_tile_product<D>(s, Qt, Ks, ty, tx);
    micro_tile_product<D>(dp, dOt, Vs, ty, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t key = j0 + tx + 16 * j;
        const float P = key < lim[i] ? exp2f(s[i][j] * sl2 - lse2[i]) : 0.0f;
        const float z =
            dropout ? dropout_factor(dkey, b, h, i0 + ty * 4 + i, key, p.dropout_p, inv_keep) : 1.0f;
        dSs[(ty * 4 + i) * kTP + tx + 16 * j] = P * (dp[i][j] * z - Dr[i]);
      }
    __syncthreads();
    accumulate_rows<D>(dqa, dSs, Ks, ty, tx);
  }

  T* dqh = dq + b * p.dq.batch + h * p.dq.head;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = i0 + ty * 4 + i;
    if (row >= Tq) continue;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int col = tx + 16 * e;
      if (col < d) store_f(dqh + row * p.dq.row + col, p.scale * dqa[i][e]);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor-core kernels (p.precision tf32 or bf16): the CTA bodies are flash_tc::forward_cta, backward_dkdv_cta and
// backward_dq_cta (kernels/flash_attention_tc.h), shared with the CPU block emulator of the tests; this is their
// device: PTX mma.sync and cvt.rna, warp shuffles, __syncthreads.
struct TcDevice {
  float* smem_;
  __device__ __forceinline__ int tid() const { return static_cast<int>(threadIdx.x); }
  __device__ __forceinline__ float* smem() const { return smem_; }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  __device__ __forceinline__ float shfl_xor(float v, int lane_mask) const {
    return __shfl_xor_sync(kFullMask, v, lane_mask);
  }
  __device__ __forceinline__ float round_tf32(float x) const {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return __uint_as_float(r);
  }
  __device__ __forceinline__ uint32_t bits(float x) const { return __float_as_uint(x); }
  __device__ __forceinline__ float from_bits(uint32_t x) const { return __uint_as_float(x); }
  __device__ __forceinline__ float exp2(float x) const { return exp2f(x); }
  __device__ __forceinline__ float log2(float x) const { return log2f(x); }
  __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) const {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

template <int D, MatmulPrecision Prec>
__global__ void __launch_bounds__(flash_tc::kThreads) flash_forward_tc_kernel(
    float* __restrict__ o, float* __restrict__ lse, const float* __restrict__ q, const float* __restrict__ k,
    const float* __restrict__ v, FlashParams p, int64_t nqb, uint64_t dkey, float inv_keep) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ float4 smem4[];
  TcDevice dev{reinterpret_cast<float*>(smem4)};
  flash_tc::forward_cta<D, Prec>(dev, static_cast<int64_t>(blockIdx.x), o, lse, q, k, v, p, nqb, dkey, inv_keep);
#else
  __trap();  // the launcher only picks this kernel on compute capability >= 8.0
#endif
}

template <int D, MatmulPrecision Prec>
__global__ void __launch_bounds__(flash_tc::kThreads) flash_backward_dkdv_tc_kernel(
    float* __restrict__ dk, float* __restrict__ dv, const float* __restrict__ dout, const float* __restrict__ q,
    const float* __restrict__ k, const float* __restrict__ v, const float* __restrict__ lse,
    const float* __restrict__ Dsum, FlashParams p, int64_t nkb, uint64_t dkey, float inv_keep) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ float4 smem4[];
  TcDevice dev{reinterpret_cast<float*>(smem4)};
  flash_tc::backward_dkdv_cta<D, Prec>(dev, static_cast<int64_t>(blockIdx.x), dk, dv, dout, q, k, v, lse, Dsum, p,
                                       nkb, dkey, inv_keep);
#else
  __trap();
#endif
}

template <int D, MatmulPrecision Prec>
__global__ void __launch_bounds__(flash_tc::kThreads) flash_backward_dq_tc_kernel(
    float* __restrict__ dq, const float* __restrict__ dout, const float* __restrict__ q, const float* __restrict__ k,
    const float* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ Dsum, FlashParams p,
    int64_t nqb, uint64_t dkey, float inv_keep) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ float4 smem4[];
  TcDevice dev{reinterpret_cast<float*>(smem4)};
  flash_tc::backward_dq_cta<D, Prec>(dev, static_cast<int64_t>(blockIdx.x), dq, dout, q, k, v, lse, Dsum, p, nqb,
                                     dkey, inv_keep);
#else
  __trap();
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// Launchers.

constexpr size_t forward_smem_bytes(int D) {
  return sizeof(float) * (static_cast<size_t>(D) * kTP + 2 * kTile * (D + 1) + kTile * kTP);
}
constexpr size_t dkdv_smem_bytes(int D) {
  return sizeof(float) * (2 * static_cast<size_t>(D) * kTP + 2 * kTile * (D + 1) + 2 * kTile * kTP + 2 * kTile) +
         sizeof(int64_t) * kTile;
}
constexpr size_t dq_smem_bytes(int D) {
  return sizeof(float) * (2 * static_cast<size_t>(D) * kTP + 2 * kTile * (D + 1) + kTile * kTP);
}
static_assert(dkdv_smem_bytes(128) <= 227 * 1024, "dK/dV tile exceeds the sm_90 shared-memory opt-in limit");
static_assert(flash_tc::backward_dkdv_smem_bytes(128) <= 163 * 1024 &&
                  flash_tc::backward_dq_smem_bytes(128) <= 163 * 1024,
              "TF32 tiles exceed the sm_80 shared-memory opt-in limit");
static_assert(flash_tc::kRows == kTile, "both forward kernels split queries into the same 64-row blocks");

// Launches kernel<<<grid, threads, smem, stream>>>(args...), opting in to > 48 KB of dynamic shared memory.
template <class Kernel, class... Args>
void launch_threads(Kernel kernel, int64_t grid, int threads, size_t smem, cudaStream_t stream, Args... args) {
  if (smem > kDefaultSmem)
    MIXGRAD_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
  kernel<<<static_cast<unsigned>(grid), threads, smem, stream>>>(args...);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}
template <class Kernel, class... Args>
void launch(Kernel kernel, int64_t grid, size_t smem, cudaStream_t stream, Args... args) {
  launch_threads(kernel, grid, kThreads, smem, stream, args...);
}

// Whether p runs on the tensor-core kernels: a reduced precision asked for, and a device that can hold the tiles
// (otherwise the fp32 SIMT kernels run, as they would at fp32).
bool use_tensor_cores(const FlashParams& p, size_t smem_bytes) {
  if (p.precision == MatmulPrecision::fp32) return false;
  // TF32 mma.sync needs compute capability 8.0; the opt-in shared memory per block is 99 KB on 8.6 / 8.9, 163 KB
  // on 8.0 and 227 KB on 9.0.
  const DeviceFacts d = current_device_facts();
  return d.major >= 8 && smem_bytes <= d.smem_optin;
}

// Calls f(std::integral_constant<int, D>) with the smallest supported tile head dim D >= d.
template <class F>
void dispatch_head_dim(int64_t d, const char* op, F&& f) {
  if (d <= 32) return f(std::integral_constant<int, 32>{});
  if (d <= 64) return f(std::integral_constant<int, 64>{});
  if (d <= 128) return f(std::integral_constant<int, 128>{});
  throw std::invalid_argument(std::string(op) + ": head dim d = " + std::to_string(d) +
                              " is not supported by the CUDA kernels (d <= " + std::to_string(kFlashMaxHeadDim) +
                              ")");
}

// Calls f(std::integral_constant<MatmulPrecision, Prec>) for the tensor-core precisions (tf32, bf16).
template <class F>
void dispatch_precision(MatmulPrecision precision, F&& f) {
  if (precision == MatmulPrecision::bf16) return f(std::integral_constant<MatmulPrecision, MatmulPrecision::bf16>{});
  return f(std::integral_constant<MatmulPrecision, MatmulPrecision::tf32>{});
}

int64_t blocks_of(int64_t n) { return (n + kTile - 1) / kTile; }

void check_grid(int64_t grid, const char* op) {
  if (grid > INT32_MAX) throw std::invalid_argument(std::string(op) + ": B·H·blocks exceeds the CUDA grid limit");
}

float inverse_keep(const FlashParams& p) { return 1.0f / (1.0f - p.dropout_p); }
uint64_t dropout_key(const FlashParams& p) {
  return p.dropout_p > 0.0f ? flash_dropout_key(p.seed, p.offset) : 0;
}

}  // namespace

void flash_attention_forward(float* o, float* lse, const float* q, const float* k, const float* v,
                             const FlashParams& p, cudaStream_t stream) {
  const char* op = "flash_attention_forward (cuda)";
  flash_check_params(p, op);
  if (p.B == 0 || p.H == 0 || p.T == 0) return;
  const int64_t nqb = blocks_of(p.T), grid = nqb * p.B * p.H;
  check_grid(grid, op);
  dispatch_head_dim(p.d, op, [&](auto dim) {
    constexpr int D = decltype(dim)::value;
    if (use_tensor_cores(p, flash_tc::forward_smem_bytes(D)))
      dispatch_precision(p.precision, [&](auto prec) {
        launch_threads(flash_forward_tc_kernel<D, decltype(prec)::value>, grid, flash_tc::kThreads,
                       flash_tc::forward_smem_bytes(D), stream, o, lse, q, k, v, p, nqb, dropout_key(p),
                       inverse_keep(p));
      });
    else
      launch(flash_forward_kernel<D, float>, grid, forward_smem_bytes(D), stream, o, lse, q, k, v, p, nqb,
             dropout_key(p), inverse_keep(p));
  });
}

size_t flash_attention_backward_workspace_bytes(const FlashParams& p) {
  const size_t n = static_cast<size_t>(std::max<int64_t>(p.B * p.H * p.T, 1));
  return (n * sizeof(float) + 255) / 256 * 256;
}

void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                              const float* v, const float* o, const float* lse, const FlashParams& p,
                              void* workspace, cudaStream_t stream) {
  const char* op = "flash_attention_backward (cuda)";
  flash_check_params(p, op);
  if (p.B == 0 || p.H == 0) return;
  if (p.T > 0 && workspace == nullptr) throw std::invalid_argument(std::string(op) + ": workspace is null");
  float* Dsum = static_cast<float*>(workspace);
  const int64_t nqb = blocks_of(p.T), nkb = blocks_of(p.Tk);
  check_grid(nqb * p.B * p.H, op);
  check_grid(nkb * p.B * p.H, op);
  const uint64_t dkey = dropout_key(p);
  const float inv_keep = inverse_keep(p);
  dispatch_head_dim(p.d, op, [&](auto dim) {
    constexpr int D = decltype(dim)::value;
    const int64_t nrows = p.B * p.H * p.T;
    if (nrows > 0) {
      const int64_t rows_per_block = kThreads / 32;
      check_grid((nrows + rows_per_block - 1) / rows_per_block, op);
      launch(flash_backward_dot_kernel<float>, (nrows + rows_per_block - 1) / rows_per_block, 0, stream, Dsum, dout,
             o, p, nrows);
    }
    const float* Dc = Dsum;
    if (use_tensor_cores(p, std::max(flash_tc::backward_dkdv_smem_bytes(D), flash_tc::backward_dq_smem_bytes(D)))) {
      dispatch_precision(p.precision, [&](auto prec) {
        constexpr MatmulPrecision Prec = decltype(prec)::value;
        if (nkb > 0)
          launch_threads(flash_backward_dkdv_tc_kernel<D, Prec>, nkb * p.B * p.H, flash_tc::kThreads,
                         flash_tc::backward_dkdv_smem_bytes(D), stream, dk, dv, dout, q, k, v, lse, Dc, p, nkb, dkey,
                         inv_keep);
        if (nqb > 0)
          launch_threads(flash_backward_dq_tc_kernel<D, Prec>, nqb * p.B * p.H, flash_tc::kThreads,
                         flash_tc::backward_dq_smem_bytes(D), stream, dq, dout, q, k, v, lse, Dc, p, nqb, dkey,
                         inv_keep);
      });
      return;
    }
    if (nkb > 0)
      launch(flash_backward_dkdv_kernel<D, float>, nkb * p.B * p.H, dkdv_smem_bytes(D), stream, dk, dv, dout, q, k, v,
             lse, Dc, p, nkb, dkey, inv_keep);
    if (nqb > 0)
      launch(flash_backward_dq_kernel<D, float>, nqb * p.B * p.H, dq_smem_bytes(D), stream, dq, dout, q, k, v, lse,
             Dc, p, nqb, dkey, inv_keep);
  });
}

}  // namespace mixgrad::kernels::cuda
