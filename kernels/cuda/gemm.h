// Row-major strided-batched SGEMM on CUDA through cuBLAS (operands swapped internally); twin of kernels/cpu/gemm.h.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mixgrad::kernels::cuda {

// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b], row-major, same operand conventions as
// kernels::cpu::gemm_strided_batched (stride_a / stride_b may be 0; beta == 0 does not read C; k == 0 gives
// C = beta * C). allow_tf32 selects CUBLAS_TF32_TENSOR_OP_MATH for this call, otherwise CUBLAS_DEFAULT_MATH
// (full FP32). Runs on the current device and `stream`; never synchronises. m, n, k and the leading
// dimensions must fit in int (cuBLAS); larger batches are split into several cuBLAS calls.
// Overlapping outputs (stride_c < m * ldc) are not supported (cuBLAS runs batches concurrently).
// cuBLAS errors throw std::runtime_error with file, line and cublasGetStatusString.
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* A,
                          int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                          float* C, int64_t ldc, int64_t stride_c, int64_t batch, bool allow_tf32,
                          cudaStream_t stream);

// dst[i] = the bfloat16 bit pattern of src[i] (round to nearest even, kernels/precision.h), i < n. Never synchronises.
void convert_to_bf16(uint16_t* dst, const float* src, int64_t n, cudaStream_t stream);

// gemm_strided_batched with bfloat16 operands A and B (bit patterns, e.g. from convert_to_bf16) and fp32 C, alpha,
// beta and accumulation: cublasGemmStridedBatchedEx with CUDA_R_16BF inputs and CUBLAS_COMPUTE_32F. Same operand
// conventions, limits and errors as gemm_strided_batched (k == 0 gives C = beta * C); a device below compute
// capability 8.0 throws std::invalid_argument.
void gemm_strided_batched_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                               const uint16_t* A, int64_t lda, int64_t stride_a, const uint16_t* B, int64_t ldb,
                               int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c, int64_t batch,
                               cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
