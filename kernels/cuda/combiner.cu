// Combiner attention on CUDA: kernels first (one warp per (b, h, row), grid-stride over rows), launchers after. The
// per-row work is the CPU reference's (kernels/cpu/combiner.cpp) with each lane holding the channels
// lane + 32·r (r < kPerLane) and dot products reduced by warp shuffles.
#include <cmath>

#include "kernels/cuda/check.h"
#include "kernels/cuda/combiner.h"
#include "kernels/cuda/reduce_utils.cuh"

namespace mixgrad::kernels::cuda {
namespace {

constexpr int kPerLane = int(kCombinerMaxHeadDim / 32);
constexpr int kWarps = 4;

struct LaneRow {
  float x[kPerLane];
};

__device__ __forceinline__ LaneRow load_row(const float* p, int64_t d, int lane) {
  LaneRow r;
#pragma unroll
  for (int u = 0; u < kPerLane; ++u) {
    const int64_t c = lane + 32 * u;
    r.x[u] = c < d ? p[c] : 0.f;
  }
  return r;
}

__device__ __forceinline__ LaneRow zero_row() {
  LaneRow r;
#pragma unroll
  for (int u = 0; u < kPerLane; ++u) r.x[u] = 0.f;
  return r;
}

__device__ __forceinline__ void store_row(float* p, const LaneRow& r, int64_t d, int lane) {
#pragma unroll
  for (int u = 0; u < kPerLane; ++u) {
    const int64_t c = lane + 32 * u;
    if (c < d) p[c] = r.x[u];
  }
}

// a · p over d channels; every lane gets the sum.
__device__ __forceinline__ float row_dot(const LaneRow& a, const float* p, int64_t d, int lane) {
  float s = 0.f;
#pragma unroll
  for (int u = 0; u < kPerLane; ++u) {
    const int64_t c = lane + 32 * u;
    if (c < d) s += a.x[u] * p[c];
  }
  return warp_sum(s);
}

// acc += a · p (channels of this lane).
__device__ __forceinline__ void row_axpy(LaneRow& acc, float a, const float* p, int64_t d, int lane) {
#pragma unroll
  for (int u = 0; u < kPerLane; ++u) {
    const int64_t c = lane + 32 * u;
    if (c < d) acc.x[u] += a * p[c];
  }
}

struct Online {
  float m = -INFINITY, l = 0.f;
  LaneRow acc;
  __device__ void add(float x, const float* val, int64_t d, int lane) {
    const float m_new = x > m ? x : m;
    const float alpha = expf(m - m_new), p = expf(x - m_new);
    l = l * alpha + p;
#pragma unroll
    for (int u = 0; u < kPerLane; ++u) {
      const int64_t c = lane + 32 * u;
      acc.x[u] = acc.x[u] * alpha + p * (c < d ? val[c] : 0.f);
    }
    m = m_new;
  }
};

// Channel-wise max over the first n members of span s (first token on ties), into out/arg for this lane's channels.
__device__ void max_pool(LaneRow& out, int32_t* arg, const float* x, const CombinerIndex& ix, int64_t s, int64_t n,
                         int64_t d, int lane) {
  const int64_t start = ix.span_start[s], stride = ix.span_stride[s];
  int32_t a[kPerLane];
  out = load_row(x + start * d, d, lane);
#pragma unroll
  for (int u = 0; u < kPerLane; ++u) a[u] = int32_t(start);
  for (int64_t t = 1; t < n; ++t) {
    const int64_t tok = start + t * stride;
#pragma unroll
    for (int u = 0; u < kPerLane; ++u) {
      const int64_t c = lane + 32 * u;
      if (c < d && x[tok * d + c] > out.x[u]) out.x[u] = x[tok * d + c], a[u] = int32_t(tok);
    }
  }
#pragma unroll
  for (int u = 0; u < kPerLane; ++u) {
    const int64_t c = lane + 32 * u;
    if (c < d) arg[c] = a[u];
  }
}

// The warp's rows: row = blockIdx.x·kWarps + warp, grid-stride.
#define COMBINER_FOR_EACH_ROW(row, rows)                                              \
  for (int64_t row = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5); row < (rows); \
       row += int64_t(gridDim.x) * kWarps)

__global__ void __launch_bounds__(kWarps * 32)
    summary_forward_kernel(float* sq, float* sk, float* sv, float* slse, int32_t* qarg, int32_t* karg, const float* q,
                           const float* k, const float* v, const int32_t* lengths, CombinerIndex ix, int64_t H,
                           int64_t rows, int64_t d, float scale) {
  const int lane = threadIdx.x & 31;
  COMBINER_FOR_EACH_ROW(row, rows) {
    const int64_t bh = row / ix.S, s = row % ix.S, len = combiner_length(lengths, bh / H, ix.L);
    const int64_t sr = row * d, tok = bh * ix.L * d, n = combiner_valid_members(ix, s, len);
    if (n == 0) {
      for (int64_t c = lane; c < d; c += 32)
        sq[sr + c] = sk[sr + c] = sv[sr + c] = 0.f, qarg[sr + c] = karg[sr + c] = -1;
      if (lane == 0) slse[row] = INFINITY;
      continue;
    }
    LaneRow kq, qq;
    max_pool(kq, karg + sr, k + tok, ix, s, n, d, lane);
    const int64_t qt = combiner_query_token(ix, s, len);
    if (qt >= 0) {
      qq = load_row(q + tok + qt * d, d, lane);
      for (int64_t c = lane; c < d; c += 32) qarg[sr + c] = int32_t(qt);
    } else {
      max_pool(qq, qarg + sr, q + tok, ix, s, n, d, lane);
    }
    store_row(sk + sr, kq, d, lane);
    store_row(sq + sr, qq, d, lane);
    Online on;
    on.acc = zero_row();
    for (int64_t t = 0; t < n; ++t) {
      const int64_t j = ix.span_start[s] + t * ix.span_stride[s];
      on.add(scale * row_dot(qq, k + tok + j * d, d, lane), v + tok + j * d, d, lane);
    }
#pragma unroll
    for (int u = 0; u < kPerLane; ++u) on.acc.x[u] /= on.l;
    store_row(sv + sr, on.acc, d, lane);
    if (lane == 0) slse[row] = on.m + logf(on.l);
  }
}

__global__ void __launch_bounds__(kWarps * 32)
    forward_kernel(float* o, float* lse, const float* q, const float* k, const float* v, const float* sk,
                   const float* sv, const int32_t* lengths, CombinerIndex ix, int64_t H, int64_t rows, int64_t d,
                   float scale) {
  const int lane = threadIdx.x & 31;
  COMBINER_FOR_EACH_ROW(row, rows) {
    const int64_t bh = row / ix.L, i = row % ix.L, len = combiner_length(lengths, bh / H, ix.L);
    const int64_t tok = bh * ix.L * d, srow = bh * ix.S * d;
    Online on;
    on.acc = zero_row();
    if (i < len) {
      const LaneRow qi = load_row(q + row * d, d, lane);
      for (int32_t e = ix.dir_off[i]; e < ix.dir_off[i + 1]; ++e) {
        const int64_t j = ix.dir_idx[e];
        if (j < len) on.add(scale * row_dot(qi, k + tok + j * d, d, lane), v + tok + j * d, d, lane);
      }
      for (int32_t e = ix.col_off[i]; e < ix.col_off[i + 1]; ++e) {
        const int64_t s = ix.col_idx[e];
        if (combiner_valid_members(ix, s, len) > 0)
          on.add(scale * row_dot(qi, sk + srow + s * d, d, lane), sv + srow + s * d, d, lane);
      }
    }
    const bool any = on.l > 0.f;
#pragma unroll
    for (int u = 0; u < kPerLane; ++u) on.acc.x[u] = any ? on.acc.x[u] / on.l : 0.f;
    store_row(o + row * d, on.acc, d, lane);
    if (lane == 0) lse[row] = any ? on.m + logf(on.l) : INFINITY;
  }
}

__global__ void __launch_bounds__(kWarps * 32)
    delta_kernel(float* delta, const float* dout, const float* o, const int32_t* lengths, CombinerIndex ix, int64_t H,
                 int64_t rows, int64_t d) {
  const int lane = threadIdx.x & 31;
  COMBINER_FOR_EACH_ROW(row, rows) {
    const int64_t bh = row / ix.L, i = row % ix.L;
    const float s = row_dot(load_row(dout + row * d, d, lane), o + row * d, d, lane);
    if (lane == 0) delta[row] = i < combiner_length(lengths, bh / H, ix.L) ? s : 0.f;
  }
}

// p = exp(scale·a·key − lse) and p·(b·value − delta) for one pair.
__device__ __forceinline__ float score_grad(float& p, const LaneRow& a, const float* key, const LaneRow& b,
                                            const float* value, float lse, float delta, int64_t d, float scale,
                                            int lane) {
  p = expf(scale * row_dot(a, key, d, lane) - lse);
  return p * (row_dot(b, value, d, lane) - delta);
}

__global__ void __launch_bounds__(kWarps * 32)
    dq_kernel(float* dq, const float* dout, const float* q, const float* k, const float* v, const float* sk,
              const float* sv, const float* lse, const float* delta, const int32_t* lengths, CombinerIndex ix,
              int64_t H, int64_t rows, int64_t d, float scale) {
  const int lane = threadIdx.x & 31;
  COMBINER_FOR_EACH_ROW(row, rows) {
    const int64_t bh = row / ix.L, i = row % ix.L, len = combiner_length(lengths, bh / H, ix.L);
    const int64_t tok = bh * ix.L * d, srow = bh * ix.S * d;
    LaneRow g = zero_row();
    if (i < len) {
      const LaneRow qi = load_row(q + row * d, d, lane), gi = load_row(dout + row * d, d, lane);
      float p;
      for (int32_t e = ix.dir_off[i]; e < ix.dir_off[i + 1]; ++e) {
        const int64_t j = ix.dir_idx[e];
        if (j >= len) continue;
        const float ds = score_grad(p, qi, k + tok + j * d, gi, v + tok + j * d, lse[row], delta[row], d, scale, lane);
        row_axpy(g, scale * ds, k + tok + j * d, d, lane);
      }
      for (int32_t e = ix.col_off[i]; e < ix.col_off[i + 1]; ++e) {
        const int64_t s = ix.col_idx[e];
        if (combiner_valid_members(ix, s, len) == 0) continue;
        const float* key = sk + srow + s * d;
        const float ds = score_grad(p, qi, key, gi, sv + srow + s * d, lse[row], delta[row], d, scale, lane);
        row_axpy(g, scale * ds, key, d, lane);
      }
    }
    store_row(dq + row * d, g, d, lane);
  }
}

// Gradients of the key/value rows `key`, `value` (a token's k, v or a span's sk, sv) from the queries
// qlist[off[c] .. off[c + 1]) that read column c.
__device__ void gather_column_grads(LaneRow& gk, LaneRow& gv, const float* key, const float* value, const int32_t* off,
                                    const int32_t* qlist, int64_t c, const float* dout, const float* q,
                                    const float* lse, const float* delta, int64_t bh, int64_t len, int64_t L, int64_t d,
                                    float scale, int lane) {
  const LaneRow kr = load_row(key, d, lane), vr = load_row(value, d, lane);
  for (int32_t e = off[c]; e < off[c + 1]; ++e) {
    const int64_t i = qlist[e], r = bh * L + i;
    if (i >= len) continue;
    const float p = expf(scale * row_dot(kr, q + r * d, d, lane) - lse[r]);
    const float ds = p * (row_dot(vr, dout + r * d, d, lane) - delta[r]);
    row_axpy(gk, scale * ds, q + r * d, d, lane);
    row_axpy(gv, p, dout + r * d, d, lane);
  }
}

__global__ void __launch_bounds__(kWarps * 32)
    dkv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
               const float* lse, const float* delta, const int32_t* lengths, CombinerIndex ix, int64_t H, int64_t rows,
               int64_t d, float scale) {
  const int lane = threadIdx.x & 31;
  COMBINER_FOR_EACH_ROW(row, rows) {
    const int64_t bh = row / ix.L, j = row % ix.L, len = combiner_length(lengths, bh / H, ix.L);
    LaneRow gk = zero_row(), gv = zero_row();
    if (j < len)
      gather_column_grads(gk, gv, k + row * d, v + row * d, ix.key_off, ix.key_q, j, dout, q, lse, delta, bh, len, ix.L,
                          d, scale, lane);
    store_row(dk + row * d, gk, d, lane);
    store_row(dv + row * d, gv, d, lane);
  }
}

__global__ void __launch_bounds__(kWarps * 32)
    dspan_kernel(float* dsk, float* dsv, const float* dout, const float* q, const float* sk, const float* sv,
                 const float* lse, const float* delta, const int32_t* lengths, CombinerIndex ix, int64_t H,
                 int64_t rows, int64_t d, float scale) {
  const int lane = threadIdx.x & 31;
  COMBINER_FOR_EACH_ROW(row, rows) {
    const int64_t bh = row / ix.S, s = row % ix.S, len = combiner_length(lengths, bh / H, ix.L);
    LaneRow gk = zero_row(), gv = zero_row();
    if (combiner_valid_members(ix, s, len) > 0)
      gather_column_grads(gk, gv, sk + row * d, sv + row * d, ix.span_off, ix.span_q, s, dout, q, lse, delta, bh, len,
                          ix.L, d, scale, lane);
    store_row(dsk + row * d, gk, d, lane);
    store_row(dsv + row * d, gv, d, lane);
  }
}

__global__ void __launch_bounds__(kWarps * 32)
    summary_dq_kernel(float* dsq, float* sdelta, const float* dsv, const float* k, const float* v, const float* sq,
                      const float* sv, const float* slse, const int32_t* lengths, CombinerIndex ix, int64_t H,
                      int64_t rows, int64_t d, float scale) {
  const int lane = threadIdx.x & 31;
  COMBINER_FOR_EACH_ROW(row, rows) {
    const int64_t bh = row / ix.S, s = row % ix.S, len = combiner_length(lengths, bh / H, ix.L);
    const int64_t sr = row * d, tok = bh * ix.L * d, n = combiner_valid_members(ix, s, len);
    LaneRow g = zero_row();
    const LaneRow a = load_row(sq + sr, d, lane), b = load_row(dsv + sr, d, lane);
    const float del = n > 0 ? row_dot(b, sv + sr, d, lane) : 0.f;
    float p;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t j = ix.span_start[s] + t * ix.span_stride[s];
      const float ds = score_grad(p, a, k + tok + j * d, b, v + tok + j * d, slse[row], del, d, scale, lane);
      row_axpy(g, scale * ds, k + tok + j * d, d, lane);
    }
    store_row(dsq + sr, g, d, lane);
    if (lane == 0) sdelta[row] = del;
  }
}

__global__ void __launch_bounds__(kWarps * 32)
    summary_member_kernel(float* dq, float* dk, float* dv, const float* dsq, const float* sdelta, const float* dsk,
                          const float* dsv, const float* k, const float* v, const float* sq, const float* slse,
                          const int32_t* qarg, const int32_t* karg, const int32_t* lengths, CombinerIndex ix, int64_t H,
                          int64_t rows, int64_t d, float scale) {
  const int lane = threadIdx.x & 31;
  COMBINER_FOR_EACH_ROW(row, rows) {
    const int64_t bh = row / ix.L, j = row % ix.L, len = combiner_length(lengths, bh / H, ix.L);
    if (j >= len) continue;
    LaneRow gq = load_row(dq + row * d, d, lane), gk = load_row(dk + row * d, d, lane),
            gv = load_row(dv + row * d, d, lane);
    const LaneRow kj = load_row(k + row * d, d, lane), vj = load_row(v + row * d, d, lane);
    for (int32_t e = ix.mem_off[j]; e < ix.mem_off[j + 1]; ++e) {
      const int64_t srow = bh * ix.S + ix.mem_span[e], sr = srow * d;
      const float p = expf(scale * row_dot(kj, sq + sr, d, lane) - slse[srow]);
      const float ds = p * (row_dot(vj, dsv + sr, d, lane) - sdelta[srow]);
      row_axpy(gk, scale * ds, sq + sr, d, lane);
      row_axpy(gv, p, dsv + sr, d, lane);
#pragma unroll
      for (int u = 0; u < kPerLane; ++u) {
        const int64_t c = lane + 32 * u;
        if (c >= d) continue;
        if (karg[sr + c] == j) gk.x[u] += dsk[sr + c];
        if (qarg[sr + c] == j) gq.x[u] += dsq[sr + c];
      }
    }
    store_row(dq + row * d, gq, d, lane);
    store_row(dk + row * d, gk, d, lane);
    store_row(dv + row * d, gv, d, lane);
  }
}

#undef COMBINER_FOR_EACH_ROW

int grid_for(int64_t rows) { return int(std::min<int64_t>((rows + kWarps - 1) / kWarps, kMaxGrid)); }

}  // namespace

void combiner_summary_forward(float* sq, float* sk, float* sv, float* slse, int32_t* qarg, int32_t* karg,
                              const float* q, const float* k, const float* v, const int32_t* lengths,
                              const CombinerIndex& ix, int64_t B, int64_t H, int64_t d, float scale,
                              cudaStream_t stream) {
  const int64_t rows = B * H * ix.S;
  if (rows == 0 || d == 0) return;
  summary_forward_kernel<<<grid_for(rows), kWarps * 32, 0, stream>>>(sq, sk, sv, slse, qarg, karg, q, k, v, lengths, ix,
                                                                     H, rows, d, scale);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void combiner_forward(float* o, float* lse, const float* q, const float* k, const float* v, const float* sk,
                      const float* sv, const int32_t* lengths, const CombinerIndex& ix, int64_t B, int64_t H, int64_t d,
                      float scale, cudaStream_t stream) {
  const int64_t rows = B * H * ix.L;
  if (rows == 0 || d == 0) return;
  forward_kernel<<<grid_for(rows), kWarps * 32, 0, stream>>>(o, lse, q, k, v, sk, sv, lengths, ix, H, rows, d, scale);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void combiner_backward(float* dq, float* dk, float* dv, float* dsk, float* dsv, float* delta, const float* dout,
                       const float* q, const float* k, const float* v, const float* sk, const float* sv, const float* o,
                       const float* lse, const int32_t* lengths, const CombinerIndex& ix, int64_t B, int64_t H,
                       int64_t d, float scale, cudaStream_t stream) {
  const int64_t rows = B * H * ix.L, span_rows = B * H * ix.S;
  if (rows == 0 || d == 0) return;
  delta_kernel<<<grid_for(rows), kWarps * 32, 0, stream>>>(delta, dout, o, lengths, ix, H, rows, d);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  dq_kernel<<<grid_for(rows), kWarps * 32, 0, stream>>>(dq, dout, q, k, v, sk, sv, lse, delta, lengths, ix, H, rows, d,
                                                        scale);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  dkv_kernel<<<grid_for(rows), kWarps * 32, 0, stream>>>(dk, dv, dout, q, k, v, lse, delta, lengths, ix, H, rows, d,
                                                         scale);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  if (span_rows == 0) return;
  dspan_kernel<<<grid_for(span_rows), kWarps * 32, 0, stream>>>(dsk, dsv, dout, q, sk, sv, lse, delta, lengths, ix, H,
                                                                span_rows, d, scale);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void combiner_summary_backward(float* dq, float* dk, float* dv, float* dsq, float* sdelta, const float* dsk,
                               const float* dsv, const float* k, const float* v, const float* sq, const float* sv,
                               const float* slse, const int32_t* qarg, const int32_t* karg, const int32_t* lengths,
                               const CombinerIndex& ix, int64_t B, int64_t H, int64_t d, float scale,
                               cudaStream_t stream) {
  const int64_t rows = B * H * ix.L, span_rows = B * H * ix.S;
  if (span_rows == 0 || d == 0) return;
  summary_dq_kernel<<<grid_for(span_rows), kWarps * 32, 0, stream>>>(dsq, sdelta, dsv, k, v, sq, sv, slse, lengths, ix,
                                                                     H, span_rows, d, scale);
  MIXGRAD_CUDA_LAUNCH_CHECK();
  summary_member_kernel<<<grid_for(rows), kWarps * 32, 0, stream>>>(dq, dk, dv, dsq, sdelta, dsk, dsv, k, v, sq, slse,
                                                                    qarg, karg, lengths, ix, H, rows, d, scale);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

}  // namespace mixgrad::kernels::cuda
