// The fused LSTM layer op: validation (a plan built once per call), the whole-sequence GEMMs, the per-direction
// recurrence kernels and the tape node whose backward runs the same kernels backward through time.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/deferred_checks.h"
#include "engine/error.h"
#include "engine/lstm.h"
#include "engine/ops.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/lstm.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/csp.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/lstm.h"
#endif

namespace mixgrad {
namespace {

constexpr const char* kOp = "lstm_layer";

// Validated sizes; lengths as int32 [B] on x's device (undefined when every sample is full length).
struct LstmPlan {
  int64_t B = 0, L = 0, D = 0, H = 0, dirs = 1;
  Tensor lengths;
};

// What the backward needs from the forward.
struct LstmSaved {
  Tensor x2d;     // [B·L, D]: x, with padded rows zeroed when lengths are given
  Tensor w_cat;   // [dirs·4H, D]: the input weights of both directions, stacked
  Tensor gates;   // [B·L, dirs·4H]: activated gates
  Tensor cell;    // [B·L, dirs·H]
  Tensor h_prev;  // [B·L, dirs·H]: the state h entering each position's step
};

void check_param(const Tensor& t, const char* name, int64_t dir, const Shape& expected, const Tensor& x) {
  MIXGRAD_CHECK(t.defined(), "{}: direction {} {} is undefined (expected shape {})", kOp, dir, name,
                shape_str(expected));
  MIXGRAD_CHECK(t.shape() == expected, "{}: direction {} {} has shape {}, expected {}", kOp, dir, name,
                shape_str(t.shape()), shape_str(expected));
  MIXGRAD_CHECK(t.dtype() == x.dtype(), "{}: direction {} {} has dtype {}, expected x's dtype {}", kOp, dir, name,
                t.dtype(), x.dtype());
  MIXGRAD_CHECK(t.device() == x.device(), "{}: direction {} {} is on {}, x on {} (expected the same device)", kOp, dir,
                name, t.device(), x.device());
}

Tensor plan_lengths(const Tensor& lengths, const LstmPlan& p, const Tensor& x) {
  if (!lengths.defined()) return Tensor();
  MIXGRAD_CHECK(lengths.dtype() == DType::i32 || lengths.dtype() == DType::i64,
                "{}: lengths has dtype {}, expected int32 (or int64)", kOp, lengths.dtype());
  MIXGRAD_CHECK(lengths.dim() == 1 && lengths.size(0) == p.B, "{}: lengths has shape {}, expected [B] = [{}]", kOp,
                shape_str(lengths.shape()), p.B);
  const Device device = x.device();
  if (!device.is_cpu() && !lengths.device().is_cpu()) {
#ifdef MIXGRAD_WITH_CUDA
    // Checked and clamped on the device (no read-back); a bad length is reported at the next read-back.
    MIXGRAD_CHECK(lengths.device() == device, "{}: lengths is on {}, x on {} (expected the same device)", kOp,
                  lengths.device(), device);
    Tensor flag = zeros({1}, TensorOptions(DType::i32, device));
    Tensor out = empty({p.B}, TensorOptions(DType::i32, device));
    kernels::cuda::csp_prepare_lengths(out.data<int32_t>(), lengths.raw_data(), lengths.dtype() == DType::i64, p.B, p.L,
                                       flag.data<int32_t>(), detail::stream_of(x));
    detail::defer_check(flag, fmt::format("{}: a length is outside [1, L] = [1, {}] (lengths holds each sample's "
                                          "valid token count)",
                                          kOp, p.L));
    return out;
#endif
  }
  Tensor host = lengths.to(kCPU).to(DType::i64);
  const std::vector<int64_t> n = host.to_vector<int64_t>();
  std::vector<int32_t> n32(static_cast<size_t>(p.B));
  for (int64_t b = 0; b < p.B; ++b) {
    MIXGRAD_CHECK(n[b] >= 1 && n[b] <= p.L, "{}: lengths[{}] = {} is outside [1, L] = [1, {}]", kOp, b, n[b], p.L);
    n32[b] = static_cast<int32_t>(n[b]);
  }
  return from_vector<int32_t>(n32, {p.B}, TensorOptions(DType::i32, device));
}

LstmPlan plan_lstm(const Tensor& x, const std::vector<LstmDirection>& dirs, const Tensor& lengths) {
  MIXGRAD_CHECK(x.defined(), "{}: x is undefined (expected a [B, L, D] tensor)", kOp);
  MIXGRAD_CHECK(is_floating(x.dtype()), "{}: x has dtype {}, expected float32 or float64", kOp, x.dtype());
  detail::check_cuda_float(kOp, x);
  MIXGRAD_CHECK(x.dim() == 3, "{}: x must be 3-D [B, L, D], got shape {}", kOp, shape_str(x.shape()));
  MIXGRAD_CHECK(dirs.size() == 1 || dirs.size() == 2,
                "{}: {} directions given, expected 1 (unidirectional) or 2 (forward, reverse)", kOp, dirs.size());
  LstmPlan p;
  p.B = x.size(0), p.L = x.size(1), p.D = x.size(2), p.dirs = int64_t(dirs.size());
  MIXGRAD_CHECK(p.B >= 1 && p.L >= 1 && p.D >= 1, "{}: x has shape {}; expected B, L and D all >= 1", kOp,
                shape_str(x.shape()));
  MIXGRAD_CHECK(p.L <= std::numeric_limits<int32_t>::max(), "{}: L = {} is too large (expected L <= 2^31 - 1)", kOp,
                p.L);
  MIXGRAD_CHECK(dirs[0].w_hh.defined() && dirs[0].w_hh.dim() == 2 && dirs[0].w_hh.size(1) >= 1 &&
                    dirs[0].w_hh.size(0) == 4 * dirs[0].w_hh.size(1),
                "{}: direction 0 w_hh has shape {}, expected [4H, H] with H >= 1", kOp,
                dirs[0].w_hh.defined() ? shape_str(dirs[0].w_hh.shape()) : std::string("(undefined)"));
  p.H = dirs[0].w_hh.size(1);
  for (int64_t d = 0; d < p.dirs; ++d) {
    const LstmDirection& w = dirs[size_t(d)];
    check_param(w.w_ih, "w_ih", d, {4 * p.H, p.D}, x);
    check_param(w.w_hh, "w_hh", d, {4 * p.H, p.H}, x);
    check_param(w.b_ih, "b_ih", d, {4 * p.H}, x);
    check_param(w.b_hh, "b_hh", d, {4 * p.H}, x);
  }
  p.lengths = plan_lengths(lengths, p, x);
  return p;
}

const int32_t* lengths_ptr(const LstmPlan& p) { return p.lengths.defined() ? p.lengths.data<int32_t>() : nullptr; }

// C [m, n] = Aᵀ·B with A stored k × m (leading dimension lda, from element a_off) and B stored k × n (ldb, b_off).
void gemm_tn(int64_t m, int64_t n, int64_t k, const Tensor& A, int64_t a_off, int64_t lda, const Tensor& Bm,
             int64_t b_off, int64_t ldb, Tensor& C) {
  if (C.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(C.dtype(), kOp, [&] {
      kernels::cpu::gemm_strided_batched<scalar_t>(true, false, m, n, k, scalar_t(1), A.data<scalar_t>() + a_off, lda,
                                                   0, Bm.data<scalar_t>() + b_off, ldb, 0, scalar_t(0),
                                                   C.data<scalar_t>(), n, 0, 1);
    });
    return;
  }
#ifdef MIXGRAD_WITH_CUDA
  kernels::cuda::gemm_strided_batched(true, false, m, n, k, 1.0f, A.data<float>() + a_off, lda, 0,
                                      Bm.data<float>() + b_off, ldb, 0, 0.0f, C.data<float>(), n, 0, 1, allow_tf32(),
                                      detail::stream_of(C));
#else
  detail::no_cuda(kOp);
#endif
}

Tensor workspace(const LstmPlan& p, const Tensor& x) {
  int64_t n = kernels::cpu::lstm_work_size(p.B, p.H);
#ifdef MIXGRAD_WITH_CUDA
  if (!x.device().is_cpu()) n = kernels::cuda::lstm_work_size(p.B, p.H);
#endif
  return empty({n}, TensorOptions(x.dtype(), x.device()));
}

LstmLayerOutput run_forward(const Tensor& x, const std::vector<LstmDirection>& dirs, const LstmPlan& p, LstmSaved& s) {
  const NoGradGuard no_grad;
  const TensorOptions opt(x.dtype(), x.device());
  s.x2d = x.detach().reshape({p.B * p.L, p.D});
  if (p.lengths.defined()) {
    s.x2d = s.x2d.clone();
    if (x.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(x.dtype(), kOp, [&] {
        kernels::cpu::lstm_zero_padding(s.x2d.data<scalar_t>(), lengths_ptr(p), p.B, p.L, p.D);
      });
    } else {
#ifdef MIXGRAD_WITH_CUDA
      kernels::cuda::lstm_zero_padding(s.x2d.data<float>(), lengths_ptr(p), p.B, p.L, p.D, detail::stream_of(x));
#endif
    }
  }
  std::vector<Tensor> w_ih, bias;
  for (const LstmDirection& d : dirs) {
    w_ih.push_back(d.w_ih.detach());
    bias.push_back(add(d.b_ih.detach(), d.b_hh.detach()));
  }
  s.w_cat = p.dirs == 1 ? w_ih[0] : cat(w_ih, 0);
  // Input projections of every direction over the whole sequence: one GEMM, biases folded in.
  s.gates = linear(s.x2d, s.w_cat, p.dirs == 1 ? bias[0] : cat(bias, 0));
  LstmLayerOutput out;
  out.y = empty({p.B, p.L, p.dirs * p.H}, opt);
  out.h_n = empty({p.dirs, p.B, p.H}, opt);
  s.cell = empty({p.B * p.L, p.dirs * p.H}, opt);
  s.h_prev = empty({p.B * p.L, p.dirs * p.H}, opt);
  Tensor work = workspace(p, x);
  for (int64_t d = 0; d < p.dirs; ++d) {
    const Tensor& w_hh = dirs[size_t(d)].w_hh;
    if (x.device().is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(x.dtype(), kOp, [&] {
        kernels::cpu::lstm_forward(s.gates.data<scalar_t>(), out.y.data<scalar_t>(), s.cell.data<scalar_t>(),
                                   s.h_prev.data<scalar_t>(), out.h_n.data<scalar_t>() + d * p.B * p.H,
                                   w_hh.data<scalar_t>(), lengths_ptr(p), p.B, p.L, p.H, p.dirs, d,
                                   work.data<scalar_t>());
      });
    } else {
#ifdef MIXGRAD_WITH_CUDA
      kernels::cuda::lstm_forward(s.gates.data<float>(), out.y.data<float>(), s.cell.data<float>(),
                                  s.h_prev.data<float>(), out.h_n.data<float>() + d * p.B * p.H, w_hh.data<float>(),
                                  lengths_ptr(p), p.B, p.L, p.H, p.dirs, d, work.data<float>(), detail::stream_of(x));
#else
      detail::no_cuda(kOp);
#endif
    }
  }
  return out;
}

// Gradients in the node's input order: x, then per direction w_ih, w_hh, b_ih, b_hh.
std::vector<Tensor> run_backward(const Tensor& dy, const Tensor& dh_n, const std::vector<LstmDirection>& dirs,
                                 const LstmPlan& p, const LstmSaved& s) {
  const TensorOptions opt(s.gates.dtype(), s.gates.device());
  const int64_t G = p.dirs * 4 * p.H, rows = p.B * p.L;
  Tensor dgates = empty({rows, G}, opt);
  Tensor work = workspace(p, s.gates);
  for (int64_t d = 0; d < p.dirs; ++d) {
    const Tensor& w_hh = dirs[size_t(d)].w_hh;
    if (opt.device.is_cpu()) {
      MIXGRAD_DISPATCH_FLOATING(opt.dtype, kOp, [&] {
        kernels::cpu::lstm_backward(dgates.data<scalar_t>(), dy.data<scalar_t>(), dh_n.data<scalar_t>() + d * p.B * p.H,
                                    s.gates.data<scalar_t>(), s.cell.data<scalar_t>(), w_hh.data<scalar_t>(),
                                    lengths_ptr(p), p.B, p.L, p.H, p.dirs, d, work.data<scalar_t>());
      });
    } else {
#ifdef MIXGRAD_WITH_CUDA
      kernels::cuda::lstm_backward(dgates.data<float>(), dy.data<float>(), dh_n.data<float>() + d * p.B * p.H,
                                   s.gates.data<float>(), s.cell.data<float>(), w_hh.data<float>(), lengths_ptr(p), p.B,
                                   p.L, p.H, p.dirs, d, work.data<float>(), detail::stream_of(s.gates));
#else
      detail::no_cuda(kOp);
#endif
    }
  }
  std::vector<Tensor> grads;
  grads.push_back(matmul(dgates, s.w_cat).reshape({p.B, p.L, p.D}));
  Tensor dw_ih = empty({G, p.D}, opt);
  gemm_tn(G, p.D, rows, dgates, 0, G, s.x2d, 0, p.D, dw_ih);
  const Tensor db = sum(dgates, {0});
  for (int64_t d = 0; d < p.dirs; ++d) {
    Tensor dw_hh = empty({4 * p.H, p.H}, opt);
    gemm_tn(4 * p.H, p.H, rows, dgates, d * 4 * p.H, G, s.h_prev, d * p.H, p.dirs * p.H, dw_hh);
    const Tensor db_d = narrow(db, 0, d * 4 * p.H, 4 * p.H);
    grads.push_back(p.dirs == 1 ? dw_ih : narrow(dw_ih, 0, d * 4 * p.H, 4 * p.H));
    grads.push_back(dw_hh);
    grads.push_back(db_d);
    grads.push_back(db_d.clone());
  }
  return grads;
}

void check_grad(const Tensor& g, const Shape& expected, const Tensor& like, const char* name) {
  MIXGRAD_CHECK(g.defined() && g.shape() == expected && g.dtype() == like.dtype() && g.device() == like.device(),
                "{}: the gradient of {} must be {} {} on {}, got {}", kOp, name, like.dtype(), shape_str(expected),
                like.device(), g.defined() ? shape_str(g.shape()) : std::string("an undefined tensor"));
}

}  // namespace

LstmLayerOutput lstm_layer(const Tensor& x, const std::vector<LstmDirection>& directions, const Tensor& lengths) {
  LstmPlan plan = plan_lstm(x, directions, lengths);
  LstmSaved saved;
  LstmLayerOutput out = run_forward(x, directions, plan, saved);
  std::vector<Tensor> inputs{x};
  for (const LstmDirection& d : directions) inputs.insert(inputs.end(), {d.w_ih, d.w_hh, d.b_ih, d.b_hh});
  if (autograd::needs_grad(inputs)) {
    std::vector<LstmDirection> weights;
    for (const LstmDirection& d : directions) weights.push_back({Tensor(), d.w_hh.detach(), Tensor(), Tensor()});
    autograd::record(kOp, inputs, {out.y, out.h_n},
                     [weights = std::move(weights), plan = std::move(plan), saved = std::move(saved),
                      x = x.detach()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       // A missing or undefined gradient (a caller applying the node to y's gradient only)
                       // counts as zero.
                       const Shape y_shape{plan.B, plan.L, plan.dirs * plan.H}, h_shape{plan.dirs, plan.B, plan.H};
                       const TensorOptions opt(x.dtype(), x.device());
                       const Tensor dy = !g.empty() && g[0].defined() ? g[0] : zeros(y_shape, opt);
                       const Tensor dh = g.size() > 1 && g[1].defined() ? g[1] : zeros(h_shape, opt);
                       check_grad(dy, y_shape, x, "y");
                       check_grad(dh, h_shape, x, "h_n");
                       return run_backward(dy, dh, weights, plan, saved);
                     });
  }
  return out;
}

}  // namespace mixgrad
