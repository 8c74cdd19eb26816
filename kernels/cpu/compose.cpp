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
// (4R + H·[static] values per point). A global layer thus needs O(B·H·chunk·N) extra memory instead of O(B·H·N²);
// a local layer O(B·H·chunk·(chunk + 2W)).
#include "kernels/cpu/compose.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace mixgrad::kernels::cpu {
namespace {

// Below this many (point × head) operations a loop runs on one thread (a parallel region costs more).
constexpr int64_t kParallelWork = int64_t{1} << 14;

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

}  // namespace

template <class T>
void compose_forward(T* out, const T* a, const T* dyn, const T* ws, const ComposeChunk& c, ComposeStage stage) {
  check_chunk(c, "compose_forward");
  const int H = int(c.H), R = int(c.R);
  const int64_t plane = c.tc * c.sc, rows = c.B * c.tc;
#pragma omp parallel for schedule(static) if (rows * c.sc * c.H > kParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / c.tc, i = row % c.tc, t = c.t0 + i, len = compose_key_length(c, b);
    const T* qw = dyn + compose_dyn_offset(c, q_slot(stage), b, t);
    T av[kComposeMaxHeads], ov[kComposeMaxHeads];
    for (int64_t j = 0; j < c.sc; ++j) {
      const int64_t s = c.s0 + j, base = b * c.H * plane + i * c.sc + j;
      if (!compose_visible(c, len, t, s)) {
        for (int n = 0; n < H; ++n) out[base + n * plane] = T(0);
        continue;
      }
      for (int n = 0; n < H; ++n) av[n] = a[base + n * plane];
      compose_point(ov, av, qw, dyn + compose_dyn_offset(c, k_slot(stage), b, s), ws, H, R);
      for (int n = 0; n < H; ++n) out[base + n * plane] = ov[n];
    }
  }
}

size_t compose_backward_workspace_bytes(const ComposeChunk&, bool) { return 0; }

namespace {

// Per-point scratch, sized by the kernels' limits.
template <class T>
struct PointData {
  T a[kComposeMaxHeads], g[kComposeMaxHeads], da[kComposeMaxHeads];
  T hq[kComposeMaxRank], hk[kComposeMaxRank], uq[kComposeMaxRank], uk[kComposeMaxRank];
};

// dA and the query-side gradients: rows (b, i) in parallel; each row's [2R + 1, H] sums are its own.
template <class T>
void backward_rows(T* da, T* ddyn, const T* g, const T* a, const T* dyn, const T* ws, const ComposeChunk& c,
                   ComposeStage stage) {
  const int H = int(c.H), R = int(c.R), W = (2 * R + 1) * H;
  const int64_t plane = c.tc * c.sc, rows = c.B * c.tc;
#pragma omp parallel for schedule(static) if (rows * c.sc * c.H > kParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / c.tc, i = row % c.tc, t = c.t0 + i, len = compose_key_length(c, b);
    const T* qw = dyn + compose_dyn_offset(c, q_slot(stage), b, t);
    std::vector<T> acc(size_t(W), T(0));
    PointData<T> p;
    for (int64_t j = 0; j < c.sc; ++j) {
      const int64_t s = c.s0 + j, base = b * c.H * plane + i * c.sc + j;
      if (!compose_visible(c, len, t, s)) {
        for (int n = 0; n < H; ++n) da[base + n * plane] = T(0);
        continue;
      }
      for (int n = 0; n < H; ++n) p.a[n] = a[base + n * plane], p.g[n] = g[base + n * plane];
      compose_point_backward(p.da, p.hq, p.hk, p.uq, p.uk, p.a, p.g, qw,
                             dyn + compose_dyn_offset(c, k_slot(stage), b, s), ws, H, R);
      for (int n = 0; n < H; ++n) da[base + n * plane] = p.da[n];
      compose_point_weight_grads(acc.data(), p.a, p.g, p.hq, p.uq, H, R);
    }
    T* dq = ddyn + compose_dyn_offset(c, q_slot(stage), b, t);
    for (int k = 0; k < W; ++k) dq[k] += acc[size_t(k)];
  }
}

// The key-side gradients: columns (b, j) in parallel, each summing over the chunk's rows in order.
template <class T>
void backward_columns(T* ddyn, const T* g, const T* a, const T* dyn, const T* ws, const ComposeChunk& c,
                      ComposeStage stage) {
  const int H = int(c.H), R = int(c.R), W = (2 * R + 1) * H;
  const int64_t plane = c.tc * c.sc, cols = c.B * c.sc;
#pragma omp parallel for schedule(static) if (cols * c.tc * c.H > kParallelWork)
  for (int64_t col = 0; col < cols; ++col) {
    const int64_t b = col / c.sc, j = col % c.sc, s = c.s0 + j, len = compose_key_length(c, b);
    const T* kw = dyn + compose_dyn_offset(c, k_slot(stage), b, s);
    std::vector<T> acc(size_t(W), T(0));
    PointData<T> p;
    for (int64_t i = 0; i < c.tc; ++i) {
      const int64_t t = c.t0 + i, base = b * c.H * plane + i * c.sc + j;
      if (!compose_visible(c, len, t, s)) continue;
      for (int n = 0; n < H; ++n) p.a[n] = a[base + n * plane], p.g[n] = g[base + n * plane];
      compose_point_backward(p.da, p.hq, p.hk, p.uq, p.uk, p.a, p.g, dyn + compose_dyn_offset(c, q_slot(stage), b, t),
                             kw, ws, H, R);
      compose_point_weight_grads(acc.data(), p.a, p.g, p.hk, p.uk, H, R);
    }
    T* dk = ddyn + compose_dyn_offset(c, k_slot(stage), b, s);
    for (int k = 0; k < W; ++k) dk[k] += acc[size_t(k)];
  }
}

// ∂ws[m, n] += Σ over visible points a_m·g_n: rows m in parallel.
template <class T>
void backward_static(T* dws, const T* g, const T* a, const ComposeChunk& c) {
  const int64_t H = c.H, plane = c.tc * c.sc;
#pragma omp parallel for schedule(static) if (c.B * c.tc * c.sc * H > kParallelWork)
  for (int64_t m = 0; m < H; ++m) {
    std::vector<T> acc(size_t(H), T(0));
    for (int64_t b = 0; b < c.B; ++b) {
      const int64_t len = compose_key_length(c, b);
      for (int64_t i = 0; i < c.tc; ++i)
        for (int64_t j = 0; j < c.sc; ++j) {
          if (!compose_visible(c, len, c.t0 + i, c.s0 + j)) continue;
          const int64_t base = b * H * plane + i * c.sc + j;
          const T am = a[base + m * plane];
          for (int64_t n = 0; n < H; ++n) acc[size_t(n)] += am * g[base + n * plane];
        }
    }
    for (int64_t n = 0; n < H; ++n) dws[m * H + n] += acc[size_t(n)];
  }
}

}  // namespace

template <class T>
void compose_backward(T* da, T* ddyn, T* dws, const T* g, const T* a, const T* dyn, const T* ws, const ComposeChunk& c,
                      ComposeStage stage, void* /*workspace*/) {
  check_chunk(c, "compose_backward");
  if ((ws == nullptr) != (dws == nullptr))
    throw std::invalid_argument("compose_backward: ws and dws must both be given or both be null");
  backward_rows(da, ddyn, g, a, dyn, ws, c, stage);
  backward_columns(ddyn, g, a, dyn, ws, c, stage);
  if (ws) backward_static(dws, g, a, c);
}

template <class T>
void masked_softmax_forward(T* p, const T* x, const ComposeChunk& c) {
  const int64_t rows = c.B * c.H * c.tc;
#pragma omp parallel for schedule(static) if (rows * c.sc > kParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / (c.H * c.tc), t = c.t0 + row % c.tc, len = compose_key_length(c, b);
    const T* xr = x + row * c.sc;
    T* pr = p + row * c.sc;
    T mx = -INFINITY;
    bool any = false;
    for (int64_t j = 0; j < c.sc; ++j) {
      if (!compose_visible(c, len, t, c.s0 + j)) continue;
      mx = any ? std::max(mx, xr[j]) : xr[j];
      any = true;
    }
    if (!any) {
      std::fill(pr, pr + c.sc, T(0));
      continue;
    }
    double sum = 0;
    for (int64_t j = 0; j < c.sc; ++j) {
      const bool vis = compose_visible(c, len, t, c.s0 + j);
      pr[j] = vis ? T(std::exp(xr[j] - mx)) : T(0);
      sum += double(pr[j]);
    }
    const T inv = T(1.0 / sum);
    for (int64_t j = 0; j < c.sc; ++j) pr[j] *= inv;
  }
}

template <class T>
void masked_softmax_backward(T* dx, const T* p, const T* dp, const ComposeChunk& c) {
  const int64_t rows = c.B * c.H * c.tc;
#pragma omp parallel for schedule(static) if (rows * c.sc > kParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / (c.H * c.tc), t = c.t0 + row % c.tc, len = compose_key_length(c, b);
    const T *pr = p + row * c.sc, *dpr = dp + row * c.sc;
    T* dxr = dx + row * c.sc;
    double D = 0;
    for (int64_t j = 0; j < c.sc; ++j)
      if (compose_visible(c, len, t, c.s0 + j)) D += double(pr[j]) * double(dpr[j]);
    for (int64_t j = 0; j < c.sc; ++j)
      dxr[j] = compose_visible(c, len, t, c.s0 + j) ? T(pr[j] * (dpr[j] - T(D))) : T(0);
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
