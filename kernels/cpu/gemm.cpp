// Row-major strided-batched GEMM via cblas; batches of small matrices go over OpenMP threads instead.
#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/precision.h"

namespace mixgrad::kernels::cpu {
namespace {

// OpenBLAS keeps a pool of per-thread buffers sized when it was built (from its NUM_THREADS); too many threads
// calling it at once can exhaust the pool and abort the process, so the batch loop never uses more than this.
constexpr int kMaxBatchThreads = 32;

// Per-matrix work (m * n * k) range in which spreading the batch over threads (OpenBLAS single-threaded inside)
// beats a plain loop of (internally threaded) cblas calls. Measured on 2 cores (AMD EPYC, OpenBLAS 0.3.21):
// 256 x 64^3: 1.8-1.9x faster, 1024 x 32^3: 1.7x, 16 x 256^3: 1.4x, 2048 x 20^3: 0.9-1.0x, 4096 x 16^3: 0.65x
// (below ~32^3 concurrent OpenBLAS calls contend on its buffer lock and the per-call overhead dominates).
// On an oversubscribed machine (other busy processes) the threaded batch loop was 3-5x slower than the plain
// loop instead; dynamic scheduling costs nothing when idle and limits that damage (~30% better than static).
constexpr int64_t kBatchParallelMinWork = int64_t{32} * 32 * 32;
constexpr int64_t kBatchParallelMaxWork = int64_t{256} * 256 * 256;

// Below this m * n * k a single matrix product runs on one thread (forking costs more than it saves).
constexpr int64_t kSplitMinWork = int64_t{64} * 64 * 64;

// OpenBLAS runs single-threaded inside mixgrad; all CPU parallelism is OpenMP's (OMP_NUM_THREADS). Two thread
// pools on the same cores (OpenBLAS's pthreads and OpenMP's) spin against each other between calls: a ViT
// training step on 2 cores ran at 385 img/s with both at 2 threads, 699 img/s with OpenBLAS at 1 thread.
void blas_single_threaded() {
  static const bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

void check_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw std::invalid_argument(std::string("gemm_strided_batched: ") + what + " = " + std::to_string(v) +
                                " is outside [0, INT_MAX]");
}

template <class T>
void gemm_one(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* A, int lda, const T* B, int ldb,
              T beta, T* C, int ldc) {
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

// C = beta * C, with beta == 0 writing zeros (BLAS semantics: C is not read).
template <class T>
void scale_c(T* C, int64_t m, int64_t n, int64_t ldc, T beta) {
  for (int64_t i = 0; i < m; ++i) {
    T* row = C + i * ldc;
    if (beta == T(0))
      std::fill(row, row + n, T(0));
    else
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
  }
}

}  // namespace

template <class T>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* A,
                          int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta, T* C,
                          int64_t ldc, int64_t stride_c, int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  const bool outputs_disjoint = stride_c >= m * ldc;
  if (k == 0) {  // cblas implementations differ on k == 0; BLAS semantics say C = beta * C.
    for (int64_t b = 0; b < batch; ++b) scale_c(C + b * stride_c, m, n, ldc, beta);
    return;
  }
  check_int(m, "m");
  check_int(n, "n");
  check_int(k, "k");
  check_int(lda, "lda");
  check_int(ldb, "ldb");
  check_int(ldc, "ldc");
  const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
  const int ilda = static_cast<int>(lda), ildb = static_cast<int>(ldb), ildc = static_cast<int>(ldc);

  blas_single_threaded();
  const int threads = std::min(omp_get_max_threads(), kMaxBatchThreads);
  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const bool can_thread = threads > 1 && !omp_in_parallel();
  const bool spread_batch = can_thread && outputs_disjoint && batch >= 2 * threads &&
                            work >= static_cast<double>(kBatchParallelMinWork) &&
                            work <= static_cast<double>(kBatchParallelMaxWork);
  if (spread_batch) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4)
    for (int64_t b = 0; b < batch; ++b)
      gemm_one(trans_a, trans_b, im, in, ik, alpha, A + b * stride_a, ilda, B + b * stride_b, ildb, beta,
               C + b * stride_c, ildc);
    return;
  }
  // One matrix at a time; a large one is cut into `parts` blocks of whole rows of C (or whole columns when C
  // has few rows), one single-threaded OpenBLAS call each: every element of C comes from one call over the full
  // k (no cross-thread reduction), so results are deterministic for a given thread count.
  const int64_t min_rows = 16 * threads, min_cols = 16 * threads;
  const bool by_rows = m >= min_rows, by_cols = !by_rows && n >= min_cols;
  const int parts = (can_thread && work >= static_cast<double>(kSplitMinWork) && (by_rows || by_cols)) ? threads : 1;
  for (int64_t b = 0; b < batch; ++b) {
    const T* Ab = A + b * stride_a;
    const T* Bb = B + b * stride_b;
    T* Cb = C + b * stride_c;
    if (parts == 1) {
      gemm_one(trans_a, trans_b, im, in, ik, alpha, Ab, ilda, Bb, ildb, beta, Cb, ildc);
      continue;
    }
    const int64_t extent = by_rows ? m : n;
    // Block edges on multiples of 16 (OpenBLAS's micro-kernel widths divide 16), remainder to the last block.
    const int64_t step = ((extent / parts) + 15) / 16 * 16;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int part = 0; part < parts; ++part) {
      const int64_t lo = std::min(extent, part * step);
      const int64_t hi = part + 1 == parts ? extent : std::min(extent, lo + step);
      if (hi <= lo) continue;
      const int len = static_cast<int>(hi - lo);
      if (by_rows)  // rows lo..hi of op(A) and C
        gemm_one(trans_a, trans_b, len, in, ik, alpha, trans_a ? Ab + lo : Ab + lo * lda, ilda, Bb, ildb, beta,
                 Cb + lo * ldc, ildc);
      else  // columns lo..hi of op(B) and C
        gemm_one(trans_a, trans_b, im, len, ik, alpha, Ab, ilda, trans_b ? Bb + lo * ldb : Bb + lo, ildb, beta,
                 Cb + lo, ildc);
    }
  }
}

void round_to_bf16(float* dst, const float* src, int64_t n) {
  // One pass of integer work per element: threads only pay off on large operands.
#pragma omp parallel for schedule(static) if (n >= (int64_t{1} << 16) && !omp_in_parallel())
  for (int64_t i = 0; i < n; ++i) dst[i] = std::bit_cast<float>(bf16_round_bits(std::bit_cast<uint32_t>(src[i])));
}

template void gemm_strided_batched<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                          int64_t, const float*, int64_t, int64_t, float, float*, int64_t, int64_t,
                                          int64_t);
template void gemm_strided_batched<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                                           int64_t, const double*, int64_t, int64_t, double, double*, int64_t,
                                           int64_t, int64_t);

}  // namespace mixgrad::kernels::cpu
