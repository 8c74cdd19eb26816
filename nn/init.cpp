// Initialisers on the CPU Philox stream, then copied to the parameter's device.
#include "nn/init.h"

#include <cmath>

#include "kernels/cpu/elementwise.h"

namespace mixgrad::nn::init {
namespace {
template <class Fill> void fill_host(Tensor& t, Fill fill) {
  NoGradGuard ng;
  Tensor h = empty(t.shape(), TensorOptions(DType::f64));
  const GeneratorState st = generator_state();
  const uint64_t stream = next_random_stream();
  if (h.numel() > 0) fill(h.data<double>(), h.numel(), st.seed, stream);
  t.copy_(h);
}
}  // namespace

void uniform_(Tensor& t, double lo, double hi) {
  fill_host(t, [&](double* p, int64_t n, uint64_t seed, uint64_t s) { kernels::cpu::uniform_fill(p, n, seed, s, lo, hi); });
}
void normal_(Tensor& t, double mean, double std) {
  fill_host(t, [&](double* p, int64_t n, uint64_t seed, uint64_t s) { kernels::cpu::normal_fill(p, n, seed, s, mean, std); });
}
void trunc_normal_(Tensor& t, double std, double mean, double a, double b) {
  MIXGRAD_CHECK(a < b, "trunc_normal_: empty interval [{}, {}]", a, b);
  fill_host(t, [&](double* p, int64_t n, uint64_t seed, uint64_t s) {
    kernels::cpu::trunc_normal_fill(p, n, seed, s, mean, std, a, b);
  });
}
void zeros_(Tensor& t) {
  NoGradGuard ng;
  t.fill_(0.0);
}
void ones_(Tensor& t) {
  NoGradGuard ng;
  t.fill_(1.0);
}
void xavier_uniform_(Tensor& t, double gain) {
  MIXGRAD_CHECK(t.dim() >= 2, "xavier_uniform_: weight must be at least 2-D, got {}", shape_str(t.shape()));
  const int64_t receptive = t.numel() / (t.size(0) * t.size(1));
  const double fan_in = double(t.size(1) * receptive), fan_out = double(t.size(0) * receptive);
  const double a = fan_in + fan_out > 0 ? gain * std::sqrt(6.0 / (fan_in + fan_out)) : 0.0;
  uniform_(t, -a, a);
}

void linear_default_(Tensor& weight, Tensor& bias) {
  MIXGRAD_CHECK(weight.dim() >= 2, "linear_default_: weight must be at least 2-D, got {}", shape_str(weight.shape()));
  const int64_t fan_in = weight.numel() / weight.size(0);
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
  uniform_(weight, -bound, bound);
  if (bias.defined()) uniform_(bias, -bound, bound);
}

}  // namespace mixgrad::nn::init
