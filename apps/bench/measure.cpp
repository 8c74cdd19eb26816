// Timing harness. Forward: the op under NoGradGuard, output dropped at once (as in a training loop). Backward of an
// op that records one tape node: that node's backward (Node::apply) on graphs built untimed just before the sample,
// so the time is the backward kernels plus their output allocation — no forward, no tape walk, no .grad
// accumulation. An op that records several nodes (composite attention: matmul, scale, softmax, matmul) is timed as
// a whole autograd::backward from its output to its inputs, one graph at a time (built untimed, synchronised on
// both sides): every node's kernels, the tape walk and the inputs' .grad (fresh each call).
#include "apps/bench/measure.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>

namespace mixgrad::bench {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int64_t set_bytes(const std::vector<Tensor>& inputs) {
  int64_t b = 0;
  for (const Tensor& t : inputs) b += int64_t(t.nbytes());
  return b;
}

// Runs `sample(calls)` (which returns its own elapsed ms) warmup + repeats times; the first warm-up sample sizes
// `calls` so that one sample lasts about cfg.min_sample_ms. Returns the median ms per call.
template <class Sample>
PassTime run_samples(const MeasureConfig& cfg, int64_t sets, Sample&& sample) {
  PassTime t;
  t.input_sets = sets;
  int64_t calls = sets;
  const double first = sample(calls) / double(calls);
  if (first > 0 && double(calls) * first < cfg.min_sample_ms)
    calls = std::min<int64_t>(cfg.max_calls, std::max<int64_t>(calls, int64_t(std::ceil(cfg.min_sample_ms / first))));
  for (int i = 1; i < cfg.warmup; ++i) sample(calls);
  std::vector<double> per_call;
  for (int i = 0; i < cfg.repeats; ++i) per_call.push_back(sample(calls) / double(calls));
  t.ms = median(per_call);
  t.calls = calls;
  return t;
}

}  // namespace

CaseTimes measure(const OpCase& c, Device device, const MeasureConfig& cfg, bool backward) {
  // Input sets: enough that one pass over them spans cfg.cold_mib, so each call reads memory the previous calls
  // have pushed out of the last-level cache (CPU L3, GPU L2).
  std::vector<std::vector<Tensor>> sets{c.make_inputs(device)};
  const int64_t one = std::max<int64_t>(1, set_bytes(sets[0]));
  const int64_t wanted = std::clamp<int64_t>(int64_t(std::ceil(cfg.cold_mib * 1048576.0 / double(one))), 1, 256);
  while (int64_t(sets.size()) < wanted) sets.push_back(c.make_inputs(device));
  const int64_t n_sets = int64_t(sets.size());

  CaseTimes out;
  {
    NoGradGuard no_grad;
    out.forward = run_samples(cfg, n_sets, [&](int64_t calls) {
      synchronize(device);
      const auto t0 = Clock::now();
      for (int64_t i = 0; i < calls; ++i) c.forward(sets[size_t(i % n_sets)]);
      synchronize(device);
      return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    });
  }
  if (!backward) return out;

  const auto& fwd = c.forward_for_backward ? c.forward_for_backward : c.forward;
  std::vector<Tensor> grads;  // one gradient per input set, made once
  autograd::clear_tape();
  {
    const Tensor y = fwd(sets[0]);
    MIXGRAD_CHECK(y.requires_grad() && !y.is_leaf(), "bench: {} {} recorded no backward", c.op, c.shape);
    grads.push_back(c.grad_output ? c.grad_output(y) : randn(y.shape(), TensorOptions(y.dtype(), y.device())));
  }
  const bool several_nodes = autograd::tape_size() > 1;
  autograd::clear_tape();
  out.has_backward = true;
  if (several_nodes) {
    while (int64_t(grads.size()) < n_sets) grads.push_back(grads[0]);
    out.backward = run_samples(cfg, n_sets, [&](int64_t calls) {
      double ms = 0;
      for (int64_t i = 0; i < calls; ++i) {
        std::vector<Tensor>& in = sets[size_t(i % n_sets)];
        for (Tensor& t : in) t.zero_grad();
        const Tensor y = fwd(in);
        synchronize(device);
        const auto t0 = Clock::now();
        autograd::backward(y, grads[size_t(i % n_sets)]);
        synchronize(device);
        ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      }
      return ms;
    });
    return out;
  }
  auto build = [&](size_t set) {
    Tensor y = fwd(sets[set]);
    MIXGRAD_CHECK(y.requires_grad() && !y.is_leaf(), "bench: {} {} recorded no backward", c.op, c.shape);
    std::shared_ptr<autograd::Node> node = y.impl().grad_fn.lock();
    autograd::clear_tape();  // the node stays alive through `node`; later graphs don't pile up on the tape
    if (grads.size() <= set) grads.push_back(c.grad_output ? c.grad_output(y) : randn(y.shape(), TensorOptions(y.dtype(), y.device())));
    return node;
  };
  out.backward = run_samples(cfg, n_sets, [&](int64_t calls) {
    std::vector<std::shared_ptr<autograd::Node>> nodes;
    for (int64_t i = 0; i < calls; ++i) nodes.push_back(build(size_t(i % n_sets)));
    NoGradGuard no_grad;
    synchronize(device);
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < calls; ++i) nodes[size_t(i)]->apply({grads[size_t(i % n_sets)]});
    synchronize(device);
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  });
  return out;
}

PeakMemory measure_peak_memory(const OpCase& c, Device device, bool backward) {
  const std::vector<Tensor> in = c.make_inputs(device);
  const auto& fwd = c.forward_for_backward ? c.forward_for_backward : c.forward;
  PeakMemory out;
  autograd::clear_tape();
  synchronize(device);
  int64_t base = memory_stats(device).bytes_in_use;
  reset_peak_memory(device);
  {
    NoGradGuard no_grad;
    Tensor y = c.forward(in);
    synchronize(device);
  }
  out.forward = memory_stats(device).peak_bytes - base;
  if (!backward) return out;
  Tensor y0;  // the gradient is made before the measurement starts
  {
    NoGradGuard no_grad;
    y0 = c.forward(in);
  }
  const Tensor g = c.grad_output ? c.grad_output(y0) : randn(y0.shape(), TensorOptions(y0.dtype(), y0.device()));
  y0 = Tensor();
  synchronize(device);
  base = memory_stats(device).bytes_in_use;
  reset_peak_memory(device);
  {
    Tensor y = fwd(in);
    autograd::backward(y, g);
    synchronize(device);
  }
  out.forward_backward = memory_stats(device).peak_bytes - base;
  return out;
}

}  // namespace mixgrad::bench
