// DCMHA Compose on one materialised chunk of attention scores (specs/mixers.md §3.6 Option A), and the masked
// softmax between the two Compose stages: the CPU reference for kernels/cuda/compose.h. Geometry, layouts and the
// per-point formulas: kernels/compose_math.h.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/compose_math.h"

namespace mixgrad::kernels::cpu {

// out [B, H, tc, sc] = Compose(a) for one stage (a [B, H, tc, sc]); dyn [4, B, N, 2R + 1, H]; ws [H, H] or null.
// Invisible (t, s) get 0 in both stages (the pre stage's value there is never read: the softmax masks it).
// H <= kComposeMaxHeads and R <= kComposeMaxRank (the engine op validates; the kernels throw std::invalid_argument).
template <class T>
void compose_forward(T* out, const T* a, const T* dyn, const T* ws, const ComposeChunk& chunk, ComposeStage stage);

// Backward of compose_forward with g = ∂L/∂out, treated as 0 at invisible (t, s): writes da (0 at invisible points)
// and ACCUMULATES (+=) the stage's dynamic-weight gradients into ddyn [4, B, N, 2R + 1, H] (query-side slot rows
// t0..t0+tc−1, key-side slot rows s0..s0+sc−1) and, when ws is given, ∂ws into dws [H, H] — so the chunks of one
// call add up. Deterministic: every sum runs in an order fixed by the shapes, not by the thread count. `workspace` is the
// caller's scratch of compose_backward_workspace_bytes(chunk, ws != null) bytes (0 on the CPU: may be null).
template <class T>
void compose_backward(T* da, T* ddyn, T* dws, const T* g, const T* a, const T* dyn, const T* ws,
                      const ComposeChunk& chunk, ComposeStage stage, void* workspace);
size_t compose_backward_workspace_bytes(const ComposeChunk& chunk, bool has_ws);

// p = softmax over the visible keys of each row of x [B, H, tc, sc] (the chunk must hold every key any of its rows
// can see); p = 0 at invisible keys, and a row with no visible key is all 0. Sums in double; the float exponentials
// are vec::exp's (kernels/cpu/vec_math.h, within 2 ulp of std::exp; 0 below −87).
template <class T>
void masked_softmax_forward(T* p, const T* x, const ComposeChunk& chunk);

// dx = p ⊙ (dp − D) at visible keys, 0 elsewhere, with D = Σ_s p·dp over the visible keys of the row: an explicit
// row reduction (after a post-Compose, D ≠ rowsum(dO ⊙ O), spec §3.5).
template <class T>
void masked_softmax_backward(T* dx, const T* p, const T* dp, const ComposeChunk& chunk);

}  // namespace mixgrad::kernels::cpu
