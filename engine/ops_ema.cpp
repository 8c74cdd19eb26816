// The multihead_ema op (specs/lra.md §6.2): validation once into a plan, device dispatch, and a tape node whose
// backward reuses the forward's coefficients, kernel taps and pre-activation.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/deferred_checks.h"
#include "engine/ema.h"
#include "engine/error.h"
#include "engine/valid_lengths.h"
#include "kernels/cpu/ema.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/csp.h"
#include "kernels/cuda/ema.h"
#endif

namespace mixgrad {
namespace {

// The op's tensors (detached when saved for the backward).
struct EmaArgs {
  Tensor x, delta, alpha, beta, gamma, omega;
};

// Validated sizes, the path that runs, and the lengths as int32 on x's device (undefined: every sample is full).
struct EmaPlan {
  kernels::EmaSizes sizes;
  EmaPath path = EmaPath::scan;
  Tensor lengths;
};

// What the forward computed that the backward reuses: coefficients, the kernel taps (convolution path only) and the
// pre-activation y + omega·x.
struct EmaSaved {
  Tensor coef, decay, kernel, pre;
};

// The two backends behind one interface, so that each step below is written once.
template <class T>
struct CpuEma {
  using scalar = T;
  template <class... A>
  void coefficients(A... a) const {
    kernels::cpu::ema_coefficients<T>(a...);
  }
  template <class... A>
  void coefficients_backward(A... a) const {
    kernels::cpu::ema_coefficients_backward<T>(a...);
  }
  template <class... A>
  void kernel(A... a) const {
    kernels::cpu::ema_kernel<T>(a...);
  }
  template <class... A>
  void kernel_backward(A... a) const {
    kernels::cpu::ema_kernel_backward<T>(a...);
  }
  template <class... A>
  void conv_forward(A... a) const {
    kernels::cpu::ema_conv_forward<T>(a...);
  }
  template <class... A>
  void scan_forward(A... a) const {
    kernels::cpu::ema_scan_forward<T>(a...);
  }
  template <class... A>
  void pre_grad(A... a) const {
    kernels::cpu::ema_pre_grad<T>(a...);
  }
  template <class... A>
  void conv_backward(A... a) const {
    kernels::cpu::ema_conv_backward<T>(a...);
  }
  template <class... A>
  void scan_backward(A... a) const {
    kernels::cpu::ema_scan_backward<T>(a...);
  }
};

#ifdef MIXGRAD_WITH_CUDA
struct CudaEma {
  using scalar = float;
  cudaStream_t stream;
  template <class... A>
  void coefficients(A... a) const {
    kernels::cuda::ema_coefficients(a..., stream);
  }
  template <class... A>
  void coefficients_backward(A... a) const {
    kernels::cuda::ema_coefficients_backward(a..., stream);
  }
  template <class... A>
  void kernel(A... a) const {
    kernels::cuda::ema_kernel(a..., stream);
  }
  template <class... A>
  void kernel_backward(A... a) const {
    kernels::cuda::ema_kernel_backward(a..., stream);
  }
  template <class... A>
  void conv_forward(A... a) const {
    kernels::cuda::ema_conv_forward(a..., stream);
  }
  template <class... A>
  void scan_forward(A... a) const {
    kernels::cuda::ema_scan_forward(a..., stream);
  }
  template <class... A>
  void pre_grad(A... a) const {
    kernels::cuda::ema_pre_grad(a..., stream);
  }
  template <class... A>
  void conv_backward(A... a) const {
    kernels::cuda::ema_conv_backward(a..., stream);
  }
  template <class... A>
  void scan_backward(A... a) const {
    kernels::cuda::ema_scan_backward(a..., stream);
  }
};
#endif

// Calls f(backend) with the kernels of t's device and dtype.
template <class F>
void with_backend(const char* op, const Tensor& t, F&& f) {
  if (t.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(t.dtype(), op, [&] { f(CpuEma<scalar_t>{}); });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    f(CudaEma{detail::stream_of(t)});
#else
    detail::no_cuda(op);
#endif
  }
}

void check_parameters(const char* op, const EmaArgs& a, int64_t rows, bool bidirectional) {
  const Tensor* params[] = {&a.delta, &a.alpha, &a.beta, &a.gamma};
  const char* names[] = {"delta", "alpha", "beta", "gamma"};
  for (int i = 0; i < 4; ++i) {
    const Tensor& p = *params[i];
    MIXGRAD_CHECK(p.defined(), "{}: {} is undefined (expected [rows, ndim] = [{}, ndim])", op, names[i], rows);
    MIXGRAD_CHECK(p.dim() == 2 && p.size(0) == rows,
                  "{}: {} has shape {}, expected [rows, ndim] with rows = {} ({}x the {} channels of x {})", op,
                  names[i], shape_str(p.shape()), rows, bidirectional ? 2 : 1, a.x.size(2), shape_str(a.x.shape()));
    MIXGRAD_CHECK(p.shape() == a.delta.shape(), "{}: {} has shape {}, expected delta's shape {}", op, names[i],
                  shape_str(p.shape()), shape_str(a.delta.shape()));
  }
  const int64_t ndim = a.delta.size(1);
  MIXGRAD_CHECK(ndim >= 1 && ndim <= kEmaMaxNdim, "{}: ndim = {} (delta has shape {}), expected 1 <= ndim <= {}", op,
                ndim, shape_str(a.delta.shape()), kEmaMaxNdim);
  MIXGRAD_CHECK(a.omega.defined() && a.omega.dim() == 1 && a.omega.size(0) == a.x.size(2),
                "{}: omega has shape {}, expected [D] = [{}]", op,
                a.omega.defined() ? shape_str(a.omega.shape()) : std::string("(undefined)"), a.x.size(2));
  detail::check_same_dtype(op, {a.x, a.delta, a.alpha, a.beta, a.gamma, a.omega});
  detail::common_device(op, {a.x, a.delta, a.alpha, a.beta, a.gamma, a.omega});
}

EmaPlan plan_ema(const char* op, const EmaArgs& a, const Tensor& lengths, const EmaOptions& options) {
  MIXGRAD_CHECK(a.x.defined(), "{}: x is undefined (expected a [B, L, D] tensor)", op);
  MIXGRAD_CHECK(is_floating(a.x.dtype()), "{}: x has dtype {}, expected float32 or float64", op, a.x.dtype());
  detail::check_cuda_float(op, a.x);
  MIXGRAD_CHECK(a.x.dim() == 3, "{}: x must be 3-D [B, L, D], got shape {}", op, shape_str(a.x.shape()));
  MIXGRAD_CHECK(a.x.size(0) >= 1 && a.x.size(1) >= 1 && a.x.size(2) >= 1,
                "{}: x has shape {}; expected B, L and D all >= 1", op, shape_str(a.x.shape()));
  MIXGRAD_CHECK(a.x.size(1) <= std::numeric_limits<int32_t>::max(), "{}: L = {} is too large (expected L <= 2^31 - 1)",
                op, a.x.size(1));
  MIXGRAD_CHECK(options.truncation >= 0, "{}: truncation = {}, expected >= 0 (0 = none)", op, options.truncation);
  EmaPlan p;
  kernels::EmaSizes& s = p.sizes;
  s.batch = a.x.size(0), s.length = a.x.size(1), s.channels = a.x.size(2);
  s.bidirectional = options.bidirectional;
  check_parameters(op, a, s.rows(), s.bidirectional);
  s.ndim = a.delta.size(1);
  s.kernel_length = options.truncation == 0 ? s.length : std::min(options.truncation, s.length);
  p.path = ema_resolve_path(s.length, options);
  if (lengths.defined()) p.lengths = detail::prepare_valid_lengths(op, lengths, a.x, "x").lengths;
  return p;
}

template <class T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <class K>
Tensor run_forward(const K& k, const EmaArgs& a, const EmaPlan& p, EmaSaved& saved) {
  using T = typename K::scalar;
  const kernels::EmaSizes& s = p.sizes;
  const TensorOptions opt(a.x.dtype(), a.x.device());
  saved.coef = empty({s.rows(), s.ndim}, opt);
  saved.decay = empty({s.rows(), s.ndim}, opt);
  k.coefficients(ptr<T>(saved.coef), ptr<T>(saved.decay), ptr<T>(a.delta), ptr<T>(a.alpha), ptr<T>(a.beta),
                 ptr<T>(a.gamma), s.rows(), s.ndim);
  Tensor out = empty_like(a.x);
  saved.pre = empty_like(a.x);
  const int32_t* lengths = ptr<int32_t>(p.lengths);
  if (p.path == EmaPath::scan) {
    k.scan_forward(ptr<T>(out), ptr<T>(saved.pre), ptr<T>(a.x), lengths, ptr<T>(saved.coef), ptr<T>(saved.decay),
                   ptr<T>(a.omega), s);
  } else {
    saved.kernel = empty({s.rows(), s.kernel_length}, opt);
    k.kernel(ptr<T>(saved.kernel), ptr<T>(saved.coef), ptr<T>(saved.decay), s.rows(), s.ndim, s.kernel_length);
    k.conv_forward(ptr<T>(out), ptr<T>(saved.pre), ptr<T>(a.x), lengths, ptr<T>(saved.kernel), ptr<T>(a.omega), s);
  }
  return out;
}

// Gradients {dx, ddelta, dalpha, dbeta, dgamma, domega} of sum(out · dout).
template <class K>
std::vector<Tensor> run_backward(const K& k, const Tensor& dout, const EmaArgs& a, const EmaPlan& p,
                                 const EmaSaved& saved) {
  using T = typename K::scalar;
  const kernels::EmaSizes& s = p.sizes;
  const TensorOptions opt(a.x.dtype(), a.x.device());
  const int32_t* lengths = ptr<int32_t>(p.lengths);
  Tensor dpre = empty_like(a.x), domega = empty_like(a.omega), dx = empty_like(a.x);
  k.pre_grad(ptr<T>(dpre), ptr<T>(domega), ptr<T>(dout), ptr<T>(saved.pre), ptr<T>(a.x), lengths, s);
  Tensor dcoef = empty({s.rows(), s.ndim}, opt), ddecay = empty({s.rows(), s.ndim}, opt);
  if (p.path == EmaPath::scan) {
    Tensor partial = empty({2, s.batch, s.rows(), s.ndim}, opt);
    k.scan_backward(ptr<T>(dx), ptr<T>(dcoef), ptr<T>(ddecay), ptr<T>(partial), ptr<T>(dpre), ptr<T>(a.x), lengths,
                    ptr<T>(saved.coef), ptr<T>(saved.decay), ptr<T>(a.omega), s);
  } else {
    Tensor dkernel = empty({s.rows(), s.kernel_length}, opt);
    k.conv_backward(ptr<T>(dx), ptr<T>(dkernel), ptr<T>(dpre), ptr<T>(a.x), lengths, ptr<T>(saved.kernel),
                    ptr<T>(a.omega), s);
    k.kernel_backward(ptr<T>(dcoef), ptr<T>(ddecay), ptr<T>(dkernel), ptr<T>(saved.coef), ptr<T>(saved.decay), s.rows(),
                      s.ndim, s.kernel_length);
  }
  Tensor ddelta = empty_like(a.delta), dalpha = empty_like(a.alpha), dbeta = empty_like(a.beta),
         dgamma = empty_like(a.gamma);
  k.coefficients_backward(ptr<T>(ddelta), ptr<T>(dalpha), ptr<T>(dbeta), ptr<T>(dgamma), ptr<T>(dcoef), ptr<T>(ddecay),
                          ptr<T>(a.delta), ptr<T>(a.alpha), ptr<T>(a.beta), ptr<T>(a.gamma), s.rows(), s.ndim);
  return {dx, ddelta, dalpha, dbeta, dgamma, domega};
}

}  // namespace

EmaPath ema_resolve_path(int64_t length, const EmaOptions& options) {
  const int64_t k = options.truncation == 0 ? length : std::min(options.truncation, length);
  if (options.path == EmaPath::scan)
    MIXGRAD_CHECK(k == length,
                  "multihead_ema: the scan path was requested with truncation {} < L = {}; the scan equals the "
                  "truncated kernel only when truncation >= L (use the convolution path)",
                  options.truncation, length);
  if (options.path != EmaPath::automatic) return options.path;
  return k == length ? EmaPath::scan : EmaPath::convolution;
}

std::string ema_path_name(EmaPath path) {
  switch (path) {
    case EmaPath::automatic:
      return "automatic";
    case EmaPath::scan:
      return "scan";
    case EmaPath::convolution:
      return "convolution";
  }
  return "unknown";
}

Tensor multihead_ema(const Tensor& x, const Tensor& delta, const Tensor& alpha, const Tensor& beta, const Tensor& gamma,
                     const Tensor& omega, const Tensor& lengths, const EmaOptions& options) {
  constexpr const char* op = "multihead_ema";
  EmaArgs args{x, delta, alpha, beta, gamma, omega};
  EmaPlan plan = plan_ema(op, args, lengths, options);
  EmaSaved saved;
  Tensor out;
  with_backend(op, x, [&](const auto& k) { out = run_forward(k, args, plan, saved); });
  if (autograd::needs_grad({x, delta, alpha, beta, gamma, omega})) {
    EmaArgs kept{x.detach(), delta.detach(), alpha.detach(), beta.detach(), gamma.detach(), omega.detach()};
    autograd::record(op, {x, delta, alpha, beta, gamma, omega}, {out},
                     [a = std::move(kept), plan = std::move(plan),
                      saved = std::move(saved)](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       MIXGRAD_CHECK(g[0].defined() && g[0].shape() == a.x.shape() && g[0].dtype() == a.x.dtype(),
                                     "multihead_ema backward: dout must have x's shape {} and dtype {}",
                                     shape_str(a.x.shape()), a.x.dtype());
                       std::vector<Tensor> grads;
                       with_backend("multihead_ema backward", a.x,
                                    [&](const auto& k) { grads = run_backward(k, g[0], a, plan, saved); });
                       return grads;
                     });
  }
  return out;
}

Tensor ema_kernel(const Tensor& delta, const Tensor& alpha, const Tensor& beta, const Tensor& gamma, int64_t k) {
  constexpr const char* op = "ema_kernel";
  MIXGRAD_CHECK(delta.defined() && delta.dim() == 2, "{}: delta must be [rows, ndim], got {}", op,
                delta.defined() ? shape_str(delta.shape()) : std::string("an undefined tensor"));
  MIXGRAD_CHECK(k >= 1, "{}: kernel length k = {}, expected k >= 1", op, k);
  const int64_t rows = delta.size(0), ndim = delta.size(1);
  for (const Tensor* p : {&alpha, &beta, &gamma})
    MIXGRAD_CHECK(p->defined() && p->shape() == delta.shape(), "{}: alpha, beta and gamma must have delta's shape {}",
                  op, shape_str(delta.shape()));
  detail::check_same_dtype(op, {delta, alpha, beta, gamma});
  detail::common_device(op, {delta, alpha, beta, gamma});
  const TensorOptions opt(delta.dtype(), delta.device());
  Tensor coef = empty({rows, ndim}, opt), decay = empty({rows, ndim}, opt), kernel = empty({rows, k}, opt);
  with_backend(op, delta, [&](const auto& be) {
    using T = typename std::decay_t<decltype(be)>::scalar;
    be.coefficients(ptr<T>(coef), ptr<T>(decay), ptr<T>(delta), ptr<T>(alpha), ptr<T>(beta), ptr<T>(gamma), rows, ndim);
    be.kernel(ptr<T>(kernel), ptr<T>(coef), ptr<T>(decay), rows, ndim, k);
  });
  return kernel;
}

}  // namespace mixgrad
