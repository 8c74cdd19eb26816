// Fused (log-softmax + NLL) cross-entropy over float logits [rows, classes] with int64 targets on CUDA; the CPU
// reference is kernels/cpu/loss.h (same formulas, label smoothing as in PyTorch). A warp per row for
// classes <= 1024, a block per row otherwise; one pass with an online max/sum. fp32 accumulation, deterministic.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mixgrad::kernels::cuda {

// Writes loss[r] (0 where target[r] == ignore_index) and lse[r] = logsumexp(logits[r]). A target outside
// [0, classes) that is not ignore_index is never read through: its row is treated as ignored and *bad_target is
// set to 1 (bad_target: a device int the caller zeroes and checks after its next sync; may be null).
void cross_entropy_forward(float* loss, float* lse, const float* logits, const int64_t* target, int64_t rows,
                           int64_t classes, int64_t ignore_index, float label_smoothing, int* bad_target,
                           cudaStream_t stream);

// inv_count[0] = 1 / (number of rows whose target != ignore_index), the divisor of the "mean" reduction, computed in
// double and rounded to float once as the CPU op does (NaN when no row counts). One block; no host read-back.
void cross_entropy_inverse_count(float* inv_count, const int64_t* target, int64_t rows, int64_t ignore_index,
                                 cudaStream_t stream);

// dlogits[r, c] = dloss[r] * (exp(logits[r, c] - lse[r]) - (1 - eps) * [c == target[r]] - eps / classes); ignored
// rows and rows with a bad target (which set *bad_target like the forward) get 0.
void cross_entropy_backward(float* dlogits, const float* dloss, const float* logits, const float* lse,
                            const int64_t* target, int64_t rows, int64_t classes, int64_t ignore_index,
                            float label_smoothing, int* bad_target, cudaStream_t stream);

}  // namespace mixgrad::kernels::cuda
