// The tape autograd: ops append nodes (saved tensors + backward) to a thread-local tape while grad mode is on
// and an input requires grad; backward() walks the tape in reverse and clears it.
//
// Writing an op (built-in or user-defined) — the custom-op API:
//
//   Tensor my_square(const Tensor& x) {
//     Tensor y = ...compute x*x without autograd...;
//     if (autograd::needs_grad({x}))
//       autograd::record("my_square", {x}, {y},
//           [x = x.detach()](const std::vector<Tensor>& dy) -> std::vector<Tensor> {
//             return {mul(dy[0], mul_scalar(x, 2.0))};   // one gradient per input; Tensor() = none
//           });
//     return y;
//   }
//
// The backward receives one gradient per output (zeros are filled in for outputs that received none) and
// returns one gradient per input, each of the input's shape (or undefined when that input needs none). It runs
// with grad mode off. Save inputs/outputs with detach() so the node never owns an output's autograd identity.
// Captured tensors are released as soon as the node's backward has run.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace mixgrad::autograd {

using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

// Where an input's gradient goes: the node that produced it (and which output), or a leaf's .grad.
struct Edge {
  std::shared_ptr<Node> node;
  int output_nr = 0;
  std::shared_ptr<TensorImpl> leaf;  // set for leaves that require grad
};

class Node {
 public:
  Node(std::string name, BackwardFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  const std::string& name() const { return name_; }

  std::vector<Edge> inputs;           // one per op input (empty edge = no gradient needed)
  std::vector<Tensor> grad_outputs;   // accumulated gradients of this node's outputs
  struct OutputMeta { Shape shape; DType dtype; Device device; };
  std::vector<OutputMeta> outputs;

  // Runs the backward function once and releases everything it captured.
  std::vector<Tensor> apply(const std::vector<Tensor>& grads);
  bool released() const { return !fn_; }

 private:
  std::string name_;
  BackwardFn fn_;
};

// True when grad mode is on and any defined input requires grad.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);
bool grad_mode_enabled();

// Appends a node for `outputs = op(inputs)` to the tape and marks the outputs as requiring grad.
void record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, BackwardFn fn);

// Gradient of `root` (a scalar, unless grad_output is given) into every reachable leaf's .grad; clears the tape.
void backward(const Tensor& root, const Tensor& grad_output = Tensor());

// Nodes currently on this thread's tape (tests, leak checks).
size_t tape_size();
// Drops the tape without running it (e.g. after a forward pass whose loss is not needed).
void clear_tape();

// Disables recording in its scope, like torch.no_grad().
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace mixgrad::autograd

namespace mixgrad {
using autograd::NoGradGuard;
}
