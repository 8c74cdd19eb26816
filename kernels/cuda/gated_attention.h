// MEGA / GAU gated-attention scores on CUDA, float32: the same kernels, signatures and math as the CPU reference
// kernels/cpu/gated_attention.h (read it for the formulas), plus the stream. Device pointers; never synchronises.
//
// Tiling: 32 queries × 32 keys per score tile, 128 threads per block (4 per tile row, 8 score columns each). The dot
// products over Z (scores) and E (dout·vᵀ) stream through shared memory 32 columns at a time, so any Z and E work;
// outputs are produced in slices of 64 columns (a grid dimension), each block keeping its 32 × 64 slice in registers.
//  - forward: one block per (query tile, E slice, sample); key tiles through shared memory; softmax online (running
//    max and sum per row; the row log-sum-exp is written for the backward). No span × span buffer anywhere.
//  - backward: D_i = dout_i·out_i (softmax; one warp per row); dq and drel_bias: one block per (group of query tiles,
//    Z slice, sample), a group walking its tiles in order and adding each tile's diagonal sums of ds into its own
//    partial row [2P − 1]; dk and dv: one block per (key tile, Z or E slice, sample) over the span's query tiles; then
//    drel_bias = the partial rows added in (sample, group) order. No atomics: results are deterministic.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/gated_attention_math.h"

namespace mixgrad::kernels::cuda {

// out [B, L, E]; lse [B, L] (softmax only; may be null otherwise). bias [2P − 1] or null, lengths [B] or null.
void gated_attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const float* bias,
                             const int32_t* lengths, const GattSizes& s, cudaStream_t stream);

// Bytes of scratch gated_attention_backward needs (floats: D per row and the drel_bias partial rows).
size_t gated_attention_backward_workspace_bytes(const GattSizes& s);

// dq, dk [B, L, Z], dv [B, L, E] and dbias [2P − 1] (when bias is given), all overwritten; workspace holds at least
// gated_attention_backward_workspace_bytes(s) bytes.
void gated_attention_backward(float* dq, float* dk, float* dv, float* dbias, float* workspace, const float* dout,
                              const float* q, const float* k, const float* v, const float* out, const float* lse,
                              const float* bias, const int32_t* lengths, const GattSizes& s, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
