// Optimizer kernels on the CPU. The multi-tensor kernels walk the concatenated element range in fixed chunks
// (one OpenMP loop for all tensors, balanced whatever the tensor sizes).
#include "kernels/cpu/optim.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kChunk = int64_t{1} << 14;      // elements per parallel work item
constexpr int64_t kParallelMinElements = int64_t{1} << 15;
constexpr int kSumParts = 256;                    // fixed partition of sum_squares_multi (thread-count independent)

// Calls f(t, begin, end) for every tensor t overlapping the global range [g0, g1), with [begin, end) local to t.
template <class F>
void for_each_segment(const int64_t* sizes, const int64_t* starts, int num_tensors, int64_t g0, int64_t g1, F&& f) {
  if (num_tensors <= 0 || g0 >= g1) return;
  int t = static_cast<int>(std::upper_bound(starts, starts + num_tensors, g0) - starts) - 1;
  for (t = std::max(t, 0); t < num_tensors && starts[t] < g1; ++t) {
    const int64_t begin = std::max(g0, starts[t]) - starts[t], end = std::min(g1, starts[t] + sizes[t]) - starts[t];
    if (begin < end) f(t, begin, end);
  }
}

template <class F>
void parallel_segments(const int64_t* sizes, const int64_t* starts, int num_tensors, int64_t total, F&& f) {
  const int64_t chunks = (total + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1 && total >= kParallelMinElements)
  for (int64_t c = 0; c < chunks; ++c)
    for_each_segment(sizes, starts, num_tensors, c * kChunk, std::min(total, (c + 1) * kChunk), f);
}

}  // namespace

template <class T>
void adamw_step(T* const* params, const T* const* grads, T* const* exp_avg, T* const* exp_avg_sq,
                const int64_t* sizes, const int64_t* starts, int num_tensors, int64_t total, T lr, T beta1, T beta2,
                T eps, T weight_decay, T bias_correction1, T bias_correction2) {
  if (total <= 0 || num_tensors <= 0) return;
  const T decay = T(1) - lr * weight_decay;
  const T step_size = lr / bias_correction1;
  const T bc2_sqrt = std::sqrt(bias_correction2);
  const T one_minus_beta1 = T(1) - beta1, one_minus_beta2 = T(1) - beta2;
  parallel_segments(sizes, starts, num_tensors, total, [&](int t, int64_t begin, int64_t end) {
    const T* g = grads[t];
    if (g == nullptr) return;
    T* p = params[t];
    T* m = exp_avg[t];
    T* v = exp_avg_sq[t];
    for (int64_t i = begin; i < end; ++i) {
      const T gi = g[i];
      T pi = p[i];
      if (weight_decay != T(0)) pi *= decay;
      const T mi = beta1 * m[i] + one_minus_beta1 * gi;
      const T vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = pi - step_size * (mi / (std::sqrt(vi) / bc2_sqrt + eps));
    }
  });
}

template <class T>
void sgd_step(T* param, const T* grad, T* momentum_buf, int64_t n, T lr, T momentum, T dampening, T weight_decay,
              bool nesterov, bool first_step) {
  const T one_minus_dampening = T(1) - dampening;
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    T d = grad[i];
    if (weight_decay != T(0)) d += weight_decay * param[i];
    if (momentum != T(0)) {
      const T b = first_step ? d : momentum * momentum_buf[i] + one_minus_dampening * d;
      momentum_buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    param[i] -= lr * d;
  }
}

int64_t sum_squares_multi_workspace_bytes(int64_t /*total*/) { return 0; }

template <class T>
void sum_squares_multi(T* /*partial*/, T* result, const T* const* tensors, const int64_t* sizes,
                       const int64_t* starts, int num_tensors, int64_t total) {
  std::array<double, kSumParts> parts{};
  const int64_t per_part = std::max<int64_t>(kChunk, (total + kSumParts - 1) / kSumParts);
  const int num_parts = total <= 0 ? 0 : static_cast<int>((total + per_part - 1) / per_part);
#pragma omp parallel for schedule(static) if (num_parts > 1)
  for (int part = 0; part < num_parts; ++part) {
    double acc = 0.0;
    const int64_t g0 = part * per_part, g1 = std::min(total, g0 + per_part);
    for_each_segment(sizes, starts, num_tensors, g0, g1, [&](int t, int64_t begin, int64_t end) {
      const T* x = tensors[t];
      if (x == nullptr) return;
      for (int64_t i = begin; i < end; ++i) acc += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    });
    parts[part] = acc;
  }
  double sum = 0.0;
  for (int part = 0; part < num_parts; ++part) sum += parts[part];
  *result = static_cast<T>(sum);
}

template <class T>
void scale_multi(T* const* tensors, const int64_t* sizes, const int64_t* starts, int num_tensors, int64_t total,
                 T scale) {
  if (scale == T(1) || total <= 0) return;
  parallel_segments(sizes, starts, num_tensors, total, [&](int t, int64_t begin, int64_t end) {
    T* x = tensors[t];
    if (x == nullptr) return;
    for (int64_t i = begin; i < end; ++i) x[i] *= scale;
  });
}

template <class T>
void clip_coef(T* coef, const T* total_sq, T max_norm) {
  const T c = max_norm / (std::sqrt(*total_sq) + T(1e-6));
  *coef = c > T(1) ? T(1) : c;  // written so that NaN propagates (like torch.clamp), unlike std::min
}

#define MIXGRAD_INSTANTIATE_OPTIM(T)                                                                               \
  template void adamw_step<T>(T* const*, const T* const*, T* const*, T* const*, const int64_t*, const int64_t*, int, \
                              int64_t, T, T, T, T, T, T, T);                                                       \
  template void sgd_step<T>(T*, const T*, T*, int64_t, T, T, T, T, bool, bool);                                    \
  template void sum_squares_multi<T>(T*, T*, const T* const*, const int64_t*, const int64_t*, int, int64_t);       \
  template void scale_multi<T>(T* const*, const int64_t*, const int64_t*, int, int64_t, T);                        \
  template void clip_coef<T>(T*, const T*, T);
MIXGRAD_INSTANTIATE_OPTIM(float)
MIXGRAD_INSTANTIATE_OPTIM(double)
#undef MIXGRAD_INSTANTIATE_OPTIM

}  // namespace mixgrad::kernels::cpu
