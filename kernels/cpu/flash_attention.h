// Fused flash-style softmax attention on the CPU (specs/mixers.md §2): tiled over 64-query × 64-key blocks with
// an online softmax, O(T·d) memory per thread, never a T×Tk buffer. The reference for
// kernels/cuda/flash_attention.h; FlashParams and the dropout mask are in kernels/flash_params.h.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/flash_params.h"

namespace mixgrad::kernels::cpu {

// O (strides p.o) and LSE (contiguous [B,H,T], natural log of Σ exp(scale·q·k) over visible keys; +inf on
// fully masked rows, whose O row is 0) from Q, K, V. Throws std::invalid_argument on bad parameters.
// OpenMP over (b, h, query block). Deterministic.
template <class T>
void flash_attention_forward(T* o, float* lse, const T* q, const T* k, const T* v, const FlashParams& p);

// Bytes of scratch flash_attention_backward needs (D = rowsum(dO ∘ O), one double per query row).
size_t flash_attention_backward_workspace_bytes(const FlashParams& p);

// dQ, dK, dV (strides p.dq, p.dk, p.dv; fully written, not accumulated into) from dO (strides p.dout) and the
// forward's Q, K, V, O and LSE; P is recomputed from Q, K and LSE. `workspace` holds at least
// flash_attention_backward_workspace_bytes(p) bytes, 8-byte aligned. Pass 1 computes D. With at least two
// (b, h) heads per OpenMP thread, one task per head then walks its key blocks once, accumulating dK, dV per block
// and dQ for the head's rows (P and dS computed once); with fewer heads, pass 2 (over (b, h, key block))
// accumulates dK, dV and pass 3 (over (b, h, query block)) dQ. Both schedules add in the same per-element
// order: bitwise reproducible regardless of the thread count.
template <class T>
void flash_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* o,
                              const float* lse, const FlashParams& p, void* workspace);

}  // namespace mixgrad::kernels::cpu
