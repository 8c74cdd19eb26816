// DCMHA Compose (specs/mixers.md §3): the chunk geometry, the visibility rule and the per-(b, t, s) formulas shared
// by the CPU reference (kernels/cpu/compose.cpp, float and double) and the CUDA twin (kernels/cuda/compose.cu).
// Kernels only: included by those two sources and by the headers that declare them.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace mixgrad::kernels {

inline constexpr int kComposeMaxHeads = 64;  // heads per group the kernels hold in registers / on the stack
inline constexpr int kComposeMaxRank = 8;    // dynamic rank R (every released config uses 2)

// Which stage: pre acts on the logits (dynamic-weight slots 0 = query side, 1 = key side), post on the
// probabilities (slots 2, 3) and writes 0 at every invisible (t, s) (spec §3.1 step 6).
enum class ComposeStage : int { pre = 0, post = 1 };

// One materialised chunk of self-attention scores a [B, H, tc, sc] (s contiguous): queries t in [t0, t0 + tc), keys s
// in [s0, s0 + sc) of a sequence of N tokens. The dynamic weights dyn are [4, B, N, 2R + 1, H] (slot order
// pre-query, pre-key, post-query, post-key; rows 0..R-1 = w1 (already RMS-normalised), R..2R-1 = w2, 2R = dd; H
// fastest). The static matrix ws (optional) is [H, H] with ws[m, n] mixing input head m into output head n.
struct ComposeChunk {
  int64_t B = 0, H = 0, N = 0, R = 0;
  int64_t t0 = 0, tc = 0, s0 = 0, sc = 0;
  // 0 = global. W > 0: causal t − W < s ≤ t (DCFormer's JAX sliding window); non-causal |t − s| < W (derived).
  int64_t window = 0;
  bool causal = false;               // s ≤ t
  const int32_t* lengths = nullptr;  // [B] key lengths in the kernels' memory (clamped to [0, N]); null = all valid
};

MIXGRAD_HD int64_t compose_key_length(const ComposeChunk& c, int64_t b) {
  if (!c.lengths) return c.N;
  const int64_t n = c.lengths[b];
  return n < 0 ? 0 : (n > c.N ? c.N : n);
}

// Whether key s is visible to query t (absolute positions) in a sample with `len` valid keys. Masks do not depend on
// the head, so Compose (which mixes heads at one (t, s)) never moves a masked value into a visible one.
MIXGRAD_HD bool compose_visible(const ComposeChunk& c, int64_t len, int64_t t, int64_t s) {
  if (s >= len) return false;
  if (c.causal && s > t) return false;
  if (c.window > 0) {
    if (s <= t - c.window) return false;
    if (!c.causal && s >= t + c.window) return false;
  }
  return true;
}

// The keys visible to query t form one interval [lo, hi) of absolute positions (the same rule as compose_visible;
// empty when lo == hi), for kernels that walk a row's keys contiguously instead of testing each (t, s).
struct ComposeKeyRange {
  int64_t lo = 0, hi = 0;
};

MIXGRAD_HD ComposeKeyRange compose_visible_keys(const ComposeChunk& c, int64_t len, int64_t t) {
  int64_t lo = 0, hi = len;
  if (c.causal && t + 1 < hi) hi = t + 1;
  if (c.window > 0) {
    if (t - c.window + 1 > lo) lo = t - c.window + 1;
    if (!c.causal && t + c.window < hi) hi = t + c.window;
  }
  return {lo, hi > lo ? hi : lo};
}

// Offset of dyn[slot, b, p, 0, 0].
MIXGRAD_HD int64_t compose_dyn_offset(const ComposeChunk& c, int64_t slot, int64_t b, int64_t p) {
  return ((slot * c.B + b) * c.N + p) * (2 * c.R + 1) * c.H;
}

// Forward at one (b, t, s): out = a·𝒲 with 𝒲 = I + ws + qw1ᵀqw2 + diag(qdd) + kw1ᵀkw2 + diag(kdd) (spec §3.2),
// computed element-wise through the rank-R contractions (no H×H matrix). qw / kw: the [2R + 1, H] weights of the
// query-side slot at t and the key-side slot at s; ws may be null. With all dynamic weights 0 and no ws, out == a
// bit for bit.
template <class T>
MIXGRAD_HD void compose_point(T* out, const T* a, const T* qw, const T* kw, const T* ws, int H, int R) {
  T hq[kComposeMaxRank], hk[kComposeMaxRank];
  for (int r = 0; r < R; ++r) {
    T sq = T(0), sk = T(0);
    for (int m = 0; m < H; ++m) {
      sq += qw[r * H + m] * a[m];
      sk += kw[r * H + m] * a[m];
    }
    hq[r] = sq, hk[r] = sk;
  }
  const T *qw2 = qw + R * H, *kw2 = kw + R * H, *qdd = qw + 2 * R * H, *kdd = kw + 2 * R * H;
  for (int n = 0; n < H; ++n) {
    T v = a[n] * (T(1) + qdd[n] + kdd[n]);
    if (ws) {
      T st = T(0);
      for (int m = 0; m < H; ++m) st += a[m] * ws[m * H + n];
      v += st;
    }
    for (int r = 0; r < R; ++r) v += qw2[r * H + n] * hq[r] + kw2[r * H + n] * hk[r];
    out[n] = v;
  }
}

// Backward at one (b, t, s) with g = ∂L/∂out (spec §3.5): da, and the per-point factors the weight gradients are
// built from — hq_r = Σ_m qw1[r, m]·a_m, hk_r likewise, uq_r = Σ_n qw2[r, n]·g_n, uk_r likewise.
template <class T>
MIXGRAD_HD void compose_point_backward(T* da, T* hq, T* hk, T* uq, T* uk, const T* a, const T* g, const T* qw,
                                       const T* kw, const T* ws, int H, int R) {
  const T *qw2 = qw + R * H, *kw2 = kw + R * H, *qdd = qw + 2 * R * H, *kdd = kw + 2 * R * H;
  for (int r = 0; r < R; ++r) {
    T sq = T(0), sk = T(0), vq = T(0), vk = T(0);
    for (int m = 0; m < H; ++m) {
      sq += qw[r * H + m] * a[m];
      sk += kw[r * H + m] * a[m];
      vq += qw2[r * H + m] * g[m];
      vk += kw2[r * H + m] * g[m];
    }
    hq[r] = sq, hk[r] = sk, uq[r] = vq, uk[r] = vk;
  }
  for (int m = 0; m < H; ++m) {
    T v = g[m] * (T(1) + qdd[m] + kdd[m]);
    if (ws) {
      T st = T(0);
      for (int n = 0; n < H; ++n) st += ws[m * H + n] * g[n];
      v += st;
    }
    for (int r = 0; r < R; ++r) v += qw[r * H + m] * uq[r] + kw[r * H + m] * uk[r];
    da[m] = v;
  }
}

// One point's contribution to the gradient of one side's [2R + 1, H] weights (acc +=): ∂w1[r, m] += a_m·u_r,
// ∂w2[r, n] += g_n·h_r, ∂dd[n] += g_n·a_n — with (h, u) = (hq, uq) for the query side, (hk, uk) for the key side.
template <class T>
MIXGRAD_HD void compose_point_weight_grads(T* acc, const T* a, const T* g, const T* h, const T* u, int H, int R) {
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < H; ++m) {
      acc[r * H + m] += a[m] * u[r];
      acc[(R + r) * H + m] += g[m] * h[r];
    }
  for (int n = 0; n < H; ++n) acc[2 * R * H + n] += g[n] * a[n];
}

}  // namespace mixgrad::kernels
