// Reductions: sum and mean over any set of dimensions, max/argmax over one dimension.
#include <algorithm>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "kernels/cpu/reduce.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/reduce.h"
#endif

namespace mixgrad {
namespace {

// Sum over the contiguous run of dimensions [d0, d1) of x, keeping them as size 1, times `scale`.
Tensor sum_run(const Tensor& x, int64_t d0, int64_t d1, double scale) {
  const Shape& s = x.shape();
  const int64_t outer = detail::prod(s, 0, d0), dim = detail::prod(s, d0, d1), inner = detail::prod(s, d1, x.dim());
  Shape out_shape = s;
  for (int64_t d = d0; d < d1; ++d) out_shape[size_t(d)] = 1;
  Tensor y = empty(out_shape, TensorOptions(x.dtype(), x.device()));
  if (y.numel() > 0) {
    if (dim == 0) {
      y.fill_(0.0 * scale);  // empty sum is 0; empty mean is NaN (scale is NaN then), like PyTorch
    } else if (x.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(x.dtype(), "sum", [&] {
        kernels::cpu::sum_dim_forward(y.data<scalar_t>(), x.data<scalar_t>(), outer, dim, inner, scalar_t(scale));
      });
    } else {
#ifdef MIXGRAD_WITH_CUDA
      Tensor ws = empty({int64_t(kernels::cuda::sum_dim_forward_workspace_bytes(outer, dim, inner))},
                        TensorOptions(DType::u8, x.device()));
      kernels::cuda::sum_dim_forward(y.data<float>(), x.data<float>(), outer, dim, inner, float(scale), ws.raw_data(),
                                     detail::stream_of(x));
#endif
    }
  }
  if (autograd::needs_grad({x})) {
    autograd::record("sum", {x}, {y}, [s, outer, dim, inner, scale](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor dx = empty(s, TensorOptions(g[0].dtype(), g[0].device()));
      if (dx.numel() > 0) {
        if (dx.device().is_cpu()) {
          MIXGRAD_DISPATCH_FLOATING(dx.dtype(), "sum", [&] {
            kernels::cpu::sum_dim_backward(dx.data<scalar_t>(), g[0].data<scalar_t>(), outer, dim, inner, scalar_t(scale));
          });
        } else {
          MIXGRAD_IF_CUDA(kernels::cuda::sum_dim_backward(dx.data<float>(), g[0].data<float>(), outer, dim, inner,
                                                          float(scale), detail::stream_of(dx));)
        }
      }
      return {dx};
    });
  }
  return y;
}

Tensor reduce_sum(const char* op, const Tensor& x, std::vector<int64_t> dims, bool keepdim, bool average) {
  MIXGRAD_CHECK(x.defined(), "{}: undefined input", op);
  MIXGRAD_CHECK(is_floating(x.dtype()), "{}: expected a floating-point tensor, got {}", op, x.dtype());
  detail::check_cuda_float(op, x);
  const int64_t nd = x.dim();
  for (int64_t& d : dims) d = detail::wrap_dim(op, d, nd);
  std::sort(dims.begin(), dims.end());
  MIXGRAD_CHECK(std::adjacent_find(dims.begin(), dims.end()) == dims.end(), "{}: dimension repeated in the list", op);
  int64_t count = 1;
  for (int64_t d : dims) count *= nd == 0 ? 1 : x.shape()[size_t(d)];
  const double scale = average ? (count > 0 ? 1.0 / double(count) : NAN) : 1.0;
  Tensor y = x;
  if (nd == 0) {
    y = average ? mul_scalar(x, 1.0) : x.clone();
  } else {
    // Runs of consecutive dimensions, reduced from the last run to the first; the scale is applied once.
    bool scaled = false;
    for (size_t i = dims.size(); i > 0;) {
      size_t j = i - 1;
      while (j > 0 && dims[j - 1] == dims[j] - 1) --j;
      y = sum_run(y, dims[j], dims[i - 1] + 1, scaled ? 1.0 : scale);
      scaled = true;
      i = j;
    }
    if (!scaled) y = mul_scalar(x, 1.0);  // empty dim list: identity copy
  }
  if (!keepdim && nd > 0) {
    Shape s;
    for (int64_t d = 0; d < nd; ++d)
      if (!std::binary_search(dims.begin(), dims.end(), d)) s.push_back(x.shape()[size_t(d)]);
    y = y.reshape(s);
  }
  return y;
}

std::vector<int64_t> all_dims(const Tensor& x) {
  std::vector<int64_t> d(size_t(x.dim()));
  for (size_t i = 0; i < d.size(); ++i) d[i] = int64_t(i);
  return d;
}

}  // namespace

Tensor sum(const Tensor& x) { return reduce_sum("sum", x, all_dims(x), false, false); }
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) { return reduce_sum("sum", x, dims, keepdim, false); }
Tensor mean(const Tensor& x) { return reduce_sum("mean", x, all_dims(x), false, true); }
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_sum("mean", x, dims, keepdim, true);
}

MaxResult max(const Tensor& x, int64_t dim, bool keepdim) {
  MIXGRAD_CHECK(x.defined() && x.dim() >= 1, "max: expected a tensor with at least one dimension");
  MIXGRAD_CHECK(is_floating(x.dtype()), "max: expected a floating-point tensor, got {}", x.dtype());
  detail::check_cuda_float("max", x);
  dim = detail::wrap_dim("max", dim, x.dim());
  const Shape s = x.shape();
  MIXGRAD_CHECK(s[size_t(dim)] > 0, "max: cannot reduce over dimension {} of size 0 in {}", dim, shape_str(s));
  const int64_t outer = detail::prod(s, 0, dim), n = s[size_t(dim)], inner = detail::prod(s, dim + 1, x.dim());
  Shape ks = s;
  ks[size_t(dim)] = 1;
  Tensor values = empty(ks, TensorOptions(x.dtype(), x.device()));
  Tensor indices = empty(ks, TensorOptions(DType::i64, x.device()));
  if (values.numel() > 0) {
    if (x.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(x.dtype(), "max", [&] {
        kernels::cpu::max_dim_forward(values.data<scalar_t>(), indices.data<int64_t>(), x.data<scalar_t>(), outer, n, inner);
      });
    } else {
      MIXGRAD_IF_CUDA(kernels::cuda::max_dim_forward(values.data<float>(), indices.data<int64_t>(), x.data<float>(), outer,
                                                     n, inner, detail::stream_of(x));)
    }
  }
  if (autograd::needs_grad({x})) {
    autograd::record("max", {x}, {values},
                     [s, idx = indices.detach(), outer, n, inner](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       Tensor dx = empty(s, TensorOptions(g[0].dtype(), g[0].device()));
                       if (dx.numel() > 0) {
                         if (dx.device().is_cpu()) {
                           MIXGRAD_DISPATCH_FLOATING(dx.dtype(), "max", [&] {
                             kernels::cpu::max_dim_backward(dx.data<scalar_t>(), g[0].data<scalar_t>(), idx.data<int64_t>(),
                                                            outer, n, inner);
                           });
                         } else {
                           MIXGRAD_IF_CUDA(kernels::cuda::max_dim_backward(dx.data<float>(), g[0].data<float>(),
                                                                           idx.data<int64_t>(), outer, n, inner,
                                                                           detail::stream_of(dx));)
                         }
                       }
                       return {dx};
                     });
  }
  if (!keepdim) {
    Shape r = s;
    r.erase(r.begin() + dim);
    values = values.reshape(r);
    indices = indices.reshape(r);
  }
  return {values, indices};
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return max(x, dim, keepdim).indices;
}

}  // namespace mixgrad
