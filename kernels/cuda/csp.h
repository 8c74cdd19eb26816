// CSP (channel-wise sample permutation, specs/csp.md) on CUDA, float32; the CPU reference is kernels/cpu/csp.h and
// both agree bit for bit (values are copied, never recomputed; same order: NaN last, -0 == +0, stable ties).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mixgrad::kernels::cuda {

// Which kernel layout runs (spec §8.3). simple = Design A: one thread per (b, group, channel), channels fastest
// (coalesced writes, scattered reads). tiled = Design B: one CTA per (b, 32-channel tile, 64-row band) stages the
// source window into shared memory with coalesced row loads; a CTA whose tile has a shift spread above the window
// budget falls back to Design A's direct loads. slab = Design C: a thread-block cluster (compute capability 9.0)
// holds a sample's whole channel slab (all N rows of 8–32 channels) in distributed shared memory, so every read and
// write of global memory is row-contiguous whatever the shifts; it needs N·C·4 bytes (twice that backward) over at
// most 16 CTAs of up to 200 KiB, which holds N up to about 50,000 (a clear error beyond, or without clusters).
// automatic picks tiled when D >= 16, N <= 4096 and the grid fits, else simple — except gather for the backward
// when N > 4096 (from H100 measurements: docs/benchmarks/gpu-h100.md); slab and window run only when asked for
// (they were slower at every measured size), and
// MIXGRAD_CSP_DESIGN=simple|tiled|slab|gather|window overrides automatic for benchmarks.
// gather = Design D: the forward is Design A's; the backward runs one thread per dv element, so dv is written
// row-contiguously and the only scattered access is a read of dy.
// window = Design E: the forward stages, per 8-channel octet and 1024-row band, the octet's source rows in shared
// memory as whole 32-byte sectors (A wastes 28 of every 32 bytes it fetches when neighbouring channels' shifts
// differ); the backward is Design D's. Slower than A and B at every measured size: only run when asked for.
enum class CspDesign { automatic, simple, tiled, slab, gather, window };

// Device pointers; v, y, dy, dv [B, N, D] row-major, shifts [D] (>= 0, used mod n_b), lengths [B] in [1, N] or null.
// K in {2, 4, 8} and N % K == 0 (the engine op validates; a bad K throws std::invalid_argument). Never synchronises.
void csp_forward(float* y, const float* v, const int32_t* shifts, const int32_t* lengths, int64_t B, int64_t N,
                 int64_t D, int K, cudaStream_t stream, CspDesign design = CspDesign::automatic);

// dv[b, π(j), c] = dy[b, j, c] for j < n_b (ranks recomputed from v), every dv element written exactly once with a
// plain store (no atomics); dv rows >= n_b are 0.
void csp_backward(float* dv, const float* dy, const float* v, const int32_t* shifts, const int32_t* lengths,
                  int64_t B, int64_t N, int64_t D, int K, cudaStream_t stream,
                  CspDesign design = CspDesign::automatic);

// lengths32[b] = lengths[b] (int64 when is_int64, else int32) clamped to [1, N]; a value outside [1, N] sets *bad (a
// device int the caller zeroes and checks at a later read-back), so the op validates lengths without waiting for the
// GPU and the kernels never see an out-of-range length. Never synchronises.
void csp_prepare_lengths(int32_t* lengths32, const void* lengths, bool is_int64, int64_t B, int64_t N, int* bad,
                         cudaStream_t stream);

// lengths[b] = the number of leading nonzero entries of row b of a key-padding mask [B, N] (uint8, nonzero = valid).
// A row with a valid entry after a padding one sets *not_prefix; a row without a leading valid entry sets *empty and
// gets length 1, so csp never sees 0 (both flags: device ints the caller zeroes and checks at a later read-back).
// One block per row. Never synchronises.
void csp_mask_lengths(int32_t* lengths, const uint8_t* mask, int64_t B, int64_t N, int* not_prefix, int* empty,
                      cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
