// Tensor: a cheap handle to a contiguous, row-major view (storage + element offset + shape) with autograd metadata.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/device.h"
#include "engine/storage.h"

namespace mixgrad {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3]"

namespace autograd {
class Node;
}

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  DType dtype = DType::f32;
  bool requires_grad = false;
  bool is_leaf = true;
  std::shared_ptr<TensorImpl> grad;
  // The op that produced this tensor (owned by the tape; weak so that nodes and tensors never form a cycle).
  std::weak_ptr<autograd::Node> grad_fn;
  int output_nr = 0;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  // Size of dimension d; negative d counts from the end.
  int64_t size(int64_t d) const;
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage ? impl().storage->device() : kCPU; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }

  void* raw_data() const;
  // Typed pointer; throws when T does not match the dtype.
  template <class T> T* data() const;

  // Autograd.
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const { return impl().is_leaf; }
  Tensor grad() const;
  void set_grad(const Tensor& g);
  // Drops the accumulated gradient (PyTorch's set_to_none=True).
  void zero_grad();
  // Gradient of this scalar (or of `sum(this * grad_output)`) with respect to every leaf that requires grad;
  // walks and then clears the thread's tape.
  void backward(const Tensor& grad_output = Tensor()) const;
  // Same storage, no autograd history.
  Tensor detach() const;

  // Conversions and copies.
  Tensor to(Device device) const;  // same tensor when already there
  Tensor to(DType dtype) const;    // same tensor when already that dtype (differentiable between float types)
  Tensor clone() const;            // differentiable deep copy
  Tensor contiguous() const { return *this; }  // tensors are always contiguous
  double item() const;             // single-element tensor to a host double (synchronises)
  template <class T> std::vector<T> to_vector() const;  // host copy; T must match the dtype

  // Views (share storage; differentiable).
  Tensor reshape(Shape shape) const;  // one dimension may be -1
  Tensor view(Shape shape) const { return reshape(std::move(shape)); }
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  // Rows [start, start + length) of dimension 0 as a view; other dimensions: see narrow().
  Tensor slice0(int64_t start, int64_t length) const;

  // Element-wise in-place ops used by optimisers and initialisers (no autograd; error if a leaf requires grad
  // while grad mode is on).
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // same shape (any device / float dtype)

  std::string str() const;  // human-readable: values (truncated), shape, dtype, device

  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same_storage(const Tensor& other) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// ---- factories ----------------------------------------------------------------------------------------------
struct TensorOptions {
  DType dtype = DType::f32;
  Device device = kCPU;
  bool requires_grad = false;
  TensorOptions() = default;
  TensorOptions(DType t) : dtype(t) {}
  TensorOptions(Device d) : device(d) {}
  TensorOptions(DType t, Device d, bool rg = false) : dtype(t), device(d), requires_grad(rg) {}
};

Tensor empty(const Shape& shape, TensorOptions opt = {});
Tensor zeros(const Shape& shape, TensorOptions opt = {});
Tensor ones(const Shape& shape, TensorOptions opt = {});
Tensor full(const Shape& shape, double value, TensorOptions opt = {});
Tensor arange(double start, double end, double step = 1, TensorOptions opt = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor empty_like(const Tensor& t);
// Random numbers from the default Philox generator (engine/rng.h): same seed, same numbers on CPU and CUDA.
Tensor rand(const Shape& shape, TensorOptions opt = {});                       // U[0, 1)
Tensor randn(const Shape& shape, TensorOptions opt = {});                      // N(0, 1)
// Host data to a tensor of T's dtype on opt.device (opt.dtype is not used: convert with .to(dtype)); the vector's
// length must equal the shape's element count.
template <class T> Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions opt = {});
Tensor scalar_tensor(double value, TensorOptions opt = {});

}  // namespace mixgrad

template <> struct fmt::formatter<mixgrad::Tensor> : fmt::formatter<std::string> {
  auto format(const mixgrad::Tensor& t, format_context& ctx) const {
    return fmt::formatter<std::string>::format(t.str(), ctx);
  }
};
