// CPU gated-attention scores (see kernels/cpu/gated_attention.h for the math, the tiling and the determinism).
#include "kernels/cpu/gated_attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/vec_math.h"

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kTile = 64;    // queries (or keys) per tile and keys (or queries) per inner block
constexpr int64_t kGroups = 64;  // drel_bias partial rows: tasks are dealt to groups round-robin

// Everything a tile reads. D (softmax backward) = dout_i·out_i per row.
template <class T>
struct Operands {
  const T *q = nullptr, *k = nullptr, *v = nullptr, *bias = nullptr, *out = nullptr, *dout = nullptr, *lse = nullptr;
  const T* D = nullptr;
  const int32_t* lengths = nullptr;
  GattSizes s;
};

// One task: sample b, the valid block of its span, and positions [r0, r1) of that span (queries in the forward and in
// pass A, keys in pass B); [r0, r_valid) are the valid ones.
struct Tile {
  int64_t b = 0, r0 = 0, r1 = 0, r_valid = 0;
  GattBlock blk{0, 0};
};

int64_t tiles_per_span(const GattSizes& s) { return (s.span + kTile - 1) / kTile; }
int64_t task_count(const GattSizes& s) { return s.batch * s.spans() * tiles_per_span(s); }

Tile tile_of(const GattSizes& s, const int32_t* lengths, int64_t task) {
  const int64_t tps = tiles_per_span(s);
  const int64_t ti = task % tps, si = (task / tps) % s.spans();
  Tile t;
  t.b = task / (tps * s.spans());
  t.blk = gatt_block(s, si, gatt_valid_length(lengths, t.b, s.length));
  const int64_t span_end = std::min(s.length, (si + 1) * s.span);
  t.r0 = std::min(span_end, si * s.span + ti * kTile);
  t.r1 = std::min(span_end, t.r0 + kTile);
  t.r_valid = std::clamp(t.blk.hi, t.r0, t.r1);
  return t;
}

// out[c] = exp(in[c] − shift): float through vec::exp (vectorised), double through std::exp.
template <class T>
void exp_shifted(T* out, const T* in, T shift, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) out[c] = vec::exp(in[c] - shift);
  } else {
    for (int64_t c = 0; c < n; ++c) out[c] = std::exp(in[c] - shift);
  }
}

// S[r·kTile + c] = scale·q_{i0+r}·k_{j0+c} + rel_bias[P − 1 + j − i] for r < rows, c < cols.
template <class T>
void score_tile(T* S, const Operands<T>& o, int64_t b, int64_t i0, int64_t rows, int64_t j0, int64_t cols, T scale) {
  const GattSizes& s = o.s;
  gemm_strided_batched<T>(false, true, rows, cols, s.zdim, scale, o.q + (b * s.length + i0) * s.zdim, s.zdim, 0,
                          o.k + (b * s.length + j0) * s.zdim, s.zdim, 0, T(0), S, kTile, 0, 1);
  if (o.bias == nullptr) return;
  for (int64_t r = 0; r < rows; ++r) {
    const T* w = o.bias + (s.bias_half - 1 + j0 - (i0 + r));  // w[c] = bias at offset j0 + c − i
    T* row = S + r * kTile;
    for (int64_t c = 0; c < cols; ++c) row[c] += w[c];
  }
}

// dP[r·kTile + c] = dout_{i0+r}·v_{j0+c}.
template <class T>
void dprob_tile(T* dP, const Operands<T>& o, int64_t b, int64_t i0, int64_t rows, int64_t j0, int64_t cols) {
  const GattSizes& s = o.s;
  gemm_strided_batched<T>(false, true, rows, cols, s.vdim, T(1), o.dout + (b * s.length + i0) * s.vdim, s.vdim, 0,
                          o.v + (b * s.length + j0) * s.vdim, s.vdim, 0, T(0), dP, kTile, 0, 1);
}

// a[c] = f(a[c]) for c < n. Float laplace goes through vec::erf (vectorises; |error| < 5e-7, kernels/cpu/vec_math.h),
// float64 and relu² through the shared formula.
template <class T>
void fn_values(GattFn fn, T* a, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (fn == GattFn::laplace) {
      const float mu = float(kGattLaplaceMu), k = float(kInvSqrt2 / kGattLaplaceSigma);
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) a[c] = 0.5f * (1.0f + vec::erf((a[c] - mu) * k));
      return;
    }
  }
  for (int64_t c = 0; c < n; ++c) a[c] = gatt_value(fn, a[c]);
}

// a[c] = f(a[c]) and d[c] *= f'(a[c]) for c < n; float laplace takes the density from the same vec::erf call
// (f'(x) = e^(−z²)/(σ·√(2π)) with z = (x − μ)/(σ·√2)).
template <class T>
void fn_values_grads(GattFn fn, T* a, T* d, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (fn == GattFn::laplace) {
      const float mu = float(kGattLaplaceMu), k = float(kInvSqrt2 / kGattLaplaceSigma);
      const float density = float(kInvSqrt2Pi / kGattLaplaceSigma);
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) {
        float gauss;
        const float e = vec::erf((a[c] - mu) * k, gauss);
        a[c] = 0.5f * (1.0f + e);
        d[c] *= density * gauss;
      }
      return;
    }
  }
  for (int64_t c = 0; c < n; ++c) {
    const T x = a[c];
    a[c] = gatt_value(fn, x);
    d[c] *= gatt_grad(fn, x);
  }
}

// From the scores S and dP to the attention weights A (into S) and ds (into dP).
template <class T>
void grad_tile(T* S, T* dP, const Operands<T>& o, int64_t b, int64_t i0, int64_t rows, int64_t cols) {
  const GattSizes& s = o.s;
  for (int64_t r = 0; r < rows; ++r) {
    T* a = S + r * kTile;
    T* d = dP + r * kTile;
    if (s.fn == GattFn::softmax) {
      const int64_t row = b * s.length + i0 + r;
      exp_shifted(a, a, o.lse[row], cols);
      const T Dr = o.D[row];
      for (int64_t c = 0; c < cols; ++c) d[c] = a[c] * (d[c] - Dr);
    } else {
      fn_values_grads(s.fn, a, d, cols);
    }
  }
}

// Online softmax over one key block: rescales the rows' running sums l and accumulators acc [rows, E] to the new
// running max m, and turns S into exp(S − m).
template <class T>
void online_softmax(T* S, T* acc, T* m, T* l, int64_t rows, int64_t cols, int64_t E) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = S + r * kTile;
    const T mx = std::max(m[r], *std::max_element(row, row + cols));
    const T corr = std::exp(m[r] - mx);  // 0 on the first block (m = −inf)
    exp_shifted(row, row, mx, cols);
    T sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += row[c];
    l[r] = l[r] * corr + sum;
    m[r] = mx;
    if (corr != T(1))
      for (int64_t e = 0; e < E; ++e) acc[r * E + e] *= corr;
  }
}

template <class T>
struct Scratch {
  std::vector<T> S, dP, m, l;
  Scratch() : S(kTile * kTile), dP(kTile * kTile), m(kTile), l(kTile) {}
};

template <class T>
void forward_tile(T* out, T* lse, const Operands<T>& o, const Tile& t, Scratch<T>& w) {
  const GattSizes& s = o.s;
  T* acc = out + (t.b * s.length + t.r0) * s.vdim;
  std::fill(acc, acc + (t.r1 - t.r0) * s.vdim, T(0));  // padded rows stay 0
  const int64_t rows = t.r_valid - t.r0;
  if (rows <= 0) return;
  const T scale = gatt_scale<T>(s, t.blk);
  std::fill(w.m.begin(), w.m.end(), -std::numeric_limits<T>::infinity());
  std::fill(w.l.begin(), w.l.end(), T(0));
  for (int64_t j0 = t.blk.lo; j0 < t.blk.hi; j0 += kTile) {
    const int64_t cols = std::min(kTile, t.blk.hi - j0);
    score_tile(w.S.data(), o, t.b, t.r0, rows, j0, cols, scale);
    if (s.fn == GattFn::softmax) {
      online_softmax(w.S.data(), acc, w.m.data(), w.l.data(), rows, cols, s.vdim);
    } else {
      for (int64_t r = 0; r < rows; ++r) fn_values(s.fn, w.S.data() + r * kTile, cols);
    }
    gemm_strided_batched<T>(false, false, rows, s.vdim, cols, T(1), w.S.data(), kTile, 0,
                            o.v + (t.b * s.length + j0) * s.vdim, s.vdim, 0, T(1), acc, s.vdim, 0, 1);
  }
  if (s.fn != GattFn::softmax) return;
  for (int64_t r = 0; r < rows; ++r) {
    const T inv = T(1) / w.l[r];
    for (int64_t e = 0; e < s.vdim; ++e) acc[r * s.vdim + e] *= inv;
    lse[t.b * s.length + t.r0 + r] = w.m[r] + std::log(w.l[r]);
  }
}

// D_i = dout_i·out_i for every row (0 on padded rows, which no valid query reads).
template <class T>
void row_dots(T* D, const T* dout, const T* out, const GattSizes& s) {
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < s.batch * s.length; ++row) {
    T acc = 0;
    for (int64_t e = 0; e < s.vdim; ++e) acc += dout[row * s.vdim + e] * out[row * s.vdim + e];
    D[row] = acc;
  }
}

// Partial drel_bias rows: ds(i, j) is added at row[half − 1 + j − i] of the row the task owns.
template <class T>
struct BiasPartials {
  T* rows = nullptr;  // null: no bias
  int64_t count = 0, width = 0, half = 0;
};

// The tile's weights A (into w.S) and ds (into w.dP) for queries [i0, i0 + rows) and keys [j0, j0 + cols).
template <class T>
void grad_step(const Operands<T>& o, int64_t b, int64_t i0, int64_t rows, int64_t j0, int64_t cols, T scale,
               Scratch<T>& w) {
  score_tile(w.S.data(), o, b, i0, rows, j0, cols, scale);
  dprob_tile(w.dP.data(), o, b, i0, rows, j0, cols);
  grad_tile(w.S.data(), w.dP.data(), o, b, i0, rows, cols);
}

// row[half − 1 + j − i] += ds(i, j) over the tile.
template <class T>
void add_diagonals(T* row, int64_t half, const T* ds, int64_t i0, int64_t rows, int64_t j0, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    T* p = row + (half - 1 + j0 - (i0 + r));
    const T* d = ds + r * kTile;
    for (int64_t c = 0; c < cols; ++c) p[c] += d[c];
  }
}

// dq rows [i0, i0 + rows) += scale·ds·K_j.
template <class T>
void add_dq(T* dq, const Operands<T>& o, int64_t b, int64_t i0, int64_t rows, int64_t j0, int64_t cols, T scale,
            const Scratch<T>& w) {
  const GattSizes& s = o.s;
  gemm_strided_batched<T>(false, false, rows, s.zdim, cols, scale, w.dP.data(), kTile, 0,
                          o.k + (b * s.length + j0) * s.zdim, s.zdim, 0, T(1), dq + (b * s.length + i0) * s.zdim,
                          s.zdim, 0, 1);
}

// dv rows [j0, j0 + cols) += Aᵀ·dout_i and dk rows += scale·dsᵀ·Q_i.
template <class T>
void add_dkv(T* dk, T* dv, const Operands<T>& o, int64_t b, int64_t i0, int64_t rows, int64_t j0, int64_t cols, T scale,
             const Scratch<T>& w) {
  const GattSizes& s = o.s;
  const int64_t qrow = b * s.length + i0, krow = b * s.length + j0;
  gemm_strided_batched<T>(true, false, cols, s.vdim, rows, T(1), w.S.data(), kTile, 0, o.dout + qrow * s.vdim, s.vdim,
                          0, T(1), dv + krow * s.vdim, s.vdim, 0, 1);
  gemm_strided_batched<T>(true, false, cols, s.zdim, rows, scale, w.dP.data(), kTile, 0, o.q + qrow * s.zdim, s.zdim, 0,
                          T(1), dk + krow * s.zdim, s.zdim, 0, 1);
}

// Two-pass schedule, pass A, one query tile: dq for its rows and its diagonal sums into `part` (or null).
template <class T>
void dq_tile(T* dq, T* part, int64_t half, const Operands<T>& o, const Tile& t, Scratch<T>& w) {
  const int64_t rows = t.r_valid - t.r0;
  if (rows <= 0) return;
  const T scale = gatt_scale<T>(o.s, t.blk);
  for (int64_t j0 = t.blk.lo; j0 < t.blk.hi; j0 += kTile) {
    const int64_t cols = std::min(kTile, t.blk.hi - j0);
    grad_step(o, t.b, t.r0, rows, j0, cols, scale, w);
    if (part != nullptr) add_diagonals(part, half, w.dP.data(), t.r0, rows, j0, cols);
    add_dq(dq, o, t.b, t.r0, rows, j0, cols, scale, w);
  }
}

// Two-pass schedule, pass B, one key tile: dk and dv for its keys from every valid query of the span.
template <class T>
void dkv_tile(T* dk, T* dv, const Operands<T>& o, const Tile& t, Scratch<T>& w) {
  const int64_t cols = t.r_valid - t.r0, j0 = t.r0;
  if (cols <= 0) return;
  const T scale = gatt_scale<T>(o.s, t.blk);
  for (int64_t i0 = t.blk.lo; i0 < t.blk.hi; i0 += kTile) {
    const int64_t rows = std::min(kTile, t.blk.hi - i0);
    grad_step(o, t.b, i0, rows, j0, cols, scale, w);
    add_dkv(dk, dv, o, t.b, i0, rows, j0, cols, scale, w);
  }
}

// One-pass schedule, one (sample, span): every tile's ds computed once and used for dq, dk, dv and the diagonal sums.
// Each dq, dk and dv element is added in the same order and by the same GEMM calls as in the two-pass schedule.
template <class T>
void span_backward(T* dq, T* dk, T* dv, T* part, int64_t half, const Operands<T>& o, int64_t b, GattBlock blk,
                   Scratch<T>& w) {
  const T scale = gatt_scale<T>(o.s, blk);
  for (int64_t i0 = blk.lo; i0 < blk.hi; i0 += kTile) {
    const int64_t rows = std::min(kTile, blk.hi - i0);
    for (int64_t j0 = blk.lo; j0 < blk.hi; j0 += kTile) {
      const int64_t cols = std::min(kTile, blk.hi - j0);
      grad_step(o, b, i0, rows, j0, cols, scale, w);
      if (part != nullptr) add_diagonals(part, half, w.dP.data(), i0, rows, j0, cols);
      add_dq(dq, o, b, i0, rows, j0, cols, scale, w);
      add_dkv(dk, dv, o, b, i0, rows, j0, cols, scale, w);
    }
  }
}

// One task per (sample, span) when there are at least this many: enough to keep the threads busy. The choice depends
// on the shapes only, never on the thread count, so results stay bitwise the same for any number of threads.
constexpr int64_t kOnePassMinTasks = 16;

bool one_pass(const GattSizes& s) { return s.batch * s.spans() >= kOnePassMinTasks; }

// The partial rows: one per (sample, span) of width 2·span − 1 in the one-pass schedule (memory about 2·B·L), one per
// task group of width 2P − 1 in the two-pass schedule.
template <class T>
BiasPartials<T> bias_partials(T* base, const GattSizes& s, bool has_bias) {
  BiasPartials<T> p;
  if (!has_bias) return p;
  p.rows = base;
  if (one_pass(s)) {
    p.count = s.batch * s.spans(), p.half = s.span;
  } else {
    p.count = std::min(task_count(s), kGroups), p.half = s.bias_half;
  }
  p.width = 2 * p.half - 1;
  return p;
}

// dbias[x] = Σ_rows row[x − (P − 1) + half − 1] (0 where that falls outside the rows), rows added in order.
template <class T>
void reduce_partials(T* dbias, const BiasPartials<T>& p, int64_t bias_half) {
  const int64_t n = 2 * bias_half - 1;
#pragma omp parallel for schedule(static)
  for (int64_t x = 0; x < n; ++x) {
    const int64_t idx = x - (bias_half - 1) + (p.half - 1);
    T acc = 0;
    if (idx >= 0 && idx < p.width)
      for (int64_t r = 0; r < p.count; ++r) acc += p.rows[r * p.width + idx];
    dbias[x] = acc;
  }
}

// The two schedules (see kernels/cpu/gated_attention.h).
template <class T>
void run_one_pass(T* dq, T* dk, T* dv, const BiasPartials<T>& p, const Operands<T>& o) {
  const GattSizes& s = o.s;
  const int64_t ntask = s.batch * s.spans();
#pragma omp parallel
  {
    Scratch<T> w;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntask; ++task) {
      const int64_t b = task / s.spans();
      const GattBlock blk = gatt_block(s, task % s.spans(), gatt_valid_length(o.lengths, b, s.length));
      T* row = p.rows != nullptr ? p.rows + task * p.width : nullptr;
      span_backward(dq, dk, dv, row, p.half, o, b, blk, w);
    }
  }
}

template <class T>
void run_two_pass(T* dq, T* dk, T* dv, const BiasPartials<T>& p, const Operands<T>& o) {
  const GattSizes& s = o.s;
  const int64_t ntask = task_count(s), groups = std::min(ntask, kGroups);
#pragma omp parallel
  {
    Scratch<T> w;
#pragma omp for schedule(dynamic, 1)
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t task = g; task < ntask; task += groups) {
        T* row = p.rows != nullptr ? p.rows + g * p.width : nullptr;
        dq_tile(dq, row, p.half, o, tile_of(s, o.lengths, task), w);
      }
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntask; ++task) dkv_tile(dk, dv, o, tile_of(s, o.lengths, task), w);
  }
}

}  // namespace

template <class T>
void gated_attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, const T* bias, const int32_t* lengths,
                             const GattSizes& s) {
  Operands<T> o;
  o.q = q, o.k = k, o.v = v, o.bias = bias, o.lengths = lengths, o.s = s;
  const int64_t ntask = task_count(s);
#pragma omp parallel
  {
    Scratch<T> w;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntask; ++task) forward_tile(out, lse, o, tile_of(s, lengths, task), w);
  }
}

template <class T>
size_t gated_attention_backward_workspace_bytes(const GattSizes& s) {
  const BiasPartials<T> p = bias_partials<T>(nullptr, s, s.bias_half > 0);
  return size_t(s.batch * s.length + p.count * p.width) * sizeof(T);
}

template <class T>
void gated_attention_backward(T* dq, T* dk, T* dv, T* dbias, T* workspace, const T* dout, const T* q, const T* k,
                              const T* v, const T* out, const T* lse, const T* bias, const int32_t* lengths,
                              const GattSizes& s) {
  const int64_t rows = s.batch * s.length;
  std::fill(dq, dq + rows * s.zdim, T(0));
  std::fill(dk, dk + rows * s.zdim, T(0));
  std::fill(dv, dv + rows * s.vdim, T(0));
  T* D = workspace;
  if (s.fn == GattFn::softmax) row_dots(D, dout, out, s);
  Operands<T> o;
  o.q = q, o.k = k, o.v = v, o.bias = bias, o.out = out, o.dout = dout, o.lse = lse, o.D = D, o.lengths = lengths;
  o.s = s;
  const BiasPartials<T> p = bias_partials<T>(workspace + rows, s, bias != nullptr);
  std::fill(workspace + rows, workspace + rows + p.count * p.width, T(0));
  if (one_pass(s))
    run_one_pass(dq, dk, dv, p, o);
  else
    run_two_pass(dq, dk, dv, p, o);
  if (p.rows != nullptr) reduce_partials(dbias, p, s.bias_half);
}
#define MIXGRAD_GATT_INSTANTIATE(T)                                                                               \
  template void gated_attention_forward<T>(T*, T*, const T*, const T*, const T*, const T*, const int32_t*,        \
                                           const GattSizes&);                                                     \
  template size_t gated_attention_backward_workspace_bytes<T>(const GattSizes&);                                  \
  template void gated_attention_backward<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                            const T*, const T*, const int32_t*, const GattSizes&);
MIXGRAD_GATT_INSTANTIATE(float)
MIXGRAD_GATT_INSTANTIATE(double)
#undef MIXGRAD_GATT_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
