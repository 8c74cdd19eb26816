// The gated_attention op (specs/lra.md §6.2 steps 6-7, §6.4): validation once into a plan, device dispatch, and a
// tape node whose backward reuses the forward's output and row log-sum-exp.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/deferred_checks.h"
#include "engine/error.h"
#include "engine/valid_lengths.h"
#include "engine/gated_attention.h"
#include "kernels/cpu/gated_attention.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/csp.h"
#include "kernels/cuda/gated_attention.h"
#endif

namespace mixgrad {
namespace {

// The op's tensors (detached when saved for the backward); bias may be undefined.
struct GattArgs {
  Tensor q, k, v, bias;
};

// Validated sizes and the lengths as int32 on q's device (undefined: every sample is full).
struct GattPlan {
  kernels::GattSizes sizes;
  Tensor lengths;
};

// What the forward computed that the softmax backward reuses: the output and the row log-sum-exp (both undefined for
// laplace and relu², whose backward recomputes everything from q, k, v).
struct GattSaved {
  Tensor out, lse;
};

template <class T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// The two backends behind one interface, so that forward and backward are written once.
template <class T>
struct CpuGatt {
  using scalar = T;
  void forward(T* out, T* lse, const T* q, const T* k, const T* v, const T* bias, const int32_t* lengths,
               const kernels::GattSizes& s) const {
    kernels::cpu::gated_attention_forward<T>(out, lse, q, k, v, bias, lengths, s);
  }
  size_t workspace_bytes(const kernels::GattSizes& s) const {
    return kernels::cpu::gated_attention_backward_workspace_bytes<T>(s);
  }
  template <class... A>
  void backward(A... a) const {
    kernels::cpu::gated_attention_backward<T>(a...);
  }
};

#ifdef MIXGRAD_WITH_CUDA
struct CudaGatt {
  using scalar = float;
  cudaStream_t stream;
  template <class... A>
  void forward(A... a) const {
    kernels::cuda::gated_attention_forward(a..., stream);
  }
  size_t workspace_bytes(const kernels::GattSizes& s) const {
    return kernels::cuda::gated_attention_backward_workspace_bytes(s);
  }
  template <class... A>
  void backward(A... a) const {
    kernels::cuda::gated_attention_backward(a..., stream);
  }
};
#endif

// Calls f(backend) with the kernels of t's device and dtype.
template <class F>
void with_backend(const char* op, const Tensor& t, F&& f) {
  if (t.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(t.dtype(), op, [&] { f(CpuGatt<scalar_t>{}); });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    f(CudaGatt{detail::stream_of(t)});
#else
    detail::no_cuda(op);
#endif
  }
}

std::string shape_or_undefined(const Tensor& t) { return t.defined() ? shape_str(t.shape()) : "(undefined)"; }

// q, k [B, L, Z] and v [B, L, E]: defined, floating, non-empty, one dtype and device.
void check_qkv(const char* op, const GattArgs& a) {
  MIXGRAD_CHECK(a.q.defined() && a.q.dim() == 3, "{}: q must be 3-D [B, L, Z], got {}", op, shape_or_undefined(a.q));
  MIXGRAD_CHECK(is_floating(a.q.dtype()), "{}: q has dtype {}, expected float32 or float64", op, a.q.dtype());
  detail::check_cuda_float(op, a.q);
  const int64_t B = a.q.size(0), L = a.q.size(1), Z = a.q.size(2);
  MIXGRAD_CHECK(B >= 1 && L >= 1 && Z >= 1, "{}: q has shape {}; expected B, L and Z all >= 1", op,
                shape_str(a.q.shape()));
  MIXGRAD_CHECK(L <= std::numeric_limits<int32_t>::max(), "{}: L = {} is too large (expected L <= 2^31 - 1)", op, L);
  MIXGRAD_CHECK(a.k.defined() && a.k.shape() == a.q.shape(), "{}: k has shape {}, expected q's shape {}", op,
                shape_or_undefined(a.k), shape_str(a.q.shape()));
  MIXGRAD_CHECK(a.v.defined() && a.v.dim() == 3 && a.v.size(0) == B && a.v.size(1) == L && a.v.size(2) >= 1,
                "{}: v has shape {}, expected [B, L, E] = [{}, {}, E] with E >= 1", op, shape_or_undefined(a.v), B, L);
  detail::check_same_dtype(op, {a.q, a.k, a.v, a.bias});
  detail::common_device(op, {a.q, a.k, a.v, a.bias});
}

// rel_bias [2P − 1] with P >= span; returns P (0 without a bias).
int64_t check_bias(const char* op, const Tensor& bias, int64_t span, bool chunked) {
  if (!bias.defined()) return 0;
  MIXGRAD_CHECK(bias.dim() == 1 && bias.size(0) % 2 == 1,
                "{}: rel_bias has shape {}, expected [2P - 1] (one value per offset j - i, odd length)", op,
                shape_str(bias.shape()));
  const int64_t P = (bias.size(0) + 1) / 2;
  MIXGRAD_CHECK(P >= span, "{}: rel_bias has shape {} (P = {}), expected P >= the attention span {} ({})", op,
                shape_str(bias.shape()), P, span, chunked ? "the chunk size" : "L, full attention");
  return P;
}

kernels::GattFn kernel_fn(const char* op, GatedAttentionFn fn) {
  switch (fn) {
    case GatedAttentionFn::softmax:
      return kernels::GattFn::softmax;
    case GatedAttentionFn::laplace:
      return kernels::GattFn::laplace;
    case GatedAttentionFn::relu2:
      return kernels::GattFn::relu2;
  }
  throw Error(
      fmt::format("{}: unknown attention function {} (expected softmax, laplace or relu2)", op, static_cast<int>(fn)));
}

GattPlan plan_gated_attention(const char* op, const GattArgs& a, const Tensor& lengths,
                              const GatedAttentionOptions& options) {
  check_qkv(op, a);
  const int64_t L = a.q.size(1);
  MIXGRAD_CHECK(options.chunk == -1 || options.chunk >= 1,
                "{}: chunk = {}, expected -1 (full attention) or a chunk size >= 1", op, options.chunk);
  GattPlan p;
  kernels::GattSizes& s = p.sizes;
  s.batch = a.q.size(0), s.length = L, s.zdim = a.q.size(2), s.vdim = a.v.size(2);
  const bool chunked = options.chunk >= 1 && options.chunk < L;
  s.span = chunked ? options.chunk : L;
  s.fn = kernel_fn(op, options.fn);
  s.bias_half = check_bias(op, a.bias, s.span, chunked);
  if (lengths.defined()) p.lengths = detail::prepare_valid_lengths(op, lengths, a.q, "q").lengths;
  return p;
}

template <class K>
Tensor run_forward(const K& k, const GattArgs& a, const GattPlan& p, GattSaved& saved) {
  using T = typename K::scalar;
  const kernels::GattSizes& s = p.sizes;
  const TensorOptions opt(a.q.dtype(), a.q.device());
  saved.out = empty({s.batch, s.length, s.vdim}, opt);
  if (s.fn == kernels::GattFn::softmax) saved.lse = empty({s.batch, s.length}, opt);
  k.forward(ptr<T>(saved.out), ptr<T>(saved.lse), ptr<T>(a.q), ptr<T>(a.k), ptr<T>(a.v), ptr<T>(a.bias),
            ptr<int32_t>(p.lengths), s);
  return saved.out;
}

// Gradients {dq, dk, dv, drel_bias} of sum(out · dout).
template <class K>
std::vector<Tensor> run_backward(const K& k, const Tensor& dout, const GattArgs& a, const GattPlan& p,
                                 const GattSaved& saved) {
  using T = typename K::scalar;
  const kernels::GattSizes& s = p.sizes;
  const TensorOptions opt(a.q.dtype(), a.q.device());
  Tensor dq = empty_like(a.q), dk = empty_like(a.k), dv = empty_like(a.v);
  Tensor dbias = a.bias.defined() ? empty_like(a.bias) : Tensor();
  const int64_t elements = static_cast<int64_t>(k.workspace_bytes(s) / sizeof(T));
  Tensor workspace = empty({std::max<int64_t>(1, elements)}, opt);
  k.backward(ptr<T>(dq), ptr<T>(dk), ptr<T>(dv), ptr<T>(dbias), ptr<T>(workspace), ptr<T>(dout), ptr<T>(a.q),
             ptr<T>(a.k), ptr<T>(a.v), ptr<T>(saved.out), ptr<T>(saved.lse), ptr<T>(a.bias), ptr<int32_t>(p.lengths),
             s);
  return {dq, dk, dv, dbias};
}

}  // namespace

double gated_attention_pairs(int64_t length, int64_t chunk) {
  if (chunk < 0 || chunk >= length) return double(length) * double(length);
  const double c = double(chunk), rest = double(length % chunk);
  return double(length / chunk) * c * c + rest * rest;
}

Tensor gated_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& rel_bias, const Tensor& lengths,
                       const GatedAttentionOptions& options) {
  constexpr const char* op = "gated_attention";
  GattArgs args{q, k, v, rel_bias};
  GattPlan plan = plan_gated_attention(op, args, lengths, options);
  GattSaved saved;
  Tensor out;
  with_backend(op, q, [&](const auto& be) { out = run_forward(be, args, plan, saved); });
  if (autograd::needs_grad({q, k, v, rel_bias})) {
    GattArgs kept{q.detach(), k.detach(), v.detach(), rel_bias.defined() ? rel_bias.detach() : Tensor()};
    // Only the softmax backward reads the output (D_i = dout_i·out_i); laplace / relu² keep nothing but the inputs.
    saved.out = plan.sizes.fn == kernels::GattFn::softmax ? saved.out.detach() : Tensor();
    autograd::record(op, {q, k, v, rel_bias}, {out},
                     [a = std::move(kept), plan = std::move(plan),
                      saved = std::move(saved)](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       MIXGRAD_CHECK(g[0].defined() && g[0].shape() == a.v.shape() && g[0].dtype() == a.v.dtype(),
                                     "gated_attention backward: dout must have the output's shape {} and dtype {}",
                                     shape_str(a.v.shape()), a.v.dtype());
                       std::vector<Tensor> grads;
                       with_backend("gated_attention backward", a.q,
                                    [&](const auto& be) { grads = run_backward(be, g[0], a, plan, saved); });
                       return grads;
                     });
  }
  return out;
}

std::string gated_attention_fn_name(GatedAttentionFn fn) {
  switch (fn) {
    case GatedAttentionFn::softmax:
      return "softmax";
    case GatedAttentionFn::laplace:
      return "laplace";
    case GatedAttentionFn::relu2:
      return "relu2";
  }
  return "unknown";
}

GatedAttentionFn parse_gated_attention_fn(const std::string& name) {
  for (GatedAttentionFn fn : {GatedAttentionFn::softmax, GatedAttentionFn::laplace, GatedAttentionFn::relu2})
    if (name == gated_attention_fn_name(fn)) return fn;
  throw Error(fmt::format("unknown attention function '{}' (expected one of: softmax, laplace, relu2)", name));
}

}  // namespace mixgrad
