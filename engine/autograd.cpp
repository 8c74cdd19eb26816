// The thread-local tape and the reverse walk of backward().
#include "engine/autograd.h"

#include "engine/ops.h"

namespace mixgrad::autograd {
namespace {
thread_local std::vector<std::shared_ptr<Node>> t_tape;
thread_local bool t_grad_enabled = true;

bool input_requires_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }

// Adds g into slot (allocating on first use); fan-out accumulation.
void accumulate(Tensor& slot, const Tensor& g) { slot = slot.defined() ? add(slot, g) : g; }
}  // namespace

std::vector<Tensor> Node::apply(const std::vector<Tensor>& grads) {
  BackwardFn fn = std::move(fn_);
  fn_ = nullptr;
  return fn(grads);  // fn (and what it captured) is destroyed on return
}

bool grad_mode_enabled() { return t_grad_enabled; }

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (input_requires_grad(t)) return true;
  return false;
}
bool needs_grad(std::initializer_list<Tensor> inputs) { return needs_grad(std::vector<Tensor>(inputs)); }

void record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, BackwardFn fn) {
  auto node = std::make_shared<Node>(std::move(name), std::move(fn));
  node->inputs.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    if (!input_requires_grad(in)) continue;
    TensorImpl& impl = in.impl();
    if (impl.is_leaf) {
      node->inputs[i].leaf = in.impl_ptr();
    } else {
      std::shared_ptr<Node> producer = impl.grad_fn.lock();
      MIXGRAD_CHECK(producer != nullptr,
                    "{}: an input was produced by an op whose graph was already consumed by an earlier backward() "
                    "(or cleared); detach() it to use it as a constant", node->name());
      node->inputs[i].node = std::move(producer);
      node->inputs[i].output_nr = impl.output_nr;
    }
  }
  for (size_t o = 0; o < outputs.size(); ++o) {
    TensorImpl& impl = outputs[o].impl();
    impl.requires_grad = true;
    impl.is_leaf = false;
    impl.grad_fn = node;
    impl.output_nr = static_cast<int>(o);
    node->outputs.push_back({impl.shape, impl.dtype, outputs[o].device()});
  }
  node->grad_outputs.resize(outputs.size());
  t_tape.push_back(std::move(node));
}

void backward(const Tensor& root, const Tensor& grad_output) {
  MIXGRAD_CHECK(root.defined(), "backward: called on an undefined tensor");
  MIXGRAD_CHECK(root.requires_grad(), "backward: the tensor does not require grad (no input of the computation that "
                                      "produced it requires grad, or it was computed under NoGradGuard)");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    MIXGRAD_CHECK(root.numel() == 1, "backward: grad_output may only be omitted for a single-element tensor, got shape {}",
                  shape_str(root.shape()));
    seed = ones(root.shape(), TensorOptions(root.dtype(), root.device()));
  }
  MIXGRAD_CHECK(seed.shape() == root.shape(), "backward: grad_output has shape {}, expected {}", shape_str(seed.shape()),
                shape_str(root.shape()));
  NoGradGuard no_grad;
  // Clear the tape whatever happens below.
  struct TapeClearer {
    ~TapeClearer() { t_tape.clear(); }
  } clearer;

  if (root.is_leaf()) {
    Tensor g = seed.detach();
    TensorImpl& impl = root.impl();
    impl.grad = (impl.grad ? add(Tensor(impl.grad), g) : g.clone()).impl_ptr();
    return;
  }
  std::shared_ptr<Node> root_node = root.impl().grad_fn.lock();
  MIXGRAD_CHECK(root_node != nullptr, "backward: the graph of this tensor was already consumed by an earlier backward()");
  accumulate(root_node->grad_outputs[size_t(root.impl().output_nr)], seed.detach());

  for (auto it = t_tape.rbegin(); it != t_tape.rend(); ++it) {
    Node& node = **it;
    bool any = false;
    for (const Tensor& g : node.grad_outputs) any = any || g.defined();
    if (!any || node.released()) continue;
    std::vector<Tensor> grads = std::move(node.grad_outputs);
    node.grad_outputs.clear();
    for (size_t o = 0; o < grads.size(); ++o)
      if (!grads[o].defined())
        grads[o] = zeros(node.outputs[o].shape, TensorOptions(node.outputs[o].dtype, node.outputs[o].device));
    std::vector<Tensor> input_grads = node.apply(grads);
    grads.clear();  // free the output gradients as soon as they are consumed
    MIXGRAD_CHECK(input_grads.size() == node.inputs.size(), "backward of {}: returned {} gradients for {} inputs",
                  node.name(), input_grads.size(), node.inputs.size());
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      Edge& e = node.inputs[i];
      Tensor& g = input_grads[i];
      if (!g.defined() || (!e.node && !e.leaf)) continue;
      if (e.node) {
        const Shape& want = e.node->outputs[size_t(e.output_nr)].shape;
        MIXGRAD_CHECK(g.shape() == want, "backward of {}: gradient for input {} has shape {}, expected {}", node.name(), i,
                      shape_str(g.shape()), shape_str(want));
        accumulate(e.node->grad_outputs[size_t(e.output_nr)], g);
      } else {
        TensorImpl& leaf = *e.leaf;
        MIXGRAD_CHECK(g.shape() == leaf.shape, "backward of {}: gradient for leaf input {} has shape {}, expected {}",
                      node.name(), i, shape_str(g.shape()), shape_str(leaf.shape));
        if (leaf.grad) {
          Tensor acc(leaf.grad);
          MIXGRAD_CHECK(acc.shape() == leaf.shape, "backward: existing .grad has shape {}, parameter has shape {}",
                        shape_str(acc.shape()), shape_str(leaf.shape));
          leaf.grad = add(acc, g).impl_ptr();
        } else {
          // .grad must own its memory (optimisers and clipping update it in place): copy only when the
          // gradient's storage is shared with another tensor (e.g. the same gradient passed to two inputs).
          const bool exclusive = g.impl_ptr().use_count() == 1 && g.impl().storage.use_count() == 1;
          leaf.grad = (exclusive ? g.detach() : g.clone()).impl_ptr();
        }
      }
      g = Tensor();
    }
    node.inputs.clear();
  }
}

size_t tape_size() { return t_tape.size(); }
void clear_tape() { t_tape.clear(); }

NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

}  // namespace mixgrad::autograd
