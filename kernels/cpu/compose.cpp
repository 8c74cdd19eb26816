// DCMHA Compose and the masked softmax on one chunk (the CPU reference).
//
// How the chunking works (engine/ops_compose.cpp drives it; specs/mixers.md §3.4 and §3.6 Option A): the queries
// are cut into chunks of `chunk` rows [t0, t0 + tc); each chunk sees only the keys its rows can see, [s0, s0 + sc)
// (global: all N, or [0, t0 + tc) when causal; local window W: [t0 − W + 1, t0 + tc) causal, and up to t0 + tc + W − 1
// otherwise). Per chunk: one batched GEMM for the logits q·kᵀ [B·H, tc, sc], compose_forward (pre) on them,
// masked_softmax_forward, compose_forward (post), one batched GEMM P''·v into the chunk's output rows. The backward
// recomputes the chunk the same way, then runs dP'' = dO·vᵀ, dv += P''ᵀ·dO, compose_backward (post),
// masked_softmax_backward (with its explicit row reduction D), compose_backward (pre), dq = dLg·k, dk += dLgᵀ·q.
//
// Memory: only q, k, v and the dynamic weights are kept for the backward (nothing of size T·S). A chunk holds at most
// B·H·tc·sc scores per buffer: 2 buffers in the forward, 4 in the backward, plus on CUDA the backward's scratch
// (4R + H·[static] values per point), on the CPU the s-contiguous copy of the key-side weights and the backward's
// per-row-group key-side partial sums (both O(max(B, 16)·(2R + 1)·H·sc)). A global layer thus needs O(B·H·chunk·N)
// extra memory instead of O(B·H·N²); a local layer O(B·H·chunk·(chunk + 2W)).
#include "kernels/cpu/compose.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/vec_math.h"

// How the CPU kernels walk a chunk: by rows (b, t). A row's visible keys are one interval [lo, hi) of s
// (compose_visible_keys), the query-side weights are constants of the row, and the stage's key-side weights are
// transposed once per call into an s-contiguous copy [B, 2R + 1, H, sc]; every per-head loop is then a vectorisable
// loop over s, in blocks of kBlock keys whose rank-R factors stay on the stack. Per element the sums run in the order
// of compose_point / compose_point_backward (kernels/compose_math.h), which stay the reference for CUDA and the tests.
// The backward's key-side weight gradients are per-key accumulations over the rows of a fixed row group, then summed
// over the groups in order: the results do not depend on the thread count.
namespace mixgrad::kernels::cpu {
namespace {

// Below this many (point × head) operations a loop runs on one thread (a parallel region costs more).
constexpr int64_t kParallelWork = int64_t{1} << 14;
// Keys per block of a row.
constexpr int64_t kBlock = 64;
// The backward cuts each sample's rows into enough groups for about this many tasks (a constant, not the thread
// count, so the order of the key-side sums depends on the shapes only).
constexpr int64_t kBackwardTasks = 16;

void check_chunk(const ComposeChunk& c, const char* op) {
  if (c.H < 1 || c.H > kComposeMaxHeads || c.R < 1 || c.R > kComposeMaxRank)
    throw std::invalid_argument(std::string(op) + ": H = " + std::to_string(c.H) + ", R = " + std::to_string(c.R) +
                                " (expected 1 <= H <= " + std::to_string(kComposeMaxHeads) +
                                ", 1 <= R <= " + std::to_string(kComposeMaxRank) + ")");
  if (c.t0 < 0 || c.s0 < 0 || c.t0 + c.tc > c.N || c.s0 + c.sc > c.N)
    throw std::invalid_argument(std::string(op) + ": chunk rows/keys outside [0, N)");
}

int64_t q_slot(ComposeStage s) { return 2 * int64_t(s); }
int64_t k_slot(ComposeStage s) { return 2 * int64_t(s) + 1; }

// The chunk-local keys [lo, hi) ⊆ [0, sc) visible to query t.
ComposeKeyRange local_keys(const ComposeChunk& c, int64_t len, int64_t t) {
  const ComposeKeyRange k = compose_visible_keys(c, len, t);
  const int64_t lo = std::clamp<int64_t>(k.lo - c.s0, 0, c.sc);
  return {lo, std::clamp<int64_t>(k.hi - c.s0, lo, c.sc)};
}

// The stage's key-side weights of the chunk's keys, s-contiguous: kt[b, k, j] = dyn[k_slot, b, s0 + j, k] for
// k < (2R + 1)·H (one small transpose per call).
template <class T>
std::vector<T> key_weights_by_key(const T* dyn, const ComposeChunk& c, ComposeStage stage) {
  const int64_t W = (2 * c.R + 1) * c.H;
  std::vector<T> kt(size_t(c.B * W * c.sc));
#pragma omp parallel for schedule(static) if (c.B * W * c.sc > kParallelWork)
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j < c.sc; ++j) {
      const T* src = dyn + compose_dyn_offset(c, k_slot(stage), b, c.s0 + j);
      for (int64_t k = 0; k < W; ++k) kt[size_t((b * W + k) * c.sc + j)] = src[k];
    }
  return kt;
}

// One row (b, t) of a chunk as the kernels see it; score pointers passed with it point at [b, head 0, t, key 0].
template <class T>
struct Row {
  int H = 0, R = 0;
  int64_t plane = 0;      // stride between heads of the scores (tc·sc)
  int64_t ks = 0;         // row stride of kw (sc)
  const T* qw = nullptr;  // query-side [2R + 1, H] at t
  const T* kw = nullptr;  // key-side [2R + 1, H, sc] of the sample, s-contiguous
  const T* ws = nullptr;  // static [H, H] or null
};

template <class T>
Row<T> row_of(const ComposeChunk& c, const T* dyn, const std::vector<T>& kt, const T* ws, ComposeStage stage,
              int64_t b, int64_t t) {
  Row<T> w;
  w.H = int(c.H), w.R = int(c.R), w.plane = c.tc * c.sc, w.ks = c.sc;
  w.qw = dyn + compose_dyn_offset(c, q_slot(stage), b, t);
  w.kw = kt.data() + b * (2 * c.R + 1) * c.H * c.sc;
  w.ws = ws;
  return w;
}

template <class T>
using Factors = T[kComposeMaxRank][kBlock];

// The rank-R contractions over the input heads for keys [x0, x0 + nb) of a row, summed over m in ascending order as
// in compose_point: hq[r][x] = Σ_m qw[off + r·H + m]·v[m, x] (the row's constant query-side weights) and
// hk[r][x] = Σ_m kw[off + r·H + m, x]·v[m, x] (each key's own weights). off = 0: w1 on the scores (h); off = R·H: w2
// on the gradient (u).
template <class T>
void contract(Factors<T>& hq, Factors<T>& hk, const T* v, const Row<T>& w, int64_t off, int64_t x0, int64_t nb) {
  for (int r = 0; r < w.R; ++r) {
    T *q = hq[r], *k = hk[r];
    std::fill(q, q + nb, T(0));
    std::fill(k, k + nb, T(0));
    for (int m = 0; m < w.H; ++m) {
      const T cq = w.qw[off + r * w.H + m];
      const T *ck = w.kw + (off + r * w.H + m) * w.ks + x0, *vm = v + m * w.plane + x0;
#pragma omp simd
      for (int64_t x = 0; x < nb; ++x) {
        q[x] += cq * vm[x];
        k[x] += ck[x] * vm[x];
      }
    }
  }
}

// acc[x] += Σ_i ws(i → o)·v[i, x] (the sum first, then added, as in compose_point): ws(i → o) = ws[i, o] in the
// forward, ws[o, i] in the backward (transposed).
template <class T>
void add_static(T* acc, const T* v, const Row<T>& w, int o, bool transposed, int64_t x0, int64_t nb) {
  alignas(32) T st[kBlock];
  std::fill(st, st + nb, T(0));
  for (int i = 0; i < w.H; ++i) {
    const T c = transposed ? w.ws[o * w.H + i] : w.ws[i * w.H + o];
    const T* vi = v + i * w.plane + x0;
#pragma omp simd
    for (int64_t x = 0; x < nb; ++x) st[x] += vi[x] * c;
  }
#pragma omp simd
  for (int64_t x = 0; x < nb; ++x) acc[x] += st[x];
}

// out[o, x] = v[o, x]·(1 + qdd[o] + kdd[o, x]) + Σ_i ws(i → o)·v[i, x]
//           + Σ_r (qw[off + r·H + o]·hq[r][x] + kw[off + r·H + o, x]·hk[r][x])   for keys [x0, x0 + nb):
// compose_point's output with off = R·H (w2) and ws[i, o]; compose_point_backward's da with v = g, off = 0 (w1),
// (hq, hk) = (uq, uk) and ws[o, i].
template <class T>
void mix(T* out, const T* v, const Row<T>& w, int64_t off, const Factors<T>& hq, const Factors<T>& hk,
         bool ws_transposed, int64_t x0, int64_t nb) {
  const T* qdd = w.qw + 2 * w.R * w.H;
  for (int o = 0; o < w.H; ++o) {
    alignas(32) T acc[kBlock];
    const T c1 = T(1) + qdd[o];
    const T *kdd = w.kw + (2 * w.R * w.H + o) * w.ks + x0, *vo = v + o * w.plane + x0;
#pragma omp simd
    for (int64_t x = 0; x < nb; ++x) acc[x] = vo[x] * (c1 + kdd[x]);
    if (w.ws) add_static(acc, v, w, o, ws_transposed, x0, nb);
    for (int r = 0; r < w.R; ++r) {
      const T cq = w.qw[off + r * w.H + o];
      const T *ck = w.kw + (off + r * w.H + o) * w.ks + x0, *q = hq[r], *k = hk[r];
#pragma omp simd
      for (int64_t x = 0; x < nb; ++x) acc[x] += cq * q[x] + ck[x] * k[x];
    }
    std::copy(acc, acc + nb, out + o * w.plane + x0);
  }
}

// 0 at the row's invisible keys, every head.
template <class T>
void zero_outside(T* out, const Row<T>& w, ComposeKeyRange keys) {
  for (int n = 0; n < w.H; ++n) {
    T* o = out + n * w.plane;
    std::fill(o, o + keys.lo, T(0));
    std::fill(o + keys.hi, o + w.ks, T(0));
  }
}

template <class T>
void forward_row(T* out, const T* a, const Row<T>& w, ComposeKeyRange keys) {
  zero_outside(out, w, keys);
  Factors<T> hq, hk;
  for (int64_t x0 = keys.lo; x0 < keys.hi; x0 += kBlock) {
    const int64_t nb = std::min(kBlock, keys.hi - x0);
    contract(hq, hk, a, w, 0, x0, nb);
    mix(out, a, w, int64_t(w.R) * w.H, hq, hk, false, x0, nb);
  }
}

}  // namespace

template <class T>
void compose_forward(T* out, const T* a, const T* dyn, const T* ws, const ComposeChunk& c, ComposeStage stage) {
  check_chunk(c, "compose_forward");
  const std::vector<T> kt = key_weights_by_key(dyn, c, stage);
  const int64_t plane = c.tc * c.sc, rows = c.B * c.tc;
#pragma omp parallel for schedule(static) if (rows * c.sc * c.H > kParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / c.tc, i = row % c.tc, t = c.t0 + i, base = b * c.H * plane + i * c.sc;
    forward_row(out + base, a + base, row_of(c, dyn, kt, ws, stage, b, t), local_keys(c, compose_key_length(c, b), t));
  }
}

size_t compose_backward_workspace_bytes(const ComposeChunk&, bool) { return 0; }

namespace {

template <class T>
T dot(const T* x, const T* y, int64_t n) {
  T s = T(0);
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

// dst[x] += x[i]·y[i] for i < n.
template <class T>
void add_products(T* dst, const T* x, const T* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] += x[i] * y[i];
}

// compose_point_weight_grads for keys [x0, x0 + nb) of a row, both sides: the query side's sums over the keys as dot
// products into qacc [2R + 1, H]; the key side's per-key terms added into kacc [2R + 1, H, sc] (s-contiguous).
template <class T>
void weight_grads(T* qacc, T* kacc, const T* a, const T* g, const Row<T>& w, const Factors<T>& hq,
                  const Factors<T>& hk, const Factors<T>& uq, const Factors<T>& uk, int64_t x0, int64_t nb) {
  const int H = w.H, R = w.R;
  for (int m = 0; m < H; ++m) {
    const T *am = a + m * w.plane + x0, *gm = g + m * w.plane + x0;
    for (int r = 0; r < R; ++r) {
      qacc[r * H + m] += dot(am, uq[r], nb);
      qacc[(R + r) * H + m] += dot(gm, hq[r], nb);
      add_products(kacc + (r * H + m) * w.ks + x0, am, uk[r], nb);
      add_products(kacc + ((R + r) * H + m) * w.ks + x0, gm, hk[r], nb);
    }
    qacc[2 * R * H + m] += dot(gm, am, nb);
    add_products(kacc + (2 * R * H + m) * w.ks + x0, gm, am, nb);
  }
}

// ∂ws[m, n] partial sums (wacc [H, H]) += Σ_x a[m, x]·g[n, x] over keys [x0, x0 + nb).
template <class T>
void static_grads(T* wacc, const T* a, const T* g, const Row<T>& w, int64_t x0, int64_t nb) {
  for (int m = 0; m < w.H; ++m)
    for (int n = 0; n < w.H; ++n) wacc[m * w.H + n] += dot(a + m * w.plane + x0, g + n * w.plane + x0, nb);
}

// One row's backward: da (0 at invisible keys), += its query-side gradients into qacc, its key-side terms into kacc
// and (with ws) its ∂ws terms into wacc.
template <class T>
void backward_row(T* da, T* qacc, T* kacc, T* wacc, const T* g, const T* a, const Row<T>& w, ComposeKeyRange keys) {
  zero_outside(da, w, keys);
  Factors<T> hq, hk, uq, uk;
  for (int64_t x0 = keys.lo; x0 < keys.hi; x0 += kBlock) {
    const int64_t nb = std::min(kBlock, keys.hi - x0);
    contract(hq, hk, a, w, 0, x0, nb);
    contract(uq, uk, g, w, int64_t(w.R) * w.H, x0, nb);
    mix(da, g, w, 0, uq, uk, true, x0, nb);
    weight_grads(qacc, kacc, a, g, w, hq, hk, uq, uk, x0, nb);
    if (wacc) static_grads(wacc, a, g, w, x0, nb);
  }
}

// Row groups per sample in the backward (a function of the shapes only).
int64_t backward_groups(const ComposeChunk& c) {
  return std::min(c.tc, std::max<int64_t>(1, (kBackwardTasks + c.B - 1) / c.B));
}

// ddyn's key-side rows += the tasks' partial sums kpart [B, groups, 2R + 1, H, sc], over the groups in order.
template <class T>
void reduce_key_grads(T* ddyn, const std::vector<T>& kpart, const ComposeChunk& c, ComposeStage stage,
                      int64_t groups) {
  const int64_t W = (2 * c.R + 1) * c.H, sc = c.sc;
#pragma omp parallel for schedule(static) if (c.B * groups * W * sc > kParallelWork)
  for (int64_t col = 0; col < c.B * sc; ++col) {
    const int64_t b = col / sc, j = col % sc;
    T* dk = ddyn + compose_dyn_offset(c, k_slot(stage), b, c.s0 + j);
    for (int64_t k = 0; k < W; ++k) {
      T s = T(0);
      for (int64_t grp = 0; grp < groups; ++grp) s += kpart[size_t(((b * groups + grp) * W + k) * sc + j)];
      dk[k] += s;
    }
  }
}

}  // namespace

template <class T>
void compose_backward(T* da, T* ddyn, T* dws, const T* g, const T* a, const T* dyn, const T* ws, const ComposeChunk& c,
                      ComposeStage stage, void* /*workspace*/) {
  check_chunk(c, "compose_backward");
  if ((ws == nullptr) != (dws == nullptr))
    throw std::invalid_argument("compose_backward: ws and dws must both be given or both be null");
  const std::vector<T> kt = key_weights_by_key(dyn, c, stage);
  const int64_t W = (2 * c.R + 1) * c.H, HH = c.H * c.H, plane = c.tc * c.sc;
  const int64_t groups = backward_groups(c), tasks = c.B * groups, per = (c.tc + groups - 1) / groups;
  std::vector<T> kpart(size_t(tasks * W * c.sc), T(0)), wpart(ws ? size_t(tasks * HH) : 0, T(0));
#pragma omp parallel for schedule(static) if (c.B * c.tc * c.sc * c.H > kParallelWork)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / groups, i0 = (task % groups) * per, i1 = std::min(c.tc, i0 + per);
    const int64_t len = compose_key_length(c, b);
    std::vector<T> qacc(static_cast<size_t>(W));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = c.t0 + i, base = b * c.H * plane + i * c.sc;
      std::fill(qacc.begin(), qacc.end(), T(0));
      backward_row(da + base, qacc.data(), kpart.data() + task * W * c.sc, ws ? wpart.data() + task * HH : nullptr,
                   g + base, a + base, row_of(c, dyn, kt, ws, stage, b, t), local_keys(c, len, t));
      T* dq = ddyn + compose_dyn_offset(c, q_slot(stage), b, t);
      for (int64_t k = 0; k < W; ++k) dq[k] += qacc[size_t(k)];
    }
  }
  reduce_key_grads(ddyn, kpart, c, stage, groups);
  for (int64_t task = 0; ws && task < tasks; ++task)
    for (int64_t k = 0; k < HH; ++k) dws[k] += wpart[size_t(task * HH + k)];
}

template <class T>
void masked_softmax_forward(T* p, const T* x, const ComposeChunk& c) {
  const int64_t rows = c.B * c.H * c.tc;
#pragma omp parallel for schedule(static) if (rows * c.sc > kParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / (c.H * c.tc), t = c.t0 + row % c.tc;
    const ComposeKeyRange k = local_keys(c, compose_key_length(c, b), t);
    const T* xr = x + row * c.sc;
    T* pr = p + row * c.sc;
    std::fill(pr, pr + k.lo, T(0));
    std::fill(pr + k.hi, pr + c.sc, T(0));
    if (k.lo == k.hi) continue;
    const T mx = vec::max_of(xr + k.lo, k.hi - k.lo);
    const T inv = T(1.0 / vec::exp_sum_f64(xr + k.lo, k.hi - k.lo, mx, pr + k.lo));
#pragma omp simd
    for (int64_t j = k.lo; j < k.hi; ++j) pr[j] *= inv;
  }
}

template <class T>
void masked_softmax_backward(T* dx, const T* p, const T* dp, const ComposeChunk& c) {
  const int64_t rows = c.B * c.H * c.tc;
#pragma omp parallel for schedule(static) if (rows * c.sc > kParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / (c.H * c.tc), t = c.t0 + row % c.tc;
    const ComposeKeyRange k = local_keys(c, compose_key_length(c, b), t);
    const T *pr = p + row * c.sc, *dpr = dp + row * c.sc;
    T* dxr = dx + row * c.sc;
    std::fill(dxr, dxr + k.lo, T(0));
    std::fill(dxr + k.hi, dxr + c.sc, T(0));
    const T D = T(vec::dot_f64(pr + k.lo, dpr + k.lo, k.hi - k.lo));
#pragma omp simd
    for (int64_t j = k.lo; j < k.hi; ++j) dxr[j] = pr[j] * (dpr[j] - D);
  }
}

#define MIXGRAD_COMPOSE_INSTANTIATE(T)                                                                       \
  template void compose_forward<T>(T*, const T*, const T*, const T*, const ComposeChunk&, ComposeStage);     \
  template void compose_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const ComposeChunk&, \
                                    ComposeStage, void*);                                                    \
  template void masked_softmax_forward<T>(T*, const T*, const ComposeChunk&);                                \
  template void masked_softmax_backward<T>(T*, const T*, const T*, const ComposeChunk&);
MIXGRAD_COMPOSE_INSTANTIATE(float)
MIXGRAD_COMPOSE_INSTANTIATE(double)
#undef MIXGRAD_COMPOSE_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
