// Tensor handle methods, factories, conversions and printing.
#include "engine/tensor.h"

#include <cmath>
#include <cstring>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/deferred_checks.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "kernels/cpu/elementwise.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"
#endif

namespace mixgrad {

int64_t shape_numel(const Shape& shape) {
  for (int64_t s : shape)
    if (s == 0) return 0;  // [0, 2^40, 2^40] holds no element, whatever the other sizes
  int64_t n = 1;
  for (int64_t s : shape)
    MIXGRAD_CHECK(!__builtin_mul_overflow(n, s, &n), "shape {}: the element count overflows a 64-bit integer",
                  shape_str(shape));
  return n;
}

std::string shape_str(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

TensorImpl& Tensor::impl() const {
  MIXGRAD_CHECK(impl_ != nullptr, "tensor: operation on an undefined tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const { return shape()[size_t(detail::wrap_dim("size", d, dim()))]; }

void* Tensor::raw_data() const {
  TensorImpl& i = impl();
  if (!i.storage || !i.storage->data()) return nullptr;
  return static_cast<char*>(i.storage->data()) + i.offset * int64_t(dtype_size(i.dtype));
}

template <class T> T* Tensor::data() const {
  MIXGRAD_CHECK(dtype() == dtype_v<T>, "tensor: data<{}>() on a {} tensor", dtype_v<T>, dtype());
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int32_t* Tensor::data<int32_t>() const;
template int64_t* Tensor::data<int64_t>() const;
template uint8_t* Tensor::data<uint8_t>() const;

bool Tensor::same_storage(const Tensor& other) const {
  return defined() && other.defined() && impl().storage == other.impl().storage;
}

Tensor& Tensor::requires_grad_(bool on) {
  MIXGRAD_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating-point tensors can require grad, got {}",
                dtype());
  MIXGRAD_CHECK(is_leaf() || on, "requires_grad_: cannot turn off requires_grad of a non-leaf tensor; use detach()");
  impl().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined()) {
    MIXGRAD_CHECK(g.shape() == shape(), "set_grad: gradient of shape {} for a tensor of shape {}", shape_str(g.shape()),
                  shape_str(shape()));
    MIXGRAD_CHECK(g.dtype() == dtype() && g.device() == device(), "set_grad: gradient is {} on {}, tensor is {} on {}",
                  g.dtype(), g.device(), dtype(), device());
  }
  impl().grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::zero_grad() { impl().grad = nullptr; }

void Tensor::backward(const Tensor& grad_output) const { autograd::backward(*this, grad_output); }

Tensor Tensor::detach() const {
  auto out = std::make_shared<TensorImpl>();
  out->storage = impl().storage;
  out->offset = impl().offset;
  out->shape = impl().shape;
  out->dtype = impl().dtype;
  return Tensor(out);
}

namespace {
std::shared_ptr<TensorImpl> alloc_impl(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) MIXGRAD_CHECK(s >= 0, "empty: negative dimension in shape {}", shape_str(shape));
  if (device.is_cuda()) {
    if (!cuda_compiled()) detail::no_cuda("empty");
    MIXGRAD_CHECK(cuda_is_available(), "empty: {} requested but CUDA is unavailable ({})", device,
                  cuda_unavailable_reason());
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  size_t bytes = 0;
  MIXGRAD_CHECK(!__builtin_mul_overflow(size_t(shape_numel(shape)), dtype_size(dtype), &bytes),
                "empty: shape {} of {} needs more than 2^64 bytes", shape_str(shape), dtype);
  impl->storage = std::make_shared<Storage>(device, bytes);
  return impl;
}

// Raw cast/copy of `src` into a fresh tensor of dtype `to` on the same device (no autograd).
Tensor cast_raw(const Tensor& src, DType to) {
  Tensor out(alloc_impl(src.shape(), to, src.device()));
  const int64_t n = src.numel();
  if (n == 0) return out;
  if (src.device().is_cpu()) {
    MIXGRAD_DISPATCH_ALL(src.dtype(), "to", [&] {
      using From = scalar_t;
      MIXGRAD_DISPATCH_ALL(to, "to", [&] { kernels::cpu::cast(out.data<scalar_t>(), src.data<From>(), n); });
    });
    return out;
  }
#ifdef MIXGRAD_WITH_CUDA
  cudaStream_t s = detail::stream_of(src);
  if (src.dtype() == to) {
    MIXGRAD_CUDA_CHECK(cudaMemcpyAsync(out.raw_data(), src.raw_data(), src.nbytes(), cudaMemcpyDeviceToDevice, s));
  } else if (src.dtype() == DType::f32) {
    switch (to) {
      case DType::i32: kernels::cuda::cast(out.data<int32_t>(), src.data<float>(), n, s); break;
      case DType::i64: kernels::cuda::cast(out.data<int64_t>(), src.data<float>(), n, s); break;
      case DType::u8: kernels::cuda::cast(out.data<uint8_t>(), src.data<float>(), n, s); break;
      default: throw Error(fmt::format("to: cast from float32 to {} is not supported on CUDA", to));
    }
  } else if (to == DType::f32) {
    switch (src.dtype()) {
      case DType::i32: kernels::cuda::cast(out.data<float>(), src.data<int32_t>(), n, s); break;
      case DType::i64: kernels::cuda::cast(out.data<float>(), src.data<int64_t>(), n, s); break;
      case DType::u8: kernels::cuda::cast(out.data<float>(), src.data<uint8_t>(), n, s); break;
      default: throw Error(fmt::format("to: cast from {} to float32 is not supported on CUDA", src.dtype()));
    }
  } else {
    // Other conversions go through the CPU.
    return cast_raw(cast_raw(src.to(kCPU), to), to).to(src.device());
  }
  return out;
#else
  detail::no_cuda("to");
#endif
}
}  // namespace

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor out(alloc_impl(shape(), dtype(), device));
  device_copy(out.raw_data(), device, raw_data(), this->device(), nbytes());
  if (device.is_cpu()) detail::run_deferred_checks();  // a read-back: device-side checks raised so far surface here
  // A result whose graph an earlier backward() consumed (`y.to(kCPU)` after `y.sum().backward()`) is copied as a
  // constant: no gradient could reach its producer any more, and refusing the copy would make a CUDA loss
  // unreadable after its backward (PyTorch allows this copy too; it fails only on a second backward through it).
  const bool graph_consumed = requires_grad() && !is_leaf() && !impl().grad_fn.lock();
  if (!graph_consumed && autograd::needs_grad({*this})) {
    const Device src_device = this->device();
    autograd::record("to_device", {*this}, {out}, [src_device](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].to(src_device)};
    });
  }
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = cast_raw(*this, t);
  if (is_floating(t) && autograd::needs_grad({*this})) {
    const DType src = dtype();
    autograd::record("to_dtype", {*this}, {out}, [src](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].to(src)};
    });
  }
  return out;
}

Tensor Tensor::clone() const {
  Tensor out(alloc_impl(shape(), dtype(), device()));
  device_copy(out.raw_data(), device(), raw_data(), device(), nbytes());
  if (autograd::needs_grad({*this}))
    autograd::record("clone", {*this}, {out}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0]}; });
  return out;
}

double Tensor::item() const {
  MIXGRAD_CHECK(numel() == 1, "item: expected a tensor with one element, got shape {}", shape_str(shape()));
  Tensor host = detach().to(kCPU);  // a read-back, never a graph node
  return MIXGRAD_DISPATCH_ALL(dtype(), "item", [&] { return double(*host.data<scalar_t>()); });
}

template <class T> std::vector<T> Tensor::to_vector() const {
  MIXGRAD_CHECK(dtype() == dtype_v<T>, "to_vector: requested {} from a {} tensor", dtype_v<T>, dtype());
  std::vector<T> out(static_cast<size_t>(numel()));
  if (!out.empty()) device_copy(out.data(), kCPU, raw_data(), device(), nbytes());
  if (!device().is_cpu()) detail::run_deferred_checks();
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

Tensor Tensor::reshape(Shape new_shape) const {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < new_shape.size(); ++i) {
    if (new_shape[i] == -1) {
      MIXGRAD_CHECK(infer < 0, "reshape: more than one -1 in {}", shape_str(new_shape));
      infer = int64_t(i);
    } else {
      MIXGRAD_CHECK(new_shape[i] >= 0, "reshape: invalid size in {}", shape_str(new_shape));
      MIXGRAD_CHECK(!__builtin_mul_overflow(known, new_shape[i], &known),
                    "reshape: the element count of {} overflows a 64-bit integer", shape_str(new_shape));
    }
  }
  if (infer >= 0) {
    MIXGRAD_CHECK(known != 0 && numel() % known == 0, "reshape: cannot reshape {} ({} elements) into {}",
                  shape_str(shape()), numel(), shape_str(new_shape));
    new_shape[size_t(infer)] = numel() / known;
  }
  MIXGRAD_CHECK(shape_numel(new_shape) == numel(), "reshape: cannot reshape {} ({} elements) into {} ({} elements)",
                shape_str(shape()), numel(), shape_str(new_shape), shape_numel(new_shape));
  Tensor out = detach();
  out.impl().shape = new_shape;
  if (autograd::needs_grad({*this})) {
    Shape old = shape();
    autograd::record("reshape", {*this}, {out}, [old](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].reshape(old)};
    });
  }
  return out;
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  const int64_t nd = dim();
  if (nd == 0) return reshape({1});
  start_dim = detail::wrap_dim("flatten", start_dim, nd);
  end_dim = detail::wrap_dim("flatten", end_dim, nd);
  MIXGRAD_CHECK(start_dim <= end_dim, "flatten: start_dim {} after end_dim {}", start_dim, end_dim);
  Shape s(shape().begin(), shape().begin() + start_dim);
  s.push_back(detail::prod(shape(), start_dim, end_dim + 1));
  s.insert(s.end(), shape().begin() + end_dim + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = detail::wrap_dim("unsqueeze", d < 0 ? d + dim() + 1 : d, dim() + 1);
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return reshape(s);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = detail::wrap_dim("squeeze", d, dim());
  MIXGRAD_CHECK(shape()[size_t(d)] == 1, "squeeze: dimension {} of {} has size {}, expected 1", d, shape_str(shape()),
                shape()[size_t(d)]);
  Shape s = shape();
  s.erase(s.begin() + d);
  return reshape(s);
}

Tensor Tensor::slice0(int64_t start, int64_t length) const {
  MIXGRAD_CHECK(dim() >= 1, "slice0: expected at least 1 dimension, got a scalar");
  MIXGRAD_CHECK(start >= 0 && length >= 0 && start + length <= shape()[0],
                "slice0: rows [{}, {}) out of range for dimension 0 of size {}", start, start + length, shape()[0]);
  Tensor out = detach();
  out.impl().offset += start * detail::prod(shape(), 1, dim());
  out.impl().shape[0] = length;
  if (autograd::needs_grad({*this})) {
    Shape full = shape();
    autograd::record("slice0", {*this}, {out}, [full, start, length](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor z = zeros(full, TensorOptions(g[0].dtype(), g[0].device()));
      std::vector<Tensor> parts;
      if (start > 0) parts.push_back(narrow(z, 0, 0, start));
      parts.push_back(g[0]);
      if (start + length < full[0]) parts.push_back(narrow(z, 0, start + length, full[0] - start - length));
      return {parts.size() == 1 ? parts[0] : cat(parts, 0)};
    });
  }
  return out;
}

Tensor& Tensor::fill_(double value) {
  MIXGRAD_CHECK(!(autograd::grad_mode_enabled() && requires_grad() && is_leaf()),
                "fill_: in-place update of a leaf that requires grad; wrap it in NoGradGuard");
  const int64_t n = numel();
  if (n == 0) return *this;
  if (device().is_cpu()) {
    MIXGRAD_DISPATCH_ALL(dtype(), "fill_", [&] { kernels::cpu::fill(data<scalar_t>(), n, static_cast<scalar_t>(value)); });
    return *this;
  }
#ifdef MIXGRAD_WITH_CUDA
  if (dtype() == DType::f32) {
    kernels::cuda::fill(data<float>(), n, static_cast<float>(value), detail::stream_of(*this));
  } else if (value == 0.0) {
    MIXGRAD_CUDA_CHECK(cudaMemsetAsync(raw_data(), 0, nbytes(), detail::stream_of(*this)));
  } else {
    copy_(full(shape(), value, TensorOptions(dtype())));
  }
  return *this;
#else
  detail::no_cuda("fill_");
#endif
}

Tensor& Tensor::copy_(const Tensor& src) {
  MIXGRAD_CHECK(src.shape() == shape(), "copy_: source shape {} does not match destination shape {}",
                shape_str(src.shape()), shape_str(shape()));
  MIXGRAD_CHECK(!(autograd::grad_mode_enabled() && requires_grad() && is_leaf()),
                "copy_: in-place update of a leaf that requires grad; wrap it in NoGradGuard");
  Tensor s = src.detach().to(dtype()).to(device());
  device_copy(raw_data(), device(), s.raw_data(), s.device(), nbytes());
  return *this;
}

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  Tensor h = to(kCPU);
  std::string vals;
  const int64_t n = numel(), show = std::min<int64_t>(n, 12);
  MIXGRAD_DISPATCH_ALL(dtype(), "str", [&] {
    const scalar_t* p = h.data<scalar_t>();
    for (int64_t i = 0; i < show; ++i) {
      if (i) vals += ", ";
      if constexpr (std::is_floating_point_v<scalar_t>)
        vals += fmt::format("{:.6g}", double(p[i]));
      else
        vals += fmt::format("{}", int64_t(p[i]));
    }
  });
  if (show < n) vals += ", ...";
  return fmt::format("tensor([{}], shape={}, dtype={}, device={}{})", vals, shape_str(shape()), dtype(), device(),
                     requires_grad() ? ", requires_grad" : "");
}

// ---- factories ------------------------------------------------------------------------------------------------
Tensor empty(const Shape& shape, TensorOptions opt) {
  Tensor t(alloc_impl(shape, opt.dtype, opt.device));
  if (opt.requires_grad) t.requires_grad_();
  return t;
}

Tensor full(const Shape& shape, double value, TensorOptions opt) {
  TensorOptions o = opt;
  o.requires_grad = false;
  Tensor t = empty(shape, o);
  t.fill_(value);
  if (opt.requires_grad) t.requires_grad_();
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions opt) { return full(shape, 0.0, opt); }
Tensor ones(const Shape& shape, TensorOptions opt) { return full(shape, 1.0, opt); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), TensorOptions(t.dtype(), t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), TensorOptions(t.dtype(), t.device())); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), TensorOptions(t.dtype(), t.device())); }
Tensor scalar_tensor(double value, TensorOptions opt) { return full({}, value, opt); }

Tensor arange(double start, double end, double step, TensorOptions opt) {
  MIXGRAD_CHECK(step != 0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
                "arange: invalid range start={} end={} step={}", start, end, step);
  const int64_t n = std::max<int64_t>(0, int64_t(std::ceil((end - start) / step)));
  Tensor t = empty({n}, TensorOptions(opt.dtype));
  if (n > 0)
    MIXGRAD_DISPATCH_ALL(opt.dtype, "arange", [&] { kernels::cpu::arange_fill(t.data<scalar_t>(), n, start, step); });
  t = t.to(opt.device);
  if (opt.requires_grad) t.requires_grad_();
  return t;
}

namespace {
enum class Dist { uniform, normal };
Tensor random_tensor(const Shape& shape, TensorOptions opt, Dist dist, const char* op) {
  MIXGRAD_CHECK(is_floating(opt.dtype), "{}: expected a floating-point dtype, got {}", op, opt.dtype);
  TensorOptions o = opt;
  o.requires_grad = false;
  Tensor t = empty(shape, o);
  const int64_t n = t.numel();
  const GeneratorState st = generator_state();
  const uint64_t stream = next_random_stream();
  if (n > 0) {
    if (t.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(t.dtype(), op, [&] {
        if (dist == Dist::uniform)
          kernels::cpu::uniform_fill(t.data<scalar_t>(), n, st.seed, stream, scalar_t(0), scalar_t(1));
        else
          kernels::cpu::normal_fill(t.data<scalar_t>(), n, st.seed, stream, scalar_t(0), scalar_t(1));
      });
    } else {
#ifdef MIXGRAD_WITH_CUDA
      detail::check_cuda_float(op, t);
      if (dist == Dist::uniform)
        kernels::cuda::uniform_fill(t.data<float>(), n, st.seed, stream, 0.f, 1.f, detail::stream_of(t));
      else
        kernels::cuda::normal_fill(t.data<float>(), n, st.seed, stream, 0.f, 1.f, detail::stream_of(t));
#else
      detail::no_cuda(op);
#endif
    }
  }
  if (opt.requires_grad) t.requires_grad_();
  return t;
}
}  // namespace

Tensor rand(const Shape& shape, TensorOptions opt) { return random_tensor(shape, opt, Dist::uniform, "rand"); }
Tensor randn(const Shape& shape, TensorOptions opt) { return random_tensor(shape, opt, Dist::normal, "randn"); }

template <class T> Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions opt) {
  MIXGRAD_CHECK(int64_t(values.size()) == shape_numel(shape), "from_vector: {} values for shape {} ({} elements)",
                values.size(), shape_str(shape), shape_numel(shape));
  Tensor t(alloc_impl(shape, dtype_v<T>, kCPU));
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  t = t.to(opt.device);
  if (opt.requires_grad) t.requires_grad_();
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, TensorOptions);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, TensorOptions);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, TensorOptions);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, TensorOptions);

}  // namespace mixgrad
