// Row-major strided-batched GEMMs through cuBLAS (fp32 or TF32 SGEMM, bf16 GemmEx), with a lazily created cuBLAS
// handle per (device, stream).
#include "kernels/cuda/gemm.h"

#include <cublas_v2.h>

#include <algorithm>
#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/cuda/check.h"
#include "kernels/cuda/device_facts.h"
#include "kernels/precision.h"

namespace mixgrad::kernels::cuda {

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string("cuBLAS error at ") + file + ":" + std::to_string(line) + " in `" + expr +
                           "`: " + cublasGetStatusString(status));
}

}  // namespace mixgrad::kernels::cuda

// Guarded so that a later shared definition (kernels/cuda/check.h) takes precedence without a clash.
#ifndef MIXGRAD_CUBLAS_CHECK
#define MIXGRAD_CUBLAS_CHECK(expr)                                                           \
  do {                                                                                       \
    const cublasStatus_t mixgrad_status_ = (expr);                                           \
    if (mixgrad_status_ != CUBLAS_STATUS_SUCCESS)                                            \
      ::mixgrad::kernels::cuda::throw_cublas_error(mixgrad_status_, #expr, __FILE__, __LINE__); \
  } while (0)
#endif

namespace mixgrad::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------- kernels

// C[b] = beta * C[b] (beta == 0 writes zeros without reading C): the k == 0 case, which BLAS defines but
// cuBLAS does not document.
__global__ void scale_c_kernel(float* __restrict__ C, int64_t m, int64_t n, int64_t ldc, int64_t stride_c,
                               int64_t total, float beta) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t j = i % n;
    const int64_t r = (i / n) % m;
    const int64_t b = i / (n * m);
    float* c = C + b * stride_c + r * ldc + j;
    *c = beta == 0.f ? 0.f : beta * *c;
  }
}

__global__ void convert_to_bf16_kernel(uint16_t* __restrict__ dst, const float* __restrict__ src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = static_cast<uint16_t>(bf16_round_bits(__float_as_uint(src[i])) >> 16);
}

// ---------------------------------------------------------------------------------------------- handles

// One handle per (device, stream): a handle is bound to the device current at creation, and binding it to a
// stream once avoids cublasSetStream on every call. The per-entry mutex serialises "set math mode + enqueue"
// for threads sharing a stream (cuBLAS handles are not safe to reconfigure concurrently); enqueueing is
// asynchronous, so the lock is held for microseconds.
// Streams are expected to be long-lived (the engine's stream registry); a handle is never destroyed.
struct HandleEntry {
  cublasHandle_t handle = nullptr;
  std::mutex mutex;
};

struct HandleCache {
  std::mutex mutex;
  std::map<std::pair<int, cudaStream_t>, std::unique_ptr<HandleEntry>> entries;
};

// Leaked on purpose: destroying handles from a static destructor at exit can run after the CUDA driver has
// been unloaded (crash or error at shutdown); the OS reclaims everything when the process ends.
HandleCache& handle_cache() {
  static HandleCache* cache = new HandleCache;
  return *cache;
}

HandleEntry& handle_for(cudaStream_t stream) {
  int device = 0;
  MIXGRAD_CUDA_CHECK(cudaGetDevice(&device));
  HandleCache& cache = handle_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  std::unique_ptr<HandleEntry>& slot = cache.entries[{device, stream}];
  if (!slot) {
    auto entry = std::make_unique<HandleEntry>();
    MIXGRAD_CUBLAS_CHECK(cublasCreate(&entry->handle));
    try {
      MIXGRAD_CUBLAS_CHECK(cublasSetStream(entry->handle, stream));
      MIXGRAD_CUBLAS_CHECK(cublasSetPointerMode(entry->handle, CUBLAS_POINTER_MODE_HOST));
    } catch (...) {
      cublasDestroy(entry->handle);
      throw;
    }
    slot = std::move(entry);
  }
  return *slot;
}

void check_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw std::invalid_argument(std::string("gemm_strided_batched (CUDA): ") + what + " = " + std::to_string(v) +
                                " is outside [0, INT_MAX]");
}

// cuBLAS takes an int batch count; splitting keeps every call well inside the grid limits as well.
constexpr int64_t kMaxBatchPerCall = 65535;

}  // namespace

// ---------------------------------------------------------------------------------------------- launchers

namespace {

// The k == 0 case (C = beta * C) and the int limits cuBLAS needs; false when there is nothing left to do.
bool gemm_prologue(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, float beta, float* C, int64_t ldc,
                   int64_t stride_c, int64_t batch, cudaStream_t stream) {
  if (m == 0 || n == 0 || batch == 0) return false;
  if (k == 0) {
    const int64_t total = m * n * batch;
    constexpr int kThreads = 256;
    const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t{1} << 20);
    scale_c_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(C, m, n, ldc, stride_c, total, beta);
    MIXGRAD_CUDA_LAUNCH_CHECK();
    return false;
  }
  check_int(m, "m");
  check_int(n, "n");
  check_int(k, "k");
  check_int(lda, "lda");
  check_int(ldb, "ldb");
  check_int(ldc, "ldc");
  return true;
}

}  // namespace

void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* A,
                          int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                          float* C, int64_t ldc, int64_t stride_c, int64_t batch, bool allow_tf32,
                          cudaStream_t stream) {
  if (!gemm_prologue(m, n, k, lda, ldb, beta, C, ldc, stride_c, batch, stream)) return;
  HandleEntry& entry = handle_for(stream);
  std::lock_guard<std::mutex> lock(entry.mutex);
  MIXGRAD_CUBLAS_CHECK(cublasSetMathMode(entry.handle, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a row-major matrix read column-major is
  // its transpose: so pass B first, A second, with their own transpose flags and the dimensions (n, m, k).
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  for (int64_t b0 = 0; b0 < batch; b0 += kMaxBatchPerCall) {
    const int count = static_cast<int>(std::min(kMaxBatchPerCall, batch - b0));
    MIXGRAD_CUBLAS_CHECK(cublasSgemmStridedBatched(
        entry.handle, op_b, op_a, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha,
        B + b0 * stride_b, static_cast<int>(ldb), stride_b, A + b0 * stride_a, static_cast<int>(lda), stride_a, &beta,
        C + b0 * stride_c, static_cast<int>(ldc), stride_c, count));
  }
}

void convert_to_bf16(uint16_t* dst, const float* src, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 16);
  convert_to_bf16_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(dst, src, n);
  MIXGRAD_CUDA_LAUNCH_CHECK();
}

void gemm_strided_batched_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                               const uint16_t* A, int64_t lda, int64_t stride_a, const uint16_t* B, int64_t ldb,
                               int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c, int64_t batch,
                               cudaStream_t stream) {
  if (!gemm_prologue(m, n, k, lda, ldb, beta, C, ldc, stride_c, batch, stream)) return;
  const DeviceFacts dev = current_device_facts();
  if (dev.major < 8)
    throw std::invalid_argument("gemm_strided_batched_bf16 (CUDA): bf16 products need compute capability 8.0 or "
                                "newer; device " + std::to_string(dev.device) + " is " + std::to_string(dev.major) +
                                "." + std::to_string(dev.minor) + " (use precision fp32 or tf32)");
  HandleEntry& entry = handle_for(stream);
  std::lock_guard<std::mutex> lock(entry.mutex);
  MIXGRAD_CUBLAS_CHECK(cublasSetMathMode(entry.handle, CUBLAS_DEFAULT_MATH));
  // Row-major to column-major as in gemm_strided_batched: B first, A second, dimensions (n, m, k).
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  for (int64_t b0 = 0; b0 < batch; b0 += kMaxBatchPerCall) {
    const int count = static_cast<int>(std::min(kMaxBatchPerCall, batch - b0));
    MIXGRAD_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        entry.handle, op_b, op_a, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha,
        B + b0 * stride_b, CUDA_R_16BF, static_cast<int>(ldb), stride_b, A + b0 * stride_a, CUDA_R_16BF,
        static_cast<int>(lda), stride_a, &beta, C + b0 * stride_c, CUDA_R_32F, static_cast<int>(ldc), stride_c, count,
        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace mixgrad::kernels::cuda
