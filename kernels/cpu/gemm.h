// Row-major strided-batched GEMM on the CPU through OpenBLAS (cblas): the reference for kernels/cuda/gemm.h.
#pragma once
#include <cstdint>

namespace mixgrad::kernels::cpu {

// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b] for b < batch, all matrices row-major.
// op(A) is m x k (A stored m x k with lda >= k, or k x m with lda >= m when trans_a), op(B) is k x n
// (stored k x n with ldb >= n, or n x k with ldb >= k when trans_b), C is m x n with ldc >= n.
// X[b] = X + b * stride_x; stride_a / stride_b may be 0 (operand broadcast over the batch). beta == 0 means
// C is not read (NaN in C does not propagate). k == 0 gives C = beta * C. Batches whose outputs overlap
// (stride_c < m * ldc, e.g. 0) are applied one after another in batch order.
// Threads: OpenMP only. The first call sets OpenBLAS to one thread for the process; many small matrices are
// spread over OpenMP threads, and a large single matrix is cut into row (or column) blocks, one per thread.
// Results are deterministic for a given OMP_NUM_THREADS.
template <class T>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* A,
                          int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta, T* C,
                          int64_t ldc, int64_t stride_c, int64_t batch);

// dst[i] = src[i] rounded to bfloat16 (kernels/precision.h; kept in fp32 layout), i < n; dst may equal src.
// OpenMP over large n.
void round_to_bf16(float* dst, const float* src, int64_t n);

}  // namespace mixgrad::kernels::cpu
