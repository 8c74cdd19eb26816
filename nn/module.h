// Module: the base of every layer and model — parameter/buffer/submodule registration with dotted names,
// train/eval, device moves, zero_grad and state_dict, after libtorch's torch::nn::Module.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/mixgrad.h"

namespace mixgrad::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  explicit Module(std::string type_name = "Module") : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& type_name() const { return type_name_; }

  // Parameters (requires_grad leaves), buffers (state without gradient) and submodules, in registration order.
  NamedTensors named_parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  int64_t num_parameters() const;

  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves/converts every parameter and buffer in place (handles held elsewhere see the new data).
  void to(Device device);
  void to(DType dtype);
  // Drops every parameter's gradient (set_to_none, like PyTorch's default).
  void zero_grad();

  // Parameters then buffers, with dotted names ("blocks.0.attn.qkv.weight").
  NamedTensors state_dict() const;
  // Copies values into the registered tensors. strict: every name must be present and nothing extra. Shapes and
  // dtypes must match; errors name the tensor and both shapes.
  void load_state_dict(const NamedTensors& state, bool strict = true);

  // One line per submodule and parameter with shapes, and the total parameter count.
  std::string summary() const;

  // Matmul FLOPs (a multiply-add counting 2) of one forward pass over one sample of n tokens spent in products this
  // module computes itself rather than through a child: an LSTM's gate products, MEGA's and GAU's attention, the EMA's
  // recurrence. apps/common/flops.h adds the children (a Linear on every token, a token mixer by its own formula).
  // The default 0 suits modules that only combine their children's results element-wise; a module that multiplies
  // its own parameters or tokens states its formula, or returns nullopt to mark every count that includes it a lower
  // bound.
  virtual std::optional<double> own_forward_flops(int64_t /*n*/) const { return 0.0; }

 protected:
  Tensor& register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <class M> std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    check_name(name);
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void check_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool recurse, NamedTensors& out) const;

  std::string type_name_;
  bool training_ = true;
  // Stored in std::map-free vectors to keep registration order; pointers into them stay valid (no reallocation
  // after construction is assumed: registration happens in constructors).
  std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// A module with one tensor in and one tensor out (what Sequential chains).
class Layer : public Module {
 public:
  using Module::Module;
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

}  // namespace mixgrad::nn
