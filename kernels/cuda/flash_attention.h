// Fused flash-style softmax attention on CUDA (specs/mixers.md §2), fp32 SIMT path: 64×64 tiles, 256 threads,
// 4×4 register micro-tiles, head dim d <= 128 (kernels specialised for 32, 64, 128; smaller d runs the next
// larger one zero-padded). Scores never reach global memory. With FlashParams::precision tf32 or bf16 on a device of
// compute capability >= 8.0 the forward, dK/dV and dQ kernels run on tensor cores instead
// (kernels/flash_attention_tc.h: 4 warps per 64 rows, mma.sync m16n8k8 on operands rounded to that precision; same
// launches, masks, dropout and determinism). CPU reference:
// kernels/cpu/flash_attention.h; FlashParams and the shared dropout mask: kernels/flash_params.h.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/flash_params.h"

namespace mixgrad::kernels::cuda {

// Largest head dim the kernels support; larger d throws std::invalid_argument.
constexpr int64_t kFlashMaxHeadDim = 128;

// O (strides p.o) and LSE (contiguous [B,H,T] fp32, natural log; +inf on fully masked rows, whose O row is 0).
// All pointers, including p.kv_len, are device pointers. One CTA per (b, h, 64 query rows), online softmax.
// Throws std::invalid_argument on bad parameters (before any launch).
void flash_attention_forward(float* o, float* lse, const float* q, const float* k, const float* v,
                             const FlashParams& p, cudaStream_t stream);

// Bytes of device scratch flash_attention_backward needs: D = rowsum(dO ∘ O), fp32 [B,H,T].
size_t flash_attention_backward_workspace_bytes(const FlashParams& p);

// dQ, dK, dV (fully written) from dO and the forward's Q, K, V, O, LSE. `workspace`: device memory of at least
// flash_attention_backward_workspace_bytes(p) bytes, 16-byte aligned. Three launches on `stream`: D, then
// dK/dV (one CTA per (b, h, 64 keys), looping over query blocks), then dQ (one CTA per (b, h, 64 query rows),
// looping over key blocks). No atomics: bitwise reproducible.
void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                              const float* v, const float* o, const float* lse, const FlashParams& p,
                              void* workspace, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
