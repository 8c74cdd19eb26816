// The AFT ops (specs/mixers.md §4): one plan per call (validated once, the band that describes the variant, the
// path), a forward and a backward shared by all four variants, and the tape node.
#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/aft.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "engine/sequence.h"
#include "kernels/cpu/aft.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/aft.h"
#endif

namespace mixgrad {
namespace {

using kernels::AftBand;
using kernels::AftBiasLayout;

struct AftPlan {
  const char* op = "aft";
  int64_t B = 0, N = 0, D = 0;
  AftBand band;
  bool dense = false;
  bool scan = false;        // causal AFT-simple: the running-max scan (no weights, no fallback)
  AftBiasLayout dw_layout;  // where the kernels write dw, in a zero-filled buffer of dw_shape
  Shape dw_shape;
  bool sum_dw_rows = false;  // AFT-conv: dw [H, N, s] is summed over rows into the kernel's [H, s]
  Tensor lengths;            // int32 [B] on the inputs' device, or undefined
};

// Runs f(backend) with the kernels' scalar type: CPU float/double, CUDA float.
template <class T>
struct Backend {
  using scalar = T;
  bool cpu = true;
#ifdef MIXGRAD_WITH_CUDA
  cudaStream_t stream = nullptr;
#endif
};

template <class F>
void dispatch(const char* op, const Tensor& ref, F&& f) {
  if (ref.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(ref.dtype(), op, [&] { f(Backend<scalar_t>{}); });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    Backend<float> be;
    be.cpu = false;
    be.stream = detail::stream_of(ref);
    f(be);
#else
    detail::no_cuda(op);
#endif
  }
}

// kernels::cpu::fn<T>(args...) on the CPU, kernels::cuda::fn(args..., stream) on CUDA.
#ifdef MIXGRAD_WITH_CUDA
#define AFT_RUN(be, fn, ...)                                \
  do {                                                      \
    using T_ = typename std::decay_t<decltype(be)>::scalar; \
    if ((be).cpu) {                                         \
      kernels::cpu::fn<T_>(__VA_ARGS__);                    \
    } else if constexpr (std::is_same_v<T_, float>) {       \
      kernels::cuda::fn(__VA_ARGS__, (be).stream);          \
    }                                                       \
  } while (0)
#else
#define AFT_RUN(be, fn, ...)                                \
  do {                                                      \
    using T_ = typename std::decay_t<decltype(be)>::scalar; \
    kernels::cpu::fn<T_>(__VA_ARGS__);                      \
  } while (0)
#endif

template <class T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

const int32_t* lengths_ptr(const AftPlan& p) { return p.lengths.defined() ? p.lengths.data<int32_t>() : nullptr; }

std::string shape_of(const Tensor& t) { return t.defined() ? shape_str(t.shape()) : "undefined"; }

// q and v [B, N, D], k [B, N, key_width] (key_width 0: D), w (when given) on their device and dtype; lengths.
AftPlan plan_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w,
                    const Tensor& lengths, int64_t key_width) {
  MIXGRAD_CHECK(q.defined() && k.defined() && v.defined(), "{}: q, k and v must be defined (got q {}, k {}, v {})", op,
                shape_of(q), shape_of(k), shape_of(v));
  MIXGRAD_CHECK(q.dim() == 3, "{}: q must be 3-D [B, N, D], got shape {}", op, shape_str(q.shape()));
  MIXGRAD_CHECK(is_floating(q.dtype()), "{}: q has dtype {}, expected float32 or float64", op, q.dtype());
  AftPlan p;
  p.op = op;
  p.B = q.size(0), p.N = q.size(1), p.D = q.size(2);
  MIXGRAD_CHECK(p.B >= 1 && p.N >= 1 && p.D >= 1, "{}: q has shape {}; expected B, N and D all >= 1", op,
                shape_str(q.shape()));
  MIXGRAD_CHECK(v.shape() == q.shape(), "{}: v has shape {}, expected q's shape {}", op, shape_str(v.shape()),
                shape_str(q.shape()));
  const Shape k_shape{p.B, p.N, key_width > 0 ? key_width : p.D};
  MIXGRAD_CHECK(k.shape() == k_shape, "{}: k has shape {}, expected {}{}", op, shape_str(k.shape()), shape_str(k_shape),
                key_width > 0 ? " (one key per head)" : " (q's shape)");
  detail::check_same_dtype(op, {q, k, v, w});
  const Device device = detail::common_device(op, {q, k, v, w});
  detail::check_cuda_float(op, q);
  if (lengths.defined()) {
    check_lengths(op, lengths, p.B, device, 0, p.N);
    p.lengths = lengths;
  }
  return p;
}

// ---- forward and backward, shared by the variants -----------------------------------------------------------

// x: [E⊙V | E] (the scan path: the running max); den: the GEMM/band den, 0 = fallback element (scan: running den).
struct Saved {
  Tensor q, k, v, w, x, ybar, den;
};

// Row maxima, and A (dense) or the band weights + coefficients (band), recomputed in the backward from w.
struct Weights {
  Tensor row_max, a, aband, coef;
};

template <class Be>
Weights make_weights(Be be, const AftPlan& p, const Tensor& w, const Tensor& ref) {
  using T = typename Be::scalar;
  const TensorOptions opt(ref.dtype(), ref.device());
  Weights r;
  r.row_max = empty({p.band.heads, p.N}, opt);
  AFT_RUN(be, aft_bias_row_max, ptr<T>(r.row_max), ptr<T>(w), p.band, p.N);
  if (p.dense) {
    r.a = empty({p.N, p.N}, opt);
    AFT_RUN(be, aft_dense_weights, ptr<T>(r.a), ptr<T>(w), ptr<T>(r.row_max), p.band, p.N);
  } else {
    r.aband = empty({p.band.heads, p.N, p.band.width}, opt);
    r.coef = empty({p.band.heads, p.N}, opt);
    AFT_RUN(be, aft_band_weights, ptr<T>(r.aband), ptr<T>(r.coef), ptr<T>(w), ptr<T>(r.row_max), p.band, p.N);
  }
  return r;
}

// out = A·in or Aᵀ·in for [B, N, 2D] operands, by the plan's path.
template <class Be>
void apply_weights(Be be, const AftPlan& p, const Weights& wt, const Tensor& out, const Tensor& in, bool transposed) {
  using T = typename Be::scalar;
  if (p.dense) {
    AFT_RUN(be, aft_dense_matmul, ptr<T>(out), ptr<T>(wt.a), ptr<T>(in), p.B, p.N, p.D, transposed, p.band.causal);
    return;
  }
  Tensor scan = empty({kernels::cpu::aft_band_scan_elems(p.B, p.N, p.D)}, TensorOptions(in.dtype(), in.device()));
  AFT_RUN(be, aft_band_matmul, ptr<T>(out), ptr<T>(scan), ptr<T>(in), ptr<T>(wt.aband), ptr<T>(wt.coef), p.band, p.B,
          p.N, p.D, transposed);
}

// Y, and what the backward needs.
Tensor run_forward(const AftPlan& p, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w, Saved* s) {
  Tensor y = empty_like(q);
  const TensorOptions opt(q.dtype(), q.device());
  s->x = p.scan ? empty_like(q) : empty({p.B, p.N, 2 * p.D}, opt);
  s->ybar = empty_like(q);
  s->den = empty_like(q);
  dispatch(p.op, q, [&](auto be) {
    using T = typename decltype(be)::scalar;
    if (p.scan) {
      AFT_RUN(be, aft_simple_scan, ptr<T>(y), ptr<T>(s->ybar), ptr<T>(s->x), ptr<T>(s->den), ptr<T>(q), ptr<T>(k),
              ptr<T>(v), lengths_ptr(p), p.B, p.N, p.D);
      return;
    }
    AFT_RUN(be, aft_key_weights, ptr<T>(s->x), ptr<T>(k), ptr<T>(v), lengths_ptr(p), p.B, p.N, p.D);
    const Weights wt = make_weights(be, p, w, q);
    Tensor nd = empty({p.B, p.N, 2 * p.D}, opt);
    apply_weights(be, p, wt, nd, s->x, false);
    AFT_RUN(be, aft_forward_finish, ptr<T>(y), ptr<T>(s->ybar), ptr<T>(s->den), ptr<T>(q), ptr<T>(k), ptr<T>(v),
            ptr<T>(nd), ptr<T>(w), p.band, lengths_ptr(p), p.B, p.N, p.D);
  });
  return y;
}

// {dq, dk, dv, dw} (dw undefined without w).
std::vector<Tensor> run_backward(const AftPlan& p, const Saved& s, const Tensor& dy) {
  MIXGRAD_CHECK(dy.defined() && dy.shape() == s.q.shape() && dy.dtype() == s.q.dtype(),
                "{}: the output gradient has shape {} and dtype {}, expected {} {}", p.op, shape_of(dy),
                dy.defined() ? dy.dtype() : s.q.dtype(), shape_str(s.q.shape()), s.q.dtype());
  const TensorOptions opt(s.q.dtype(), s.q.device());
  Tensor dq = empty_like(s.q), dk = empty_like(s.q), dv = empty_like(s.q);
  Tensor dw = s.w.defined() ? zeros(p.dw_shape, opt) : Tensor();
  dispatch(p.op, s.q, [&](auto be) {
    using T = typename decltype(be)::scalar;
    if (p.scan) {
      AFT_RUN(be, aft_simple_scan_backward, ptr<T>(dq), ptr<T>(dk), ptr<T>(dv), ptr<T>(dy), ptr<T>(s.q), ptr<T>(s.k),
              ptr<T>(s.v), ptr<T>(s.ybar), ptr<T>(s.x), ptr<T>(s.den), lengths_ptr(p), p.B, p.N, p.D);
      return;
    }
    Tensor g = empty({p.B, p.N, 2 * p.D}, opt), h = empty({p.B, p.N, 2 * p.D}, opt);
    AFT_RUN(be, aft_backward_prep, ptr<T>(g), ptr<T>(dq), ptr<T>(dy), ptr<T>(s.q), ptr<T>(s.ybar), ptr<T>(s.den),
            lengths_ptr(p), p.B, p.N, p.D);
    const Weights wt = make_weights(be, p, s.w, s.q);
    apply_weights(be, p, wt, h, g, true);
    AFT_RUN(be, aft_backward_keys, ptr<T>(dk), ptr<T>(dv), ptr<T>(h), ptr<T>(s.x), ptr<T>(s.v), p.B, p.N, p.D);
    if (dw.defined() && p.dense) {
      Tensor da = empty({p.N, p.N}, opt);
      AFT_RUN(be, aft_bias_outer, ptr<T>(da), ptr<T>(g), ptr<T>(s.x), p.B, p.N, p.D, p.band.causal);
      AFT_RUN(be, aft_dense_bias_grad, ptr<T>(dw), p.dw_layout, ptr<T>(da), ptr<T>(wt.a), p.band, p.N);
    } else if (dw.defined()) {
      AFT_RUN(be, aft_band_bias_grad, ptr<T>(dw), p.dw_layout, ptr<T>(g), ptr<T>(s.x), ptr<T>(wt.aband), p.band, p.B,
              p.N, p.D);
    }
    AFT_RUN(be, aft_fallback_backward, ptr<T>(dk), ptr<T>(dv), ptr<T>(dw), p.dw_layout, ptr<T>(dy), ptr<T>(s.q),
            ptr<T>(s.k), ptr<T>(s.v), ptr<T>(s.ybar), ptr<T>(s.den), ptr<T>(s.w), p.band, lengths_ptr(p), p.B, p.N,
            p.D);
  });
  if (dw.defined() && p.sum_dw_rows) dw = sum(dw, {1});
  return {dq, dk, dv, dw};
}

// The op: forward, and the tape node for every defined input of {q, k, v, w}.
Tensor run_op(AftPlan plan, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w) {
  Saved s;
  Tensor y = run_forward(plan, q, k, v, w, &s);
  std::vector<Tensor> inputs = {q, k, v};
  if (w.defined()) inputs.push_back(w);
  if (autograd::needs_grad(inputs)) {
    s.q = q.detach(), s.k = k.detach(), s.v = v.detach(), s.w = w.defined() ? w.detach() : Tensor();
    autograd::record(plan.op, inputs, {y},
                     [plan = std::move(plan), s = std::move(s)](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       std::vector<Tensor> grads = run_backward(plan, s, g[0]);
                       if (!s.w.defined()) grads.pop_back();
                       return grads;
                     });
  }
  return y;
}

// A band over a dense [N, N] bias (full and local): (t, j) is w[t, t + lo + j]; dw has w's layout.
void use_dense_bias(AftPlan& p, int64_t lo, int64_t width) {
  p.band.lo = lo, p.band.width = width;
  p.band.bias = AftBiasLayout{0, p.N + 1, lo};
  p.dw_layout = p.band.bias;
  p.dw_shape = {p.N, p.N};
}

void check_square_bias(const AftPlan& p, const Tensor& w) {
  MIXGRAD_CHECK(w.defined() && w.dim() == 2 && w.size(0) == p.N && w.size(1) == p.N,
                "{}: the position bias w has shape {}, expected [N, N] = [{}, {}] (the first N rows of U times the "
                "first N rows of V_p, transposed)",
                p.op, shape_of(w), p.N, p.N);
}

// AFT-local's band: keys t' with |t − t'| < s (causal: t − s < t' <= t), s = min(window, N) (a window of N or more
// is AFT-full).
struct LocalBand {
  int64_t lo, width;
};
LocalBand local_band(const char* op, int64_t window, int64_t N, bool causal) {
  MIXGRAD_CHECK(window >= 1, "{}: window s = {}, expected s >= 1 (keys with |t - t'| < s are in the band)", op, window);
  const int64_t s = std::min(window, N);
  return {-(s - 1), causal ? s : 2 * s - 1};
}

bool choose_dense(AftPath path, bool automatic_dense) {
  return path == AftPath::dense || (path == AftPath::automatic && automatic_dense);
}

}  // namespace

bool aft_local_automatic_dense(int64_t window, int64_t N, bool causal) {
  return 4 * local_band("aft_local", window, N, causal).width > N;
}

Tensor aft_full(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w, const Tensor& lengths, bool causal,
                AftPath path) {
  AftPlan p = plan_inputs("aft_full", q, k, v, w, lengths, 0);
  check_square_bias(p, w);
  p.band.causal = causal;
  use_dense_bias(p, -(p.N - 1), 2 * p.N - 1);
  p.dense = choose_dense(path, true);
  return run_op(std::move(p), q, k, v, w);
}

Tensor aft_local(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w, int64_t window,
                 const Tensor& lengths, bool causal, AftPath path) {
  AftPlan p = plan_inputs("aft_local", q, k, v, w, lengths, 0);
  check_square_bias(p, w);
  const LocalBand lb = local_band("aft_local", window, p.N, causal);
  p.band.causal = causal;
  use_dense_bias(p, lb.lo, lb.width);
  p.dense = choose_dense(path, aft_local_automatic_dense(window, p.N, causal));
  return run_op(std::move(p), q, k, v, w);
}

Tensor aft_local_bias(const Tensor& u, const Tensor& vp, int64_t window, bool causal) {
  constexpr const char* op = "aft_local_bias";
  MIXGRAD_CHECK(u.defined() && u.dim() == 2 && u.size(0) >= 1 && u.size(1) >= 1,
                "{}: U must be 2-D [N, R] with N, R >= 1, got {}", op, shape_of(u));
  MIXGRAD_CHECK(vp.defined() && vp.shape() == u.shape(), "{}: V_p has shape {}, expected U's shape {}", op,
                shape_of(vp), shape_str(u.shape()));
  MIXGRAD_CHECK(is_floating(u.dtype()), "{}: U has dtype {}, expected float32 or float64", op, u.dtype());
  detail::check_same_dtype(op, {u, vp});
  detail::common_device(op, {u, vp});
  detail::check_cuda_float(op, u);
  const int64_t N = u.size(0), R = u.size(1);
  const LocalBand lb = local_band(op, window, N, causal);
  Tensor out = empty({N, lb.width}, TensorOptions(u.dtype(), u.device()));
  dispatch(op, u, [&](auto be) {
    using T = typename decltype(be)::scalar;
    AFT_RUN(be, aft_band_product, ptr<T>(out), ptr<T>(u), ptr<T>(vp), N, R, lb.lo, lb.width);
  });
  if (autograd::needs_grad({u, vp})) {
    autograd::record(op, {u, vp}, {out},
                     [u = u.detach(), vp = vp.detach(), lb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       MIXGRAD_CHECK(
                           g[0].defined() && g[0].shape() == Shape({u.size(0), lb.width}) && g[0].dtype() == u.dtype(),
                           "aft_local_bias: the output gradient has shape {}, expected [{}, {}]", shape_of(g[0]),
                           u.size(0), lb.width);
                       Tensor du = empty_like(u), dvp = empty_like(vp);
                       dispatch("aft_local_bias", u, [&](auto be) {
                         using T = typename decltype(be)::scalar;
                         AFT_RUN(be, aft_band_product_backward, ptr<T>(du), ptr<T>(dvp), ptr<T>(g[0]), ptr<T>(u),
                                 ptr<T>(vp), u.size(0), u.size(1), lb.lo, lb.width);
                       });
                       return {du, dvp};
                     });
  }
  return out;
}

Tensor aft_local_band(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w_band, int64_t window,
                      const Tensor& lengths, bool causal, AftPath path) {
  AftPlan p = plan_inputs("aft_local_band", q, k, v, w_band, lengths, 0);
  const LocalBand lb = local_band("aft_local_band", window, p.N, causal);
  MIXGRAD_CHECK(w_band.defined() && w_band.dim() == 2 && w_band.size(0) == p.N && w_band.size(1) == lb.width,
                "aft_local_band: the bias band has shape {}, expected [N, W] = [{}, {}] (aft_local_bias with window "
                "{}{})",
                shape_of(w_band), p.N, lb.width, window, causal ? ", causal" : "");
  p.band.causal = causal;
  p.band.lo = lb.lo, p.band.width = lb.width;
  p.band.bias = AftBiasLayout{0, lb.width, 0};
  p.dw_layout = p.band.bias;
  p.dw_shape = {p.N, lb.width};
  p.dense = choose_dense(path, aft_local_automatic_dense(window, p.N, causal));
  return run_op(std::move(p), q, k, v, w_band);
}

Tensor aft_simple(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lengths, bool causal, AftPath path) {
  AftPlan p = plan_inputs("aft_simple", q, k, v, Tensor(), lengths, 0);
  p.band.causal = causal;
  p.band.lo = causal ? 1 : 0;  // an empty band at the diagonal: every visible key has bias 0
  p.dense = choose_dense(path, false);
  p.scan = causal && path == AftPath::automatic;
  return run_op(std::move(p), q, k, v, Tensor());
}

Tensor aft_conv(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& kernel, const Tensor& lengths,
                bool causal) {
  MIXGRAD_CHECK(kernel.defined() && kernel.dim() == 2,
                "aft_conv: the kernel must be 2-D [H, s] (heads, kernel size), got shape {}", shape_of(kernel));
  const int64_t H = kernel.size(0), s = kernel.size(1);
  AftPlan p = plan_inputs("aft_conv", q, k, v, kernel, lengths, H);
  MIXGRAD_CHECK(H >= 1 && p.D % H == 0, "aft_conv: {} heads (kernel {}) do not divide D = {} (q {})", H,
                shape_str(kernel.shape()), p.D, shape_str(q.shape()));
  MIXGRAD_CHECK(s >= 1 && (causal || s % 2 == 1),
                "aft_conv: kernel size s = {} (kernel {}); expected an odd s >= 1 (a centred kernel), or any s >= 1 "
                "when causal",
                s, shape_str(kernel.shape()));
  p.band = AftBand{H, causal ? -(s - 1) : -(s - 1) / 2, s, causal, AftBiasLayout{s, 0, 0}};
  p.dw_layout = AftBiasLayout{p.N * s, s, 0};
  p.dw_shape = {H, p.N, s};
  p.sum_dw_rows = true;
  // One key per head, shared by the head's channels: [B, N, H] -> [B, N, H, D/H] -> [B, N, D] (differentiable).
  const Tensor k_channels = reshape(expand(reshape(k, {p.B, p.N, H, 1}), {p.B, p.N, H, p.D / H}), {p.B, p.N, p.D});
  return run_op(std::move(p), q, k_channels, v, kernel);
}

}  // namespace mixgrad
