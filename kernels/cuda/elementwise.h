// Elementwise kernel family, CUDA launchers (float): unary and binary (broadcasting) ops with their backward
// kernels, where, fills, casts, Philox random fills and dropout. Semantics, argument order and random streams
// are those of the CPU twins in kernels/cpu/elementwise.h; each launcher enqueues on `stream` and never syncs.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/common.h"
#include "kernels/elementwise_ops.h"

namespace mixgrad::kernels::cuda {

// ---- Unary (contiguous; y may alias x, dx may alias dy) -------------------------------------------------------
void unary_forward(float* y, const float* x, int64_t n, UnaryOp op, float alpha, float beta, cudaStream_t stream);

// Reads y for exp, sqrt, tanh, sigmoid and x otherwise (the unused one may be nullptr).
void unary_backward(float* dx, const float* dy, const float* x, const float* y, int64_t n, UnaryOp op, float alpha,
                    float beta, cudaStream_t stream);

// ---- Binary with broadcasting (out contiguous; operand strides indexed by out's dimensions, 0 = broadcast) ----
void binary_forward(float* out, const float* a, const float* b, int64_t n, const StridedShape& out_shape,
                    const StridedShape& a_st, const StridedShape& b_st, BinaryOp op, cudaStream_t stream);

// Out-shaped, un-reduced gradients; da or db may be nullptr.
void binary_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n,
                     const StridedShape& out_shape, const StridedShape& a_st, const StridedShape& b_st, BinaryOp op,
                     cudaStream_t stream);

// ---- where ------------------------------------------------------------------------------------------------------
void where_forward(float* out, const uint8_t* cond, const float* a, const float* b, int64_t n,
                   const StridedShape& out_shape, const StridedShape& cond_st, const StridedShape& a_st,
                   const StridedShape& b_st, cudaStream_t stream);

void where_backward(float* da, float* db, const uint8_t* cond, const float* dout, int64_t n,
                    const StridedShape& out_shape, const StridedShape& cond_st, cudaStream_t stream);

// ---- Fills and casts ------------------------------------------------------------------------------------------
void fill(float* y, int64_t n, float value, cudaStream_t stream);

void arange_fill(float* y, int64_t n, double start, double step, cudaStream_t stream);

// Instantiated for (To, From) = (float, float), (float, int32_t), (float, int64_t), (float, uint8_t),
// (int32_t, float), (int64_t, float), (uint8_t, float).
template <class To, class From>
void cast(To* y, const From* x, int64_t n, cudaStream_t stream);

// ---- Random (bit-identical to the CPU twins for uniform_fill and dropout; normal fills agree to the last bit in
// practice: double-precision Box-Muller, see kernels/elementwise_ops.h for the draw bookkeeping) ---------------
void uniform_fill(float* y, int64_t n, uint64_t seed, uint64_t offset, float lo, float hi, cudaStream_t stream);

void normal_fill(float* y, int64_t n, uint64_t seed, uint64_t offset, float mean, float std, cudaStream_t stream);

void trunc_normal_fill(float* y, int64_t n, uint64_t seed, uint64_t offset, float mean, float std, float a, float b,
                       cudaStream_t stream);

// ---- Dropout ------------------------------------------------------------------------------------------------
void dropout_forward(float* y, const float* x, int64_t n, float p, uint64_t seed, uint64_t offset,
                     cudaStream_t stream);

void dropout_backward(float* dx, const float* dy, int64_t n, float p, uint64_t seed, uint64_t offset,
                      cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
