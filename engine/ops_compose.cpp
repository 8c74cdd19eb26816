// The DCMHA ops (engine/compose.h): validation into one plan, the chunk loop shared by the forward and the
// backward (specs/mixers.md §3.6 Option A), device dispatch and the tape nodes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/compose.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "engine/sequence.h"
#include "kernels/cpu/compose.h"
#include "kernels/cpu/gemm.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/compose.h"
#include "kernels/cuda/gemm.h"
#endif

namespace mixgrad {
namespace {

using kernels::ComposeChunk;
using KStage = kernels::ComposeStage;

KStage kstage(ComposeStage s) { return s == ComposeStage::pre ? KStage::pre : KStage::post; }

// Validated sizes and masking of one call.
struct ComposePlan {
  int64_t B = 0, H = 0, N = 0, R = 0, d = 0;
  int64_t chunk = 0, window = 0;
  bool causal = false;
  double scale = 1.0;
  Tensor lengths;  // int32 [B] on the inputs' device, or undefined
};

void check_dyn(const char* op, const Tensor& dyn, ComposePlan& p) {
  MIXGRAD_CHECK(dyn.defined(), "{}: dyn is undefined (expected dynamic weights [4, B, N, 2R + 1, H])", op);
  MIXGRAD_CHECK(dyn.dim() == 5 && dyn.size(0) == 4 && dyn.size(1) == p.B && dyn.size(2) == p.N && dyn.size(3) >= 3 &&
                    dyn.size(3) % 2 == 1 && dyn.size(4) == p.H,
                "{}: dyn has shape {}, expected [4, B, N, 2R + 1, H] = [4, {}, {}, 2R + 1 (odd, >= 3), {}]", op,
                shape_str(dyn.shape()), p.B, p.N, p.H);
  p.R = (dyn.size(3) - 1) / 2;
  MIXGRAD_CHECK(p.R <= kernels::kComposeMaxRank, "{}: dyn has rank R = {} (dim 3 = 2R + 1 = {}), expected R <= {}", op,
                p.R, dyn.size(3), kernels::kComposeMaxRank);
}

void check_ws(const char* op, const char* name, const Tensor& ws, const Tensor& like, int64_t H) {
  if (!ws.defined()) return;
  MIXGRAD_CHECK(ws.dim() == 2 && ws.size(0) == H && ws.size(1) == H, "{}: {} has shape {}, expected [H, H] = [{}, {}]",
                op, name, shape_str(ws.shape()), H, H);
  detail::check_same_dtype(op, {like, ws});
  detail::common_device(op, {like, ws});
}

void check_mask(const char* op, const DcmhaMask& m, ComposePlan& p, Device device) {
  MIXGRAD_CHECK(m.window >= 0, "{}: window = {} must be >= 0 (0 = global)", op, m.window);
  if (m.lengths.defined()) check_lengths(op, m.lengths, p.B, device, 0, p.N);
  p.lengths = m.lengths;
  p.causal = m.causal;
  p.window = m.window;
}

void check_heads(const char* op, int64_t H) {
  MIXGRAD_CHECK(H >= 1 && H <= kernels::kComposeMaxHeads, "{}: H = {} heads, expected 1 <= H <= {}", op, H,
                kernels::kComposeMaxHeads);
}

ComposePlan plan_compose(const char* op, const Tensor& a, const Tensor& dyn, const Tensor& ws, const DcmhaMask& m) {
  MIXGRAD_CHECK(a.defined() && is_floating(a.dtype()), "{}: a must be a float32/float64 tensor [B, H, N, N], got {}",
                op, a.defined() ? fmt::format("{} {}", a.dtype(), shape_str(a.shape())) : "an undefined tensor");
  detail::check_cuda_float(op, a);
  MIXGRAD_CHECK(a.dim() == 4 && a.size(2) == a.size(3) && a.numel() > 0,
                "{}: a has shape {}, expected non-empty self-attention scores [B, H, N, N]", op, shape_str(a.shape()));
  ComposePlan p;
  p.B = a.size(0), p.H = a.size(1), p.N = a.size(2);
  check_heads(op, p.H);
  check_dyn(op, dyn, p);
  detail::check_same_dtype(op, {a, dyn});
  detail::common_device(op, {a, dyn});
  check_ws(op, "ws", ws, a, p.H);
  check_mask(op, m, p, a.device());
  return p;
}

ComposePlan plan_dcmha(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dyn,
                       const Tensor& ws_pre, const Tensor& ws_post, const DcmhaMask& m, int64_t chunk, double scale) {
  for (const Tensor* t : {&q, &k, &v})
    MIXGRAD_CHECK(t->defined() && is_floating(t->dtype()) && t->dim() == 4,
                  "{}: q, k and v must be float32/float64 [B, H, N, d], got {}", op,
                  t->defined() ? fmt::format("{} {}", t->dtype(), shape_str(t->shape())) : "an undefined tensor");
  MIXGRAD_CHECK(k.shape() == q.shape() && v.shape() == q.shape(),
                "{}: q {}, k {} and v {} must have the same shape [B, H, N, d] (self-attention)", op,
                shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  MIXGRAD_CHECK(q.numel() > 0, "{}: q has shape {}, expected B, H, N and d all >= 1", op, shape_str(q.shape()));
  detail::check_same_dtype(op, {q, k, v, dyn});
  detail::common_device(op, {q, k, v, dyn});
  detail::check_cuda_float(op, q);
  MIXGRAD_CHECK(chunk >= 1, "{}: chunk = {} must be >= 1 (query rows per materialised chunk)", op, chunk);
  MIXGRAD_CHECK(std::isfinite(scale), "{}: scale = {} must be finite (<= 0 means 1/sqrt(d))", op, scale);
  ComposePlan p;
  p.B = q.size(0), p.H = q.size(1), p.N = q.size(2), p.d = q.size(3);
  check_heads(op, p.H);
  check_dyn(op, dyn, p);
  check_ws(op, "ws_pre", ws_pre, q, p.H);
  check_ws(op, "ws_post", ws_post, q, p.H);
  check_mask(op, m, p, q.device());
  p.chunk = chunk;
  p.scale = scale > 0 ? scale : 1.0 / std::sqrt(double(p.d));
  return p;
}

// The chunk of query rows [t0, t0 + tc) with the key range its rows can see.
ComposeChunk chunk_at(const ComposePlan& p, int64_t t0, const int32_t* lengths) {
  ComposeChunk c;
  c.B = p.B, c.H = p.H, c.N = p.N, c.R = p.R, c.window = p.window, c.causal = p.causal, c.lengths = lengths;
  c.t0 = t0;
  c.tc = std::min(p.chunk, p.N - t0);
  int64_t lo = 0, hi = p.causal ? t0 + c.tc : p.N;
  if (p.window > 0) {
    lo = std::max<int64_t>(0, t0 - p.window + 1);
    if (!p.causal) hi = std::min(p.N, t0 + c.tc + p.window - 1);
  }
  c.s0 = lo, c.sc = hi - lo;
  return c;
}

std::vector<ComposeChunk> chunks_of(const ComposePlan& p) {
  const int32_t* len = p.lengths.defined() ? p.lengths.data<int32_t>() : nullptr;
  std::vector<ComposeChunk> out;
  for (int64_t t0 = 0; t0 < p.N; t0 += p.chunk) out.push_back(chunk_at(p, t0, len));
  return out;
}

int64_t max_chunk_points(const std::vector<ComposeChunk>& cs) {
  int64_t n = 0;
  for (const ComposeChunk& c : cs) n = std::max(n, c.tc * c.sc);
  return n;
}

// ---- device dispatch of the kernels on typed pointers -------------------------------------------------------------

template <class T>
struct Dev {
  Device device;
#ifdef MIXGRAD_WITH_CUDA
  cudaStream_t stream = nullptr;
#endif
  bool cpu() const { return device.is_cpu(); }

  // C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b] (kernels/cpu/gemm.h conventions).
  void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda, int64_t sa, const T* B,
            int64_t ldb, int64_t sb, T beta, T* C, int64_t ldc, int64_t sc, int64_t batch) const {
    if (cpu()) {
      kernels::cpu::gemm_strided_batched<T>(ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
      return;
    }
#ifdef MIXGRAD_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      kernels::cuda::gemm_strided_batched(ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch,
                                          allow_tf32(), stream);
#endif
  }
  void compose(T* out, const T* a, const T* dyn, const T* ws, const ComposeChunk& c, KStage s) const {
    if (cpu()) return kernels::cpu::compose_forward<T>(out, a, dyn, ws, c, s);
#ifdef MIXGRAD_WITH_CUDA
    if constexpr (std::is_same_v<T, float>) kernels::cuda::compose_forward(out, a, dyn, ws, c, s, stream);
#endif
  }
  void compose_bwd(T* da, T* ddyn, T* dws, const T* g, const T* a, const T* dyn, const T* ws, const ComposeChunk& c,
                   KStage s, void* work) const {
    if (cpu()) return kernels::cpu::compose_backward<T>(da, ddyn, dws, g, a, dyn, ws, c, s, work);
#ifdef MIXGRAD_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      kernels::cuda::compose_backward(da, ddyn, dws, g, a, dyn, ws, c, s, work, stream);
#endif
  }
  void softmax(T* p, const T* x, const ComposeChunk& c) const {
    if (cpu()) return kernels::cpu::masked_softmax_forward<T>(p, x, c);
#ifdef MIXGRAD_WITH_CUDA
    if constexpr (std::is_same_v<T, float>) kernels::cuda::masked_softmax_forward(p, x, c, stream);
#endif
  }
  void softmax_bwd(T* dx, const T* p, const T* dp, const ComposeChunk& c) const {
    if (cpu()) return kernels::cpu::masked_softmax_backward<T>(dx, p, dp, c);
#ifdef MIXGRAD_WITH_CUDA
    if constexpr (std::is_same_v<T, float>) kernels::cuda::masked_softmax_backward(dx, p, dp, c, stream);
#endif
  }
  size_t workspace_bytes(const ComposeChunk& c, bool has_ws) const {
    if (cpu()) return kernels::cpu::compose_backward_workspace_bytes(c, has_ws);
#ifdef MIXGRAD_WITH_CUDA
    return kernels::cuda::compose_backward_workspace_bytes(c, has_ws);
#else
    return 0;
#endif
  }
};

template <class T>
Dev<T> dev_of(const Tensor& t) {
  Dev<T> d{t.device()};
  if (!d.cpu()) {
#ifdef MIXGRAD_WITH_CUDA
    d.stream = detail::stream_of(t);
#else
    detail::no_cuda("dcmha");
#endif
  }
  return d;
}

template <class T>
const T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
template <class T>
T* mut(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Scratch tensor of at least `bytes` bytes on `like`'s device (undefined for 0).
Tensor workspace(size_t bytes, const Tensor& like) {
  if (bytes == 0) return Tensor();
  return empty({int64_t((bytes + 3) / 4)}, TensorOptions(DType::f32, like.device()));
}

// ---- the Compose op ---------------------------------------------------------------------------------------------

ComposeChunk whole(const ComposePlan& p) {
  ComposePlan q = p;
  q.chunk = p.N;
  return chunk_at(q, 0, p.lengths.defined() ? p.lengths.data<int32_t>() : nullptr);
}

struct ComposeGrads {
  Tensor da, ddyn, dws;
};

ComposeGrads compose_backward_impl(const Tensor& g, const Tensor& a, const Tensor& dyn, const Tensor& ws,
                                   ComposeStage stage, const ComposePlan& p) {
  ComposeGrads r{empty_like(a), zeros_like(dyn), ws.defined() ? zeros_like(ws) : Tensor()};
  ComposeChunk c = whole(p);
  c.s0 = 0, c.sc = p.N;  // the op's scores cover every key
  MIXGRAD_DISPATCH_FLOATING(a.dtype(), "compose_backward", [&] {
    using T = scalar_t;
    const Dev<T> d = dev_of<T>(a);
    Tensor work = workspace(d.workspace_bytes(c, ws.defined()), a);
    d.compose_bwd(mut<T>(r.da), mut<T>(r.ddyn), mut<T>(r.dws), ptr<T>(g), ptr<T>(a), ptr<T>(dyn), ptr<T>(ws), c,
                  kstage(stage), work.defined() ? work.raw_data() : nullptr);
  });
  return r;
}

// ---- DCMHA attention ----------------------------------------------------------------------------------------------

struct DcmhaInputs {
  Tensor q, k, v, dyn, ws_pre, ws_post;
};

template <class T>
void dcmha_forward_impl(const Tensor& o, const DcmhaInputs& in, const ComposePlan& p) {
  const Dev<T> d = dev_of<T>(in.q);
  const std::vector<ComposeChunk> cs = chunks_of(p);
  const int64_t per = p.B * p.H * max_chunk_points(cs), nd = p.N * p.d, bh = p.B * p.H;
  Tensor buf = empty({2, per}, TensorOptions(in.q.dtype(), in.q.device()));
  T *x = buf.data<T>(), *y = x + per;
  const T *q = ptr<T>(in.q), *k = ptr<T>(in.k), *v = ptr<T>(in.v), *dyn = ptr<T>(in.dyn);
  for (const ComposeChunk& c : cs) {
    const int64_t tcs = c.tc * c.sc;
    d.gemm(false, true, c.tc, c.sc, p.d, T(p.scale), q + c.t0 * p.d, p.d, nd, k + c.s0 * p.d, p.d, nd, T(0), x, c.sc,
           tcs, bh);
    d.compose(y, x, dyn, ptr<T>(in.ws_pre), c, KStage::pre);
    d.softmax(x, y, c);
    d.compose(y, x, dyn, ptr<T>(in.ws_post), c, KStage::post);
    d.gemm(false, false, c.tc, p.d, c.sc, T(1), y, c.sc, tcs, v + c.s0 * p.d, p.d, nd, T(0), mut<T>(o) + c.t0 * p.d,
           p.d, nd, bh);
  }
}

struct DcmhaGrads {
  Tensor dq, dk, dv, ddyn, dws_pre, dws_post;
};

template <class T>
void dcmha_backward_impl(DcmhaGrads& gr, const Tensor& dout, const DcmhaInputs& in, const ComposePlan& p) {
  const Dev<T> d = dev_of<T>(in.q);
  const std::vector<ComposeChunk> cs = chunks_of(p);
  const int64_t per = p.B * p.H * max_chunk_points(cs), nd = p.N * p.d, bh = p.B * p.H;
  Tensor buf = empty({4, per}, TensorOptions(in.q.dtype(), in.q.device()));
  T *b0 = buf.data<T>(), *b1 = b0 + per, *b2 = b1 + per, *b3 = b2 + per;
  size_t wbytes = 0;
  for (const ComposeChunk& c : cs)
    wbytes = std::max(wbytes, d.workspace_bytes(c, in.ws_pre.defined() || in.ws_post.defined()));
  Tensor work = workspace(wbytes, in.q);
  void* w = work.defined() ? work.raw_data() : nullptr;
  const T *q = ptr<T>(in.q), *k = ptr<T>(in.k), *v = ptr<T>(in.v), *dyn = ptr<T>(in.dyn), *dO = ptr<T>(dout);
  const T *wpre = ptr<T>(in.ws_pre), *wpost = ptr<T>(in.ws_post);
  T *dq = mut<T>(gr.dq), *dk = mut<T>(gr.dk), *dv = mut<T>(gr.dv), *ddyn = mut<T>(gr.ddyn);
  for (const ComposeChunk& c : cs) {
    const int64_t tcs = c.tc * c.sc, qo = c.t0 * p.d, ko = c.s0 * p.d;
    // Recompute: b0 = Lg, b1 = Lg', b2 = P, b1 = P''.
    d.gemm(false, true, c.tc, c.sc, p.d, T(p.scale), q + qo, p.d, nd, k + ko, p.d, nd, T(0), b0, c.sc, tcs, bh);
    d.compose(b1, b0, dyn, wpre, c, KStage::pre);
    d.softmax(b2, b1, c);
    d.compose(b1, b2, dyn, wpost, c, KStage::post);
    // b3 = dP'' = dO·vᵀ; dv += P''ᵀ·dO.
    d.gemm(false, true, c.tc, c.sc, p.d, T(1), dO + qo, p.d, nd, v + ko, p.d, nd, T(0), b3, c.sc, tcs, bh);
    d.gemm(true, false, c.sc, p.d, c.tc, T(1), b1, c.sc, tcs, dO + qo, p.d, nd, T(1), dv + ko, p.d, nd, bh);
    // b1 = dP (post-Compose backward, A = P); b3 = dLg'' = P ⊙ (dP − D) with D an explicit row sum of P·dP.
    d.compose_bwd(b1, ddyn, mut<T>(gr.dws_post), b3, b2, dyn, wpost, c, KStage::post, w);
    d.softmax_bwd(b3, b2, b1, c);
    // b1 = dLg (pre-Compose backward, A = Lg); dq = scale·dLg·k, dk += scale·dLgᵀ·q.
    d.compose_bwd(b1, ddyn, mut<T>(gr.dws_pre), b3, b0, dyn, wpre, c, KStage::pre, w);
    d.gemm(false, false, c.tc, p.d, c.sc, T(p.scale), b1, c.sc, tcs, k + ko, p.d, nd, T(0), dq + qo, p.d, nd, bh);
    d.gemm(true, false, c.sc, p.d, c.tc, T(p.scale), b1, c.sc, tcs, q + qo, p.d, nd, T(1), dk + ko, p.d, nd, bh);
  }
}

DcmhaGrads dcmha_backward(const Tensor& dout, const DcmhaInputs& in, const ComposePlan& p) {
  MIXGRAD_CHECK(dout.defined() && dout.shape() == in.q.shape() && dout.dtype() == in.q.dtype(),
                "dcmha_attention backward: dO must be {} {}, got {}", in.q.dtype(), shape_str(in.q.shape()),
                dout.defined() ? fmt::format("{} {}", dout.dtype(), shape_str(dout.shape())) : "an undefined tensor");
  detail::common_device("dcmha_attention backward", {dout, in.q});
  DcmhaGrads g{zeros_like(in.q),
               zeros_like(in.k),
               zeros_like(in.v),
               zeros_like(in.dyn),
               in.ws_pre.defined() ? zeros_like(in.ws_pre) : Tensor(),
               in.ws_post.defined() ? zeros_like(in.ws_post) : Tensor()};
  MIXGRAD_DISPATCH_FLOATING(in.q.dtype(), "dcmha_attention", [&] { dcmha_backward_impl<scalar_t>(g, dout, in, p); });
  return g;
}

}  // namespace

Tensor compose(const Tensor& a, const Tensor& dyn, const Tensor& ws, ComposeStage stage, const DcmhaMask& mask) {
  ComposePlan p = plan_compose("compose", a, dyn, ws, mask);
  Tensor out = empty_like(a);
  MIXGRAD_DISPATCH_FLOATING(a.dtype(), "compose", [&] {
    using T = scalar_t;
    ComposeChunk c = whole(p);
    c.s0 = 0, c.sc = p.N;
    dev_of<T>(a).compose(mut<T>(out), ptr<T>(a), ptr<T>(dyn), ptr<T>(ws), c, kstage(stage));
  });
  if (autograd::needs_grad({a, dyn, ws})) {
    autograd::record("compose", {a, dyn, ws}, {out},
                     [a = a.detach(), dyn = dyn.detach(), ws = ws.defined() ? ws.detach() : Tensor(), stage,
                      p = std::move(p)](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       MIXGRAD_CHECK(g[0].shape() == a.shape(), "compose backward: gradient {} expected {}",
                                     shape_str(g[0].shape()), shape_str(a.shape()));
                       ComposeGrads r = compose_backward_impl(g[0], a, dyn, ws, stage, p);
                       return {r.da, r.ddyn, r.dws};
                     });
  }
  return out;
}

Tensor dcmha_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dyn, const Tensor& ws_pre,
                       const Tensor& ws_post, const DcmhaMask& mask, int64_t chunk, double scale) {
  ComposePlan p = plan_dcmha("dcmha_attention", q, k, v, dyn, ws_pre, ws_post, mask, chunk, scale);
  DcmhaInputs in{q.detach(),
                 k.detach(),
                 v.detach(),
                 dyn.detach(),
                 ws_pre.defined() ? ws_pre.detach() : Tensor(),
                 ws_post.defined() ? ws_post.detach() : Tensor()};
  Tensor o = empty_like(q);
  MIXGRAD_DISPATCH_FLOATING(q.dtype(), "dcmha_attention", [&] { dcmha_forward_impl<scalar_t>(o, in, p); });
  if (autograd::needs_grad({q, k, v, dyn, ws_pre, ws_post})) {
    autograd::record("dcmha_attention", {q, k, v, dyn, ws_pre, ws_post}, {o},
                     [in = std::move(in), p = std::move(p)](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       DcmhaGrads r = dcmha_backward(g[0], in, p);
                       return {r.dq, r.dk, r.dv, r.ddyn, r.dws_pre, r.dws_post};
                     });
  }
  return o;
}

}  // namespace mixgrad
