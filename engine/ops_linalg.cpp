// matmul (batched, broadcast batch dimensions) and linear, on OpenBLAS (CPU) and cuBLAS (CUDA) row-major GEMMs, at
// the process's matmul precision (fp32, tf32, bf16: engine/ops.h).
#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "kernels/cpu/gemm.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/gemm.h"
#endif

namespace mixgrad {
namespace {
std::atomic<MatmulPrecision> g_precision{MatmulPrecision::fp32};

// A float32 copy of t with every element rounded to bfloat16 (kernels/precision.h), for the CPU bf16 products.
Tensor round_bf16_copy(const Tensor& t) {
  Tensor r = empty(t.shape(), TensorOptions(DType::f32, t.device()));
  kernels::cpu::round_to_bf16(r.data<float>(), t.data<float>(), t.numel());
  return r;
}

#ifdef MIXGRAD_WITH_CUDA
// The bfloat16 bit patterns of t's elements in a scratch tensor (f32 storage, two bf16 per element).
Tensor to_bf16_bits(const Tensor& t) {
  Tensor r = empty({std::max<int64_t>((t.numel() + 1) / 2, 1)}, TensorOptions(DType::f32, t.device()));
  kernels::cuda::convert_to_bf16(reinterpret_cast<uint16_t*>(r.data<float>()), t.data<float>(), t.numel(),
                                 detail::stream_of(t));
  return r;
}
#endif

// C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b] for row-major contiguous matrices; stride 0 broadcasts an operand.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const Tensor& A, int64_t stride_a, const Tensor& B,
          int64_t stride_b, const Tensor& C, int64_t batch, double beta) {
  if (m == 0 || n == 0 || batch == 0) return;
  const int64_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
  if (k == 0) {
    if (beta == 0) const_cast<Tensor&>(C).fill_(0.0);
    return;
  }
  const MatmulPrecision precision = g_precision.load();
  const bool bf16 = precision == MatmulPrecision::bf16 && C.dtype() == DType::f32;
  if (C.device().is_cpu()) {
    if (bf16) {  // exact bf16 × bf16 products summed in fp32, as the tensor cores compute them
      const Tensor Ar = round_bf16_copy(A), Br = round_bf16_copy(B);
      kernels::cpu::gemm_strided_batched<float>(ta, tb, m, n, k, 1.0f, Ar.data<float>(), lda, stride_a,
                                                Br.data<float>(), ldb, stride_b, float(beta), C.data<float>(), ldc,
                                                m * n, batch);
      return;
    }
    MIXGRAD_DISPATCH_FLOATING(C.dtype(), "matmul", [&] {
      kernels::cpu::gemm_strided_batched<scalar_t>(ta, tb, m, n, k, scalar_t(1), A.data<scalar_t>(), lda, stride_a,
                                                   B.data<scalar_t>(), ldb, stride_b, scalar_t(beta), C.data<scalar_t>(),
                                                   ldc, m * n, batch);
    });
    return;
  }
#ifdef MIXGRAD_WITH_CUDA
  if (bf16) {
    const Tensor A16 = to_bf16_bits(A), B16 = to_bf16_bits(B);
    const auto* a16 = reinterpret_cast<const uint16_t*>(A16.data<float>());
    const auto* b16 = reinterpret_cast<const uint16_t*>(B16.data<float>());
    kernels::cuda::gemm_strided_batched_bf16(ta, tb, m, n, k, 1.0f, a16, lda, stride_a, b16, ldb, stride_b, float(beta),
                                             C.data<float>(), ldc, m * n, batch, detail::stream_of(C));
    return;
  }
  kernels::cuda::gemm_strided_batched(ta, tb, m, n, k, 1.0f, A.data<float>(), lda, stride_a, B.data<float>(), ldb,
                                      stride_b, float(beta), C.data<float>(), ldc, m * n, batch,
                                      precision != MatmulPrecision::fp32, detail::stream_of(C));
#endif
}

void check_float_pair(const char* op, const Tensor& a, const Tensor& b) {
  detail::common_device(op, {a, b});
  detail::check_same_dtype(op, {a, b});
  MIXGRAD_CHECK(is_floating(a.dtype()), "{}: expected floating-point tensors, got {}", op, a.dtype());
  detail::check_cuda_float(op, a);
}

// [batch..., m, k] @ [batch..., k, n] with both operands already 2-D or more.
Tensor matmul_nd(const Tensor& a, const Tensor& b) {
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  const int64_t m = sa[sa.size() - 2], k = sa.back(), n = sb.back();
  MIXGRAD_CHECK(sb[sb.size() - 2] == k, "matmul: shapes {} and {} cannot be multiplied ({} columns vs {} rows)",
                shape_str(sa), shape_str(sb), k, sb[sb.size() - 2]);
  const Shape ba(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
  const Shape batch_shape = broadcast_shapes(ba, bb, "matmul");
  const int64_t batch = shape_numel(batch_shape);
  Shape out_shape = batch_shape;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor y = empty(out_shape, TensorOptions(a.dtype(), a.device()));

  // Operands whose batch equals the full batch are used directly; a batch of one broadcasts with stride 0;
  // anything else (partial broadcast) is materialised with expand.
  auto prepare = [&](const Tensor& t, const Shape& tb, int64_t rows, int64_t cols, int64_t& stride) -> Tensor {
    if (shape_numel(tb) == 1) {
      stride = 0;
      return t;
    }
    stride = rows * cols;
    if (tb == batch_shape) return t;
    Shape full = batch_shape;
    full.push_back(rows);
    full.push_back(cols);
    return expand(t.detach(), full);
  };
  int64_t st_a = 0, st_b = 0;
  // A 2-D right operand with a batched left operand folds the batch into the rows: one big GEMM.
  if (shape_numel(bb) == 1 && ba == batch_shape) {
    gemm(false, false, batch * m, n, k, a, 0, b, 0, y, 1, 0.0);
  } else {
    Tensor A = prepare(a, ba, m, k, st_a), B = prepare(b, bb, k, n, st_b);
    gemm(false, false, m, n, k, A, st_a, B, st_b, y, batch, 0.0);
  }
  if (autograd::needs_grad({a, b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    autograd::record("matmul", {a, b}, {y},
                     [a = a.detach(), b = b.detach(), ga, gb, batch_shape, m, n, k](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       const Tensor& dy = g[0];
                       const int64_t batch = shape_numel(batch_shape);
                       Tensor da, db;
                       auto full = [&](const Tensor& t, int64_t r, int64_t c) {
                         Shape s = batch_shape;
                         s.push_back(r);
                         s.push_back(c);
                         return t.shape() == s ? t : expand(t, s);
                       };
                       if (ga) {  // dA = dY · Bᵀ, summed over A's broadcast batch dims
                         Shape s = batch_shape;
                         s.push_back(m);
                         s.push_back(k);
                         Tensor d = empty(s, TensorOptions(dy.dtype(), dy.device()));
                         const bool b_shared = b.dim() == 2 || shape_numel(Shape(b.shape().begin(), b.shape().end() - 2)) == 1;
                         if (b_shared)
                           gemm(false, true, batch * m, k, n, dy, 0, b, 0, d, 1, 0.0);
                         else
                           gemm(false, true, m, k, n, dy, m * n, full(b, k, n), k * n, d, batch, 0.0);
                         da = sum_to_shape(d, a.shape());
                       }
                       if (gb) {  // dB = Aᵀ · dY
                         const bool b_shared = b.dim() == 2 || shape_numel(Shape(b.shape().begin(), b.shape().end() - 2)) == 1;
                         if (b_shared) {
                           // Sum over the whole batch in one GEMM: [k, batch·m] · [batch·m, n].
                           Tensor A = full(a, m, k);
                           Tensor d = empty({k, n}, TensorOptions(dy.dtype(), dy.device()));
                           gemm(true, false, k, n, batch * m, A, 0, dy, 0, d, 1, 0.0);
                           db = d.reshape(b.shape());
                         } else {
                           Shape s = batch_shape;
                           s.push_back(k);
                           s.push_back(n);
                           Tensor d = empty(s, TensorOptions(dy.dtype(), dy.device()));
                           gemm(true, false, k, n, m, full(a, m, k), m * k, dy, m * n, d, batch, 0.0);
                           db = sum_to_shape(d, b.shape());
                         }
                       }
                       return {da, db};
                     });
  }
  return y;
}

}  // namespace

void set_matmul_precision(MatmulPrecision precision) { g_precision.store(precision); }
MatmulPrecision matmul_precision() { return g_precision.load(); }

MatmulPrecision parse_matmul_precision(const std::string& name) {
  for (MatmulPrecision p : {MatmulPrecision::fp32, MatmulPrecision::tf32, MatmulPrecision::bf16})
    if (name == kernels::precision_name(p)) return p;
  throw std::invalid_argument("unknown matmul precision '" + name + "' (expected fp32, tf32 or bf16)");
}

void set_allow_tf32(bool on) { g_precision.store(on ? MatmulPrecision::tf32 : MatmulPrecision::fp32); }
bool allow_tf32() { return g_precision.load() != MatmulPrecision::fp32; }

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_float_pair("matmul", a, b);
  MIXGRAD_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both operands need at least one dimension, got {} and {}",
                shape_str(a.shape()), shape_str(b.shape()));
  if (a.dim() == 1 && b.dim() == 1) {
    MIXGRAD_CHECK(a.numel() == b.numel(), "matmul: vectors of different lengths {} and {}", a.numel(), b.numel());
    return matmul_nd(a.unsqueeze(0), b.unsqueeze(1)).reshape({});
  }
  if (a.dim() == 1) return matmul_nd(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul_nd(a, b.unsqueeze(1)).squeeze(-1);
  return matmul_nd(a, b);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_float_pair("linear", x, weight);
  MIXGRAD_CHECK(weight.dim() == 2, "linear: weight must be 2-D [out, in], got {}", shape_str(weight.shape()));
  const int64_t out = weight.size(0), in = weight.size(1);
  MIXGRAD_CHECK(x.dim() >= 1 && x.size(-1) == in, "linear: input {} does not end in in_features {} (weight {})",
                shape_str(x.shape()), in, shape_str(weight.shape()));
  if (bias.defined()) {
    check_float_pair("linear", x, bias);
    MIXGRAD_CHECK(bias.dim() == 1 && bias.size(0) == out, "linear: bias has shape {}, expected [{}]", shape_str(bias.shape()),
                  out);
  }
  const int64_t rows = x.numel() / std::max<int64_t>(in, 1);
  Shape out_shape = x.shape();
  out_shape.back() = out;
  Tensor y;
  double beta = 0.0;
  if (bias.defined()) {  // C starts as the broadcast bias, then C = x·Wᵀ + C
    NoGradGuard ng;
    y = expand(bias.detach(), {rows, out}).reshape(out_shape);
    beta = 1.0;
  } else {
    y = empty(out_shape, TensorOptions(x.dtype(), x.device()));
  }
  gemm(false, true, rows, out, in, x, 0, weight, 0, y, 1, beta);
  if (autograd::needs_grad({x, weight, bias})) {
    const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
    autograd::record("linear", {x, weight, bias}, {y},
                     [x = x.detach(), w = weight.detach(), gx, gw, gb, rows, in, out](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       const Tensor& dy = g[0];
                       Tensor dx, dw, db;
                       if (gx) {
                         dx = empty(x.shape(), TensorOptions(dy.dtype(), dy.device()));
                         gemm(false, false, rows, in, out, dy, 0, w, 0, dx, 1, 0.0);
                       }
                       if (gw) {
                         dw = empty({out, in}, TensorOptions(dy.dtype(), dy.device()));
                         gemm(true, false, out, in, rows, dy, 0, x, 0, dw, 1, 0.0);
                       }
                       if (gb) db = sum(dy.reshape({rows, out}), {0});
                       return {dx, dw, db};
                     });
  }
  return y;
}

}  // namespace mixgrad
