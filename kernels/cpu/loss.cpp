// Cross-entropy rows: targets are validated first (nothing is written on a bad target), then OpenMP over rows.
#include "kernels/cpu/loss.h"

#include "kernels/cpu/vec_math.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 14;

void check_targets(const char* op, const int64_t* target, int64_t rows, int64_t classes, int64_t ignore_index) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = target[r];
    if (t != ignore_index && (t < 0 || t >= classes))
      throw std::invalid_argument(std::string(op) + ": target " + std::to_string(t) + " at row " + std::to_string(r) +
                                  " is outside [0, " + std::to_string(classes) + ") and is not ignore_index (" +
                                  std::to_string(ignore_index) + ")");
  }
}

}  // namespace

template <class T>
void cross_entropy_forward(T* loss, T* lse, const T* logits, const int64_t* target, int64_t rows, int64_t classes,
                           int64_t ignore_index, T label_smoothing) {
  if (rows <= 0) return;
  check_targets("cross_entropy_forward", target, rows, classes, ignore_index);
  const double eps = static_cast<double>(label_smoothing);
#pragma omp parallel for schedule(static) if (rows * classes > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* z = logits + r * classes;
    const T m = classes > 0 ? vec::max_of(z, classes) : -std::numeric_limits<T>::infinity();
    double l = static_cast<double>(m);  // a row of -inf (or no classes) has logsumexp -inf
    if (m != -std::numeric_limits<T>::infinity()) l += std::log(vec::exp_sum_f64(z, classes, m));
    lse[r] = static_cast<T>(l);
    const int64_t t = target[r];
    if (t == ignore_index) {
      loss[r] = T(0);
      continue;
    }
    double v = (1.0 - eps) * (l - static_cast<double>(z[t]));
    if (eps != 0) {
      double sum_z = 0;
      for (int64_t c = 0; c < classes; ++c) sum_z += static_cast<double>(z[c]);
      v += eps * (l - sum_z / static_cast<double>(classes));
    }
    loss[r] = static_cast<T>(v);
  }
}

template <class T>
void cross_entropy_backward(T* dlogits, const T* dloss, const T* logits, const T* lse, const int64_t* target,
                            int64_t rows, int64_t classes, int64_t ignore_index, T label_smoothing) {
  if (rows <= 0 || classes <= 0) return;
  check_targets("cross_entropy_backward", target, rows, classes, ignore_index);
  const T eps = label_smoothing;
  const T off = eps / static_cast<T>(classes);
#pragma omp parallel for schedule(static) if (rows * classes > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    T* dz = dlogits + r * classes;
    const int64_t t = target[r];
    if (t == ignore_index) {
      std::fill(dz, dz + classes, T(0));
      continue;
    }
    const T* z = logits + r * classes;
    const T g = dloss[r], l = lse[r];
    if constexpr (std::is_same_v<T, float>) {
#pragma omp simd
      for (int64_t c = 0; c < classes; ++c) dz[c] = g * (vec::exp(z[c] - l) - off);
    } else {
      for (int64_t c = 0; c < classes; ++c) dz[c] = g * (std::exp(z[c] - l) - off);
    }
    dz[t] -= g * (T(1) - eps);
  }
}

#define MIXGRAD_INSTANTIATE(T)                                                                                         \
  template void cross_entropy_forward<T>(T*, T*, const T*, const int64_t*, int64_t, int64_t, int64_t, T);              \
  template void cross_entropy_backward<T>(T*, const T*, const T*, const T*, const int64_t*, int64_t, int64_t, int64_t, \
                                          T);
MIXGRAD_INSTANTIATE(float)
MIXGRAD_INSTANTIATE(double)
#undef MIXGRAD_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
