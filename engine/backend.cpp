// Shared validation helpers for op implementations.
#include "engine/backend.h"

namespace mixgrad::detail {

namespace {

// Calls check(first, t) for each defined tensor t after the first defined one; returns that first one (nullptr
// when none is defined).
template <class Check>
const Tensor* for_each_defined_after_first(const std::vector<Tensor>& ts, Check&& check) {
  const Tensor* first = nullptr;
  for (const Tensor& t : ts) {
    if (!t.defined()) continue;
    if (!first)
      first = &t;
    else
      check(*first, t);
  }
  return first;
}

}  // namespace

Device common_device(const char* op, const std::vector<Tensor>& ts) {
  const Tensor* first = for_each_defined_after_first(ts, [op](const Tensor& a, const Tensor& t) {
    MIXGRAD_CHECK(t.device() == a.device(), "{}: expected all tensors on the same device, got {} and {}", op,
                  a.device(), t.device());
  });
  MIXGRAD_CHECK(first != nullptr, "{}: no defined input tensor", op);
  return first->device();
}

void check_same_dtype(const char* op, const std::vector<Tensor>& ts) {
  for_each_defined_after_first(ts, [op](const Tensor& a, const Tensor& t) {
    MIXGRAD_CHECK(t.dtype() == a.dtype(), "{}: expected tensors of the same dtype, got {} and {}", op, a.dtype(),
                  t.dtype());
  });
}

void check_cuda_float(const char* op, const Tensor& t) {
  MIXGRAD_CHECK(!t.device().is_cuda() || t.dtype() == DType::f32,
                "{}: {} tensors are supported on the CPU only; CUDA kernels take float32", op, t.dtype());
}

void no_cuda(const char* op) {
  throw Error(fmt::format("{}: a CUDA tensor was given but mixgrad was built without the CUDA backend", op));
}

int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim) {
  const int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  MIXGRAD_CHECK(dim >= lo && dim <= hi, "{}: dimension {} out of range for a {}-D tensor (expected [{}, {}])", op, dim,
                ndim, lo, hi);
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

int64_t prod(const Shape& s, int64_t begin, int64_t end) {
  int64_t p = 1;
  for (int64_t i = begin; i < end; ++i) p *= s[size_t(i)];
  return p;
}

}  // namespace mixgrad::detail
