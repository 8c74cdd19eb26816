// DCMHA Compose on one materialised chunk and the masked softmax between the stages, CUDA float32: the twin of
// kernels/cpu/compose.h (same names, parameters and semantics, plus the stream). Geometry: kernels/compose_math.h.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/compose_math.h"

namespace mixgrad::kernels::cuda {

// Device pointers (chunk.lengths too). One thread per (b, t, s), coalesced over s. Never synchronises.
void compose_forward(float* out, const float* a, const float* dyn, const float* ws, const ComposeChunk& chunk,
                     ComposeStage stage, cudaStream_t stream);

// As the CPU twin: da written, ddyn (and dws) accumulated. Kernels: a per-point pass (da and the per-point factors
// hq, hk, uq, uk into the workspace; with ws, also g masked), a warp-per-output row reduction for the query side, a
// thread-per-(b, output, s) column loop for the key side, and for ws one cuBLAS GEMM per sample (a·gᵀ, beta = 1).
// No float atomics: deterministic. workspace: compose_backward_workspace_bytes(chunk, ws != null) bytes of device
// memory, 16-byte aligned.
void compose_backward(float* da, float* ddyn, float* dws, const float* g, const float* a, const float* dyn,
                      const float* ws, const ComposeChunk& chunk, ComposeStage stage, void* workspace,
                      cudaStream_t stream);
size_t compose_backward_workspace_bytes(const ComposeChunk& chunk, bool has_ws);

// Block per row (b, h, t): max, sum and normalise over the visible keys; invisible keys and empty rows give 0.
void masked_softmax_forward(float* p, const float* x, const ComposeChunk& chunk, cudaStream_t stream);
// Block per row: D = Σ_visible p·dp by a block reduction, then dx = p ⊙ (dp − D) at visible keys, 0 elsewhere.
void masked_softmax_backward(float* dx, const float* p, const float* dp, const ComposeChunk& chunk,
                             cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
