// AFT (specs/mixers.md §4) on CUDA, float32: the twins of kernels/cpu/aft.h (same names, parameters and layouts
// plus the stream; read that header for what each step computes). Device pointers; launchers never synchronise.
// Deterministic except aft_fallback_backward's dw, which fallback elements accumulate with float atomics.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/aft_band.h"

namespace mixgrad::kernels::cuda {

void aft_bias_row_max(float* row_max, const float* w, const AftBand& band, int64_t N, cudaStream_t stream);
void aft_band_weights(float* aband, float* coef, const float* w, const float* row_max, const AftBand& band, int64_t N,
                      cudaStream_t stream);
void aft_dense_weights(float* a, const float* w, const float* row_max, const AftBand& band, int64_t N,
                       cudaStream_t stream);
void aft_key_weights(float* x, const float* k, const float* v, const int32_t* lengths, int64_t B, int64_t N, int64_t D,
                     cudaStream_t stream);
// GEMMs through kernels/cuda/gemm.h (full FP32, no TF32).
// causal (A lower-triangular): accepted for the CPU twin's signature; the CUDA GEMMs multiply the whole of A.
void aft_dense_matmul(float* out, const float* a, const float* in, int64_t B, int64_t N, int64_t D, bool transposed,
                      bool causal, cudaStream_t stream);
int64_t aft_band_scan_elems(int64_t B, int64_t N, int64_t D);
void aft_band_matmul(float* out, float* scan, const float* in, const float* aband, const float* coef,
                     const AftBand& band, int64_t B, int64_t N, int64_t D, bool transposed, cudaStream_t stream);
void aft_forward_finish(float* y, float* ybar, float* den, const float* q, const float* k, const float* v,
                        const float* nd, const float* w, const AftBand& band, const int32_t* lengths, int64_t B,
                        int64_t N, int64_t D, cudaStream_t stream);
void aft_backward_prep(float* g, float* dq, const float* dy, const float* q, const float* ybar, const float* den,
                       const int32_t* lengths, int64_t B, int64_t N, int64_t D, cudaStream_t stream);
void aft_backward_keys(float* dk, float* dv, const float* h, const float* x, const float* v, int64_t B, int64_t N,
                       int64_t D, cudaStream_t stream);
void aft_bias_outer(float* da, const float* g, const float* x, int64_t B, int64_t N, int64_t D, bool causal,
                    cudaStream_t stream);
void aft_band_bias_grad(float* dw, const AftBiasLayout& dw_layout, const float* g, const float* x, const float* aband,
                        const AftBand& band, int64_t B, int64_t N, int64_t D, cudaStream_t stream);
void aft_dense_bias_grad(float* dw, const AftBiasLayout& dw_layout, const float* da, const float* a,
                         const AftBand& band, int64_t N, cudaStream_t stream);
// One thread per (sample, channel) column walks its fallback elements (den == 0): dk, dv plain stores (the column
// is the thread's own), dw by atomicAdd.
void aft_fallback_backward(float* dk, float* dv, float* dw, const AftBiasLayout& dw_layout, const float* dy,
                           const float* q, const float* k, const float* v, const float* ybar, const float* den,
                           const float* w, const AftBand& band, const int32_t* lengths, int64_t B, int64_t N, int64_t D,
                           cudaStream_t stream);

// AFT-local's bias band from U and V_p: one thread per (t, j) forward; per (t, r) for du and per (t', r) for dvp.
void aft_band_product(float* out, const float* u, const float* vp, int64_t N, int64_t R, int64_t lo, int64_t W,
                      cudaStream_t stream);
void aft_band_product_backward(float* du, float* dvp, const float* g, const float* u, const float* vp, int64_t N,
                               int64_t R, int64_t lo, int64_t W, cudaStream_t stream);
// Causal AFT-simple's running-max scan and its reverse scan: one thread per (sample, channel) column.
void aft_simple_scan(float* y, float* ybar, float* run_max, float* run_den, const float* q, const float* k,
                     const float* v, const int32_t* lengths, int64_t B, int64_t N, int64_t D, cudaStream_t stream);
void aft_simple_scan_backward(float* dq, float* dk, float* dv, const float* dy, const float* q, const float* k,
                              const float* v, const float* ybar, const float* run_max, const float* run_den,
                              const int32_t* lengths, int64_t B, int64_t N, int64_t D, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
