// The benchmarked ops and shapes: how to make their inputs, run them, and how many bytes / FLOPs each pass does.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/mixgrad.h"

namespace mixgrad::bench {

struct OpCase {
  std::string op;     // name used by --ops and in the JSON ("gemm", "layer_norm", ...)
  std::string shape;  // human-readable operand shapes, e.g. "[4096, 768]" or "[6400, 64] @ [64, 192]"
  // Work per call; 0 means "not meaningful" (null in the JSON). Bytes are the minimum a kernel must read + write
  // (formulas in docs/benchmarks/README.md), not what a particular implementation happens to move.
  double forward_bytes = 0, backward_bytes = 0;
  double forward_flops = 0, backward_flops = 0;
  // One independent set of inputs on `device` (float tensors that should get gradients have requires_grad set).
  std::function<std::vector<Tensor>(Device device)> make_inputs;
  // The forward op, as a model calls it.
  std::function<Tensor(const std::vector<Tensor>& inputs)> forward;
  // The call whose output's grad_fn is the node timed for the backward (defaults to `forward`). cross_entropy uses
  // reduction "none" here so that the node is the cross-entropy kernel's, not the mean's.
  std::function<Tensor(const std::vector<Tensor>& inputs)> forward_for_backward;
  // The gradient fed to that node (defaults to randn of the output's shape).
  std::function<Tensor(const Tensor& output)> grad_output;
  // Implementation variant (attention: "fused" or "composite"), written as "impl" in the JSON when not empty.
  std::string impl;
  bool on_cpu = true, on_cuda = true;  // devices the case runs on (the largest attention shapes are CUDA-only)
  double tokens = 0;                   // tokens per call (B·T) for tokens/s; 0 = not reported
  // Also report "forward+backward" (forward ms + backward ms, FLOPs summed) and, when report_peak_memory, the
  // allocator's peak bytes above the inputs for one forward (no grad) and one forward + backward.
  bool report_forward_backward = false;
  bool report_peak_memory = false;
};

// Every case, in the order they are run. smoke: the AFT, EMA, LSTM and gated-attention cases at tiny sizes (checks
// that they run; not for timing).
std::vector<OpCase> all_op_cases(bool smoke = false);
// The distinct op names of all_op_cases(), in order.
std::vector<std::string> op_names();

}  // namespace mixgrad::bench
