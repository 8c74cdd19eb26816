// Layout ops: permute/transpose, expand, cat/stack, narrow/split (outputs are contiguous copies).
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "kernels/cpu/layout.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/layout.h"
#endif

namespace mixgrad {
namespace {
using kernels::StridedShape;

// dst (contiguous, `shape`) <- src read through `src_st`.
void strided_copy(const Tensor& dst, const Tensor& src, const StridedShape& shape, const StridedShape& src_st, const char* op) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  if (dst.device().is_cpu()) {
    MIXGRAD_DISPATCH_ALL(dst.dtype(), op, [&] {
      kernels::cpu::copy_strided(dst.data<scalar_t>(), src.data<scalar_t>(), n, shape, src_st);
    });
    return;
  }
#ifdef MIXGRAD_WITH_CUDA
  MIXGRAD_DISPATCH_ALL(dst.dtype(), op, [&] {
    if constexpr (std::is_same_v<scalar_t, double>) {
      throw Error(fmt::format("{}: float64 tensors are supported on the CPU only", op));
    } else {
      kernels::cuda::copy_strided(dst.data<scalar_t>(), src.data<scalar_t>(), n, shape, src_st, detail::stream_of(dst));
    }
  });
#endif
}

// dst[o, dst_off + j, i] <- src[o, src_off + j, i].
void slice(const Tensor& dst, const Tensor& src, int64_t outer, int64_t src_dim, int64_t dst_dim, int64_t inner,
           int64_t src_off, int64_t dst_off, int64_t len, const char* op) {
  if (outer * len * inner == 0) return;
  if (dst.device().is_cpu()) {
    MIXGRAD_DISPATCH_ALL(dst.dtype(), op, [&] {
      kernels::cpu::slice_copy(dst.data<scalar_t>(), src.data<scalar_t>(), outer, src_dim, dst_dim, inner, src_off, dst_off, len);
    });
    return;
  }
#ifdef MIXGRAD_WITH_CUDA
  MIXGRAD_DISPATCH_ALL(dst.dtype(), op, [&] {
    if constexpr (std::is_same_v<scalar_t, double>) {
      throw Error(fmt::format("{}: float64 tensors are supported on the CPU only", op));
    } else {
      kernels::cuda::slice_copy(dst.data<scalar_t>(), src.data<scalar_t>(), outer, src_dim, dst_dim, inner, src_off,
                                dst_off, len, detail::stream_of(dst));
    }
  });
#endif
}

StridedShape layout_of(const Shape& shape, const char* op) {
  MIXGRAD_CHECK(shape.size() <= size_t(kernels::kMaxDims), "{}: at most {} dimensions are supported, got {}", op,
                kernels::kMaxDims, shape.size());
  StridedShape s;
  s.ndim = int(shape.size());
  int64_t st = 1;
  for (int d = s.ndim - 1; d >= 0; --d) {
    s.size[d] = shape[size_t(d)];
    s.stride[d] = st;
    st *= shape[size_t(d)];
  }
  return s;
}

bool differentiable(const Tensor& t) { return is_floating(t.dtype()) && autograd::needs_grad({t}); }

}  // namespace

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  const int64_t nd = x.dim();
  MIXGRAD_CHECK(int64_t(dims.size()) == nd, "permute: {} dims given for a {}-D tensor {}", dims.size(), nd,
                shape_str(x.shape()));
  std::vector<int64_t> p(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    p[i] = detail::wrap_dim("permute", dims[i], nd);
    MIXGRAD_CHECK(!seen[size_t(p[i])], "permute: dimension {} repeated in [{}]", p[i], fmt::join(dims, ", "));
    seen[size_t(p[i])] = true;
  }
  const StridedShape in = layout_of(x.shape(), "permute");
  Shape out_shape(static_cast<size_t>(nd));
  StridedShape src;
  src.ndim = int(nd);
  for (int64_t i = 0; i < nd; ++i) {
    out_shape[size_t(i)] = x.shape()[size_t(p[size_t(i)])];
    src.size[i] = out_shape[size_t(i)];
    src.stride[i] = in.stride[p[size_t(i)]];
  }
  Tensor y = empty(out_shape, TensorOptions(x.dtype(), x.device()));
  strided_copy(y, x, layout_of(out_shape, "permute"), src, "permute");
  if (differentiable(x)) {
    std::vector<int64_t> inv(static_cast<size_t>(nd));
    for (int64_t i = 0; i < nd; ++i) inv[size_t(p[size_t(i)])] = i;
    autograd::record("permute", {x}, {y}, [inv](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {permute(g[0], inv)};
    });
  }
  return y;
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  const int64_t nd = x.dim();
  d0 = detail::wrap_dim("transpose", d0, nd);
  d1 = detail::wrap_dim("transpose", d1, nd);
  std::vector<int64_t> p(static_cast<size_t>(nd));
  for (int64_t i = 0; i < nd; ++i) p[size_t(i)] = i;
  std::swap(p[size_t(d0)], p[size_t(d1)]);
  return permute(x, p);
}

Tensor reshape(const Tensor& x, const Shape& shape) { return x.reshape(shape); }

Tensor expand(const Tensor& x, const Shape& shape) {
  const Shape out = broadcast_shapes(x.shape(), shape, "expand");
  MIXGRAD_CHECK(out == shape, "expand: {} cannot be expanded to {}", shape_str(x.shape()), shape_str(shape));
  if (out == x.shape()) return x;
  StridedShape dst = layout_of(out, "expand");
  StridedShape src = dst;
  const StridedShape in = layout_of(x.shape(), "expand");
  const int shift = dst.ndim - in.ndim;
  for (int d = 0; d < dst.ndim; ++d) src.stride[d] = (d < shift || in.size[d - shift] == 1) ? 0 : in.stride[d - shift];
  Tensor y = empty(out, TensorOptions(x.dtype(), x.device()));
  strided_copy(y, x, dst, src, "expand");
  if (differentiable(x)) {
    Shape s = x.shape();
    autograd::record("expand", {x}, {y}, [s](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {sum_to_shape(g[0], s)};
    });
  }
  return y;
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  MIXGRAD_CHECK(!xs.empty(), "cat: expected a non-empty list of tensors");
  const Tensor& ref = xs[0];
  const int64_t nd = ref.dim();
  MIXGRAD_CHECK(nd >= 1, "cat: zero-dimensional tensors cannot be concatenated");
  dim = detail::wrap_dim("cat", dim, nd);
  detail::common_device("cat", xs);
  detail::check_same_dtype("cat", xs);
  Shape out = ref.shape();
  out[size_t(dim)] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Shape& s = xs[i].shape();
    bool ok = int64_t(s.size()) == nd;
    for (int64_t d = 0; ok && d < nd; ++d) ok = d == dim || s[size_t(d)] == ref.shape()[size_t(d)];
    MIXGRAD_CHECK(ok, "cat: tensor {} has shape {}, expected {} except in dimension {}", i, shape_str(s),
                  shape_str(ref.shape()), dim);
    out[size_t(dim)] += s[size_t(dim)];
  }
  Tensor y = empty(out, TensorOptions(ref.dtype(), ref.device()));
  const int64_t outer = detail::prod(out, 0, dim), inner = detail::prod(out, dim + 1, nd);
  int64_t off = 0;
  std::vector<int64_t> sizes;
  for (const Tensor& x : xs) {
    const int64_t len = x.shape()[size_t(dim)];
    slice(y, x, outer, len, out[size_t(dim)], inner, 0, off, len, "cat");
    off += len;
    sizes.push_back(len);
  }
  if (is_floating(ref.dtype()) && autograd::needs_grad(xs)) {
    autograd::record("cat", xs, {y}, [sizes, dim](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return split(g[0], sizes, dim);
    });
  }
  return y;
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  const int64_t nd = x.dim();
  MIXGRAD_CHECK(nd >= 1, "narrow: expected at least one dimension");
  dim = detail::wrap_dim("narrow", dim, nd);
  const int64_t size = x.shape()[size_t(dim)];
  MIXGRAD_CHECK(start >= 0 && length >= 0 && start + length <= size,
                "narrow: range [{}, {}) out of bounds for dimension {} of size {} in {}", start, start + length, dim, size,
                shape_str(x.shape()));
  if (dim == 0) return x.slice0(start, length);  // a view: free
  Shape out = x.shape();
  out[size_t(dim)] = length;
  Tensor y = empty(out, TensorOptions(x.dtype(), x.device()));
  const int64_t outer = detail::prod(out, 0, dim), inner = detail::prod(out, dim + 1, nd);
  slice(y, x, outer, size, length, inner, start, 0, length, "narrow");
  if (differentiable(x)) {
    Shape in = x.shape();
    autograd::record("narrow", {x}, {y}, [in, dim, start, length, outer, inner](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor dx = zeros(in, TensorOptions(g[0].dtype(), g[0].device()));
      slice(dx, g[0], outer, length, in[size_t(dim)], inner, 0, start, length, "narrow");
      return {dx};
    });
  }
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  dim = detail::wrap_dim("split", dim, x.dim());
  int64_t total = 0;
  for (int64_t s : sizes) {
    MIXGRAD_CHECK(s >= 0, "split: negative section size {}", s);
    total += s;
  }
  MIXGRAD_CHECK(total == x.shape()[size_t(dim)], "split: sections [{}] sum to {}, dimension {} of {} has size {}",
                fmt::join(sizes, ", "), total, dim, shape_str(x.shape()), x.shape()[size_t(dim)]);
  std::vector<Tensor> out;
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(narrow(x, dim, off, s));
    off += s;
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  MIXGRAD_CHECK(split_size > 0, "split: split_size must be positive, got {}", split_size);
  dim = detail::wrap_dim("split", dim, x.dim());
  std::vector<int64_t> sizes;
  for (int64_t left = x.shape()[size_t(dim)]; left > 0; left -= split_size) sizes.push_back(std::min(split_size, left));
  return split(x, sizes, dim);
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  MIXGRAD_CHECK(!xs.empty(), "stack: expected a non-empty list of tensors");
  const int64_t nd = xs[0].dim() + 1;
  dim = detail::wrap_dim("stack", dim, nd);
  std::vector<Tensor> u;
  for (size_t i = 0; i < xs.size(); ++i) {
    MIXGRAD_CHECK(xs[i].shape() == xs[0].shape(), "stack: tensor {} has shape {}, expected {}", i, shape_str(xs[i].shape()),
                  shape_str(xs[0].shape()));
    u.push_back(xs[i].unsqueeze(dim));
  }
  return cat(u, dim);
}

}  // namespace mixgrad
