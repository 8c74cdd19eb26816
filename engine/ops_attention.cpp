// scaled_dot_product_attention: validation, backend choice, and the two paths — fused (the flash-style kernels of
// kernels/{cpu,cuda}/flash_attention.h, one tape node whose backward recomputes P from Q, K and LSE) and composite
// (matmul, where, softmax, dropout, matmul, each an existing differentiable op).
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "engine/attention.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "engine/sequence.h"
#include "kernels/cpu/flash_attention.h"
#include "kernels/flash_params.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/flash_attention.h"
#endif

namespace mixgrad {
namespace {

constexpr const char* kOp = "scaled_dot_product_attention";

thread_local AttentionBackend t_backend = AttentionBackend::automatic;

// uint8 [T, Tk], 1 where key j is visible to query i: j <= i + (Tk - T) (bottom-right aligned, PyTorch/flash).
Tensor causal_mask(int64_t t, int64_t tk, Device device) {
  Tensor m = empty({t, tk}, TensorOptions(DType::u8));
  uint8_t* p = m.data<uint8_t>();
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j < tk; ++j) p[i * tk + j] = j <= i + (tk - t) ? 1 : 0;
  return m.to(device);
}

Tensor attention_composite(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask, bool causal,
                           double dropout_p, double scale) {
  // scores [B, H, T, Tk]
  Tensor scores = mul_scalar(matmul(q, transpose(k, -2, -1)), scale);
  const Tensor neg_inf = full({}, -std::numeric_limits<double>::infinity(), TensorOptions(q.dtype(), q.device()));
  if (attn_mask.defined()) scores = where(attn_mask, scores, neg_inf);
  if (causal) scores = where(causal_mask(q.size(-2), k.size(-2), q.device()), scores, neg_inf);
  // A row with every key masked is all -inf: the softmax kernels return 0 for it (and gradient 0), so the output
  // row is 0 instead of NaN.
  Tensor probs = softmax(scores, -1);
  probs = dropout(probs, dropout_p, dropout_p > 0.0);
  return matmul(probs, v);
}

// Key lengths [B] when attn_mask is a key-padding mask the kernels can take: shape [Bm, 1, 1, Tkm] after left
// padding to 4 dims (Bm ∈ {1, B}, Tkm ∈ {1, Tk}) with the nonzeros of every row forming a prefix. nullopt
// otherwise. Reads the mask on the host (a device-to-host copy for CUDA masks).
std::optional<std::vector<int32_t>> key_padding_lengths(const Tensor& mask, int64_t b, int64_t tk) {
  Shape ms = mask.shape();
  while (ms.size() < 4) ms.insert(ms.begin(), 1);
  if (ms[1] != 1 || ms[2] != 1) return std::nullopt;
  const int64_t rows = ms[0], width = ms[3];
  const Tensor host = mask.to(kCPU);
  const uint8_t* m = host.data<uint8_t>();
  std::vector<int32_t> len(size_t(b), 0);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = m + r * width;
    int64_t n = 0;
    while (n < width && row[n] != 0) ++n;
    for (int64_t j = n; j < width; ++j)
      if (row[j] != 0) return std::nullopt;  // a hole: not a prefix
    const int64_t keys = width == 1 ? (n == 1 ? tk : 0) : n;
    if (rows == 1) {
      std::fill(len.begin(), len.end(), int32_t(keys));
    } else {
      len[size_t(r)] = int32_t(keys);
    }
  }
  return len;
}

// Sizes of one attention call: q [B, H, T, d], k and v [B, H, Tk, d].
struct AttentionSizes {
  int64_t b, h, t, tk, d;
};

// Why the fused kernels cannot run a call of these sizes, dtype and device (empty string: they can).
std::string fused_obstacle(const AttentionSizes& s, DType dtype, Device device, bool allow_f64) {
  if (s.b == 0 || s.h == 0 || s.t == 0 || s.tk == 0 || s.d == 0) return "an empty dimension";
  if (dtype == DType::f64 && !allow_f64) return "float64 (the kernels keep LSE in float32)";
  if (dtype != DType::f32 && dtype != DType::f64) return fmt::format("dtype {}", dtype);
#ifdef MIXGRAD_WITH_CUDA
  if (device.is_cuda() && s.d > kernels::cuda::kFlashMaxHeadDim)
    return fmt::format("head dim {} > {} on CUDA", s.d, kernels::cuda::kFlashMaxHeadDim);
#else
  (void)device;
#endif
  if (s.t > std::numeric_limits<int32_t>::max() || s.tk > std::numeric_limits<int32_t>::max())
    return "T or Tk >= 2^31";
  return "";
}

// The kernels' key lengths for an attention mask: undefined when there is no mask or every key is visible, an int32
// [B] tensor on `device` for a prefix key-padding mask; nullopt when the mask is not a key-padding mask (the
// obstacle is then written to *why).
std::optional<Tensor> kv_lengths_of_mask(const Tensor& attn_mask, const AttentionSizes& s, Device device,
                                         std::string* why) {
  if (!attn_mask.defined()) return Tensor();
  std::optional<std::vector<int32_t>> len = key_padding_lengths(attn_mask, s.b, s.tk);
  if (!len) {
    *why = fmt::format("attn_mask {} is not a prefix key-padding mask [B, 1, 1, Tk]", shape_str(attn_mask.shape()));
    return std::nullopt;
  }
  bool all_full = true;
  for (int32_t n : *len) all_full = all_full && n >= s.tk;
  if (all_full) return Tensor();
  return from_vector<int32_t>(*len, {s.b}, TensorOptions(DType::i32, device));
}

// Checks an optional attention mask: uint8, broadcastable to the scores' shape [B, H, T, Tk].
void check_attn_mask(const char* op, const Tensor& attn_mask, const AttentionSizes& s) {
  if (!attn_mask.defined()) return;
  MIXGRAD_CHECK(attn_mask.dtype() == DType::u8, "{}: attn_mask must be uint8 (nonzero = may attend), got {}", op,
                attn_mask.dtype());
  const Shape full_shape{s.b, s.h, s.t, s.tk};
  const Shape bs = broadcast_shapes(attn_mask.shape(), full_shape, op);
  MIXGRAD_CHECK(bs == full_shape, "{}: attn_mask {} does not broadcast to the scores' shape {}", op,
                shape_str(attn_mask.shape()), shape_str(full_shape));
}

// Causal flag, dropout fields and key lengths (kv_len: int32 [B] on the inputs' device, or undefined) of p. The
// caller keeps kv_len alive for as long as p is used (the backward captures it).
void set_fused_options(kernels::FlashParams& p, const Tensor& kv_len, bool causal, double dropout_p) {
  p.causal = causal;
  if (dropout_p > 0.0) {
    p.dropout_p = float(dropout_p);
    p.seed = generator_state().seed;
    p.offset = next_random_stream();
  }
  p.kv_len = kv_len.defined() ? kv_len.data<int32_t>() : nullptr;
}

// Whether the kernels' float scale loses nothing for this dtype: always for float32 (rounding the scale to float
// costs less than the float32 products do), for float64 only when the scale is a float.
bool kernel_scale_ok(DType dtype, double scale) { return dtype == DType::f32 || double(float(scale)) == scale; }

// Workspace tensor of at least `bytes` bytes, 8-byte (CPU) / 16-byte (CUDA) aligned: allocations are 64-byte aligned.
Tensor workspace(size_t bytes, Device device) {
  const int64_t words = int64_t((bytes + 7) / 8);
  return empty({std::max<int64_t>(words, 1)}, TensorOptions(DType::f64, device));
}

void run_fused_forward(Tensor& o, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const kernels::FlashParams& p) {
  if (q.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(q.dtype(), kOp, [&] {
      kernels::cpu::flash_attention_forward(o.data<scalar_t>(), lse.data<float>(), q.data<scalar_t>(),
                                            k.data<scalar_t>(), v.data<scalar_t>(), p);
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    kernels::cuda::flash_attention_forward(o.data<float>(), lse.data<float>(), q.data<float>(), k.data<float>(),
                                           v.data<float>(), p, detail::stream_of(q));
#else
    detail::no_cuda(kOp);
#endif
  }
}

void run_fused_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& o, const Tensor& lse, const kernels::FlashParams& p) {
  if (q.device().is_cpu()) {
    Tensor ws = workspace(kernels::cpu::flash_attention_backward_workspace_bytes(p), q.device());
    MIXGRAD_DISPATCH_FLOATING(q.dtype(), kOp, [&] {
      kernels::cpu::flash_attention_backward(dq.data<scalar_t>(), dk.data<scalar_t>(), dv.data<scalar_t>(),
                                             dout.data<scalar_t>(), q.data<scalar_t>(), k.data<scalar_t>(),
                                             v.data<scalar_t>(), o.data<scalar_t>(), lse.data<float>(), p,
                                             ws.raw_data());
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    Tensor ws = workspace(kernels::cuda::flash_attention_backward_workspace_bytes(p), q.device());
    kernels::cuda::flash_attention_backward(dq.data<float>(), dk.data<float>(), dv.data<float>(), dout.data<float>(),
                                            q.data<float>(), k.data<float>(), v.data<float>(), o.data<float>(),
                                            lse.data<float>(), p, ws.raw_data(), detail::stream_of(q));
#else
    detail::no_cuda(kOp);
#endif
  }
}

Tensor attention_fused(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& kv_len_t, bool causal,
                       double dropout_p, double scale) {
  const int64_t b = q_in.size(0), h = q_in.size(1), t = q_in.size(2), d = q_in.size(3), tk = k_in.size(2);
  const Device device = q_in.device();
  const Tensor k = k_in.detach(), v = v_in.detach();
  // Tensors are contiguous [B, H, rows, d] today; strided views would set p.q / p.k / p.v from their strides.
  kernels::FlashParams p = kernels::flash_params_contiguous(b, h, t, tk, d);
  // The kernels take a float scale. When rounding it would cost float64 accuracy, Q is scaled exactly instead
  // (kernel scale 1) and dQ is scaled back in the backward; dK = dSᵀ (scale·Q) needs nothing.
  Tensor q = q_in.detach();
  double dq_scale = 1.0;
  if (kernel_scale_ok(q.dtype(), scale)) {
    p.scale = float(scale);
  } else {
    NoGradGuard no_grad;
    q = mul_scalar(q, scale);
    p.scale = 1.0f;
    dq_scale = scale;
  }
  set_fused_options(p, kv_len_t, causal, dropout_p);
  p.precision = matmul_precision();  // CUDA: tensor cores at tf32 / bf16 (the CPU kernels ignore it)
  Tensor o = empty({b, h, t, d}, TensorOptions(q.dtype(), device));
  Tensor lse = empty({b, h, t}, TensorOptions(DType::f32, device));
  run_fused_forward(o, lse, q, k, v, p);

  if (autograd::needs_grad({q_in, k_in, v_in})) {
    const bool gq = q_in.requires_grad(), gk = k_in.requires_grad(), gv = v_in.requires_grad();
    autograd::record("flash_attention", {q_in, k_in, v_in}, {o},
                     [q, k, v, o = o.detach(), lse, kv_len_t, p, dq_scale, gq, gk,
                      gv](const std::vector<Tensor>& g) mutable -> std::vector<Tensor> {
                       MIXGRAD_CHECK(g[0].shape() == o.shape() && g[0].dtype() == o.dtype(),
                                     "{}: backward got a gradient {} {}, expected {} {}", kOp, g[0].dtype(),
                                     shape_str(g[0].shape()), o.dtype(), shape_str(o.shape()));
                       p.kv_len = kv_len_t.defined() ? kv_len_t.data<int32_t>() : nullptr;
                       Tensor dq = empty_like(q), dk = empty_like(k), dv = empty_like(v);
                       run_fused_backward(dq, dk, dv, g[0], q, k, v, o, lse, p);
                       if (dq_scale != 1.0) dq = mul_scalar(dq, dq_scale);
                       return {gq ? dq : Tensor(), gk ? dk : Tensor(), gv ? dv : Tensor()};
                     });
  }
  return o;
}

// The fused CPU path of packed_qkv_attention: q, k, v read from qkv [B, T, 3·H·d] and the output written as
// [B, T, H·d] through the kernels' strides; the backward writes dQ, dK, dV straight into one dqkv tensor (the
// kernels fully write their outputs, so it needs no zeroing). Needs kernel_scale_ok (the caller checks).
Tensor packed_attention_fused_cpu(const Tensor& qkv_in, const AttentionSizes& s, const Tensor& kv_len_t, bool causal,
                                  double dropout_p, double scale) {
  const int64_t dim = s.h * s.d;
  const Tensor qkv = qkv_in.detach();
  kernels::FlashParams p;
  p.B = s.b, p.H = s.h, p.T = s.t, p.Tk = s.tk, p.d = s.d;
  p.q = p.k = p.v = p.dq = p.dk = p.dv = kernels::FlashStrides{s.t * 3 * dim, s.d, 3 * dim};
  p.o = p.dout = kernels::FlashStrides{s.t * dim, s.d, dim};
  p.scale = float(scale);
  set_fused_options(p, kv_len_t, causal, dropout_p);
  Tensor o = empty({s.b, s.t, dim}, TensorOptions(qkv.dtype(), qkv.device()));
  Tensor lse = empty({s.b, s.h, s.t}, TensorOptions(DType::f32, qkv.device()));
  MIXGRAD_DISPATCH_FLOATING(qkv.dtype(), kOp, [&] {
    const scalar_t* base = qkv.data<scalar_t>();
    kernels::cpu::flash_attention_forward(o.data<scalar_t>(), lse.data<float>(), base, base + dim, base + 2 * dim, p);
  });
  if (autograd::needs_grad({qkv_in})) {
    autograd::record("flash_attention_packed", {qkv_in}, {o},
                     [qkv, o = o.detach(), lse, kv_len_t, p](const std::vector<Tensor>& g) mutable
                     -> std::vector<Tensor> {
                       MIXGRAD_CHECK(g[0].shape() == o.shape() && g[0].dtype() == o.dtype(),
                                     "{}: backward got a gradient {} {}, expected {} {}", kOp, g[0].dtype(),
                                     shape_str(g[0].shape()), o.dtype(), shape_str(o.shape()));
                       p.kv_len = kv_len_t.defined() ? kv_len_t.data<int32_t>() : nullptr;
                       const int64_t dim = p.H * p.d;
                       Tensor dqkv = empty_like(qkv);
                       Tensor ws = workspace(kernels::cpu::flash_attention_backward_workspace_bytes(p), qkv.device());
                       MIXGRAD_DISPATCH_FLOATING(qkv.dtype(), kOp, [&] {
                         const scalar_t* base = qkv.data<scalar_t>();
                         scalar_t* dbase = dqkv.data<scalar_t>();
                         kernels::cpu::flash_attention_backward(dbase, dbase + dim, dbase + 2 * dim,
                                                                g[0].data<scalar_t>(), base, base + dim,
                                                                base + 2 * dim, o.data<scalar_t>(), lse.data<float>(),
                                                                p, ws.raw_data());
                       });
                       return {dqkv};
                     });
  }
  return o;
}

}  // namespace

void set_attention_backend(AttentionBackend backend) { t_backend = backend; }
AttentionBackend attention_backend() { return t_backend; }

const char* attention_backend_name(AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::automatic: return "automatic";
    case AttentionBackend::fused: return "fused";
    case AttentionBackend::composite: return "composite";
  }
  return "unknown";
}

namespace {

// Key padding of one call: a uint8 attn_mask broadcastable to the scores (the PyTorch form; a prefix key-padding
// mask is read on the host to become the kernels' lengths), or per-sample key lengths on the inputs' device.
struct Masking {
  Tensor attn_mask, lengths;
  bool by_lengths = false;
};

// Checks q [B, H, T, d], k and v [B, H, Tk, d], their devices and dtypes, the dropout rate and the masking.
AttentionSizes check_attention_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                      const Masking& m, double dropout_p) {
  MIXGRAD_CHECK(q.defined() && k.defined() && v.defined(), "{}: q, k and v must be defined", op);
  MIXGRAD_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
                "{}: expected q [B, H, T, d] and k, v [B, H, Tk, d], got q {}, k {}, v {}", op, shape_str(q.shape()),
                shape_str(k.shape()), shape_str(v.shape()));
  const AttentionSizes s{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
  MIXGRAD_CHECK(k.size(0) == s.b && k.size(1) == s.h && k.size(3) == s.d && v.shape() == k.shape(),
                "{}: expected k and v of shape [{}, {}, Tk, {}] (matching q {}), got k {}, v {}", op, s.b, s.h, s.d,
                shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  detail::common_device(op, {q, k, v, m.attn_mask});
  detail::check_same_dtype(op, {q, k, v});
  MIXGRAD_CHECK(is_floating(q.dtype()), "{}: expected floating-point q, k, v, got {}", op, q.dtype());
  if (q.device().is_cuda()) detail::check_cuda_float(op, q);
  MIXGRAD_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, "{}: dropout_p must be in [0, 1), got {}", op, dropout_p);
  check_attn_mask(op, m.attn_mask, s);
  if (m.by_lengths && m.lengths.defined()) check_lengths(op, m.lengths, s.b, q.device(), 0, s.tk);
  return s;
}

// The kernels' key lengths for this masking (undefined: every key visible), or nullopt with the reason in *why.
std::optional<Tensor> fused_kv_lengths(const Masking& m, const AttentionSizes& s, Device device, std::string* why) {
  if (m.by_lengths) return m.lengths;
  return kv_lengths_of_mask(m.attn_mask, s, device, why);
}

Tensor attention_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Masking& m, bool causal,
                      double dropout_p, double scale, AttentionBackend backend) {
  const AttentionSizes sizes = check_attention_inputs(kOp, q, k, v, m, dropout_p);
  const double s = scale > 0.0 ? scale : 1.0 / std::sqrt(double(sizes.d));
  if (backend != AttentionBackend::composite) {
    std::string why = fused_obstacle(sizes, q.dtype(), q.device(), backend == AttentionBackend::fused);
    const std::optional<Tensor> kv_len = why.empty() ? fused_kv_lengths(m, sizes, q.device(), &why) : std::nullopt;
    if (kv_len) return attention_fused(q, k, v, *kv_len, causal, dropout_p, s);
    MIXGRAD_CHECK(backend != AttentionBackend::fused,
                  "{}: backend 'fused' requested but the fused kernels cannot take this call: {} (q {}, k {}, {})",
                  kOp, why, shape_str(q.shape()), shape_str(k.shape()), q.device().str());
  }
  Tensor mask = m.attn_mask;
  if (m.by_lengths && m.lengths.defined())
    mask = sequence_mask(m.lengths, sizes.tk).reshape({sizes.b, 1, 1, sizes.tk});
  return attention_composite(q, k, v, mask, causal, dropout_p, s);
}

Tensor packed_attention_impl(const Tensor& qkv, int64_t num_heads, const Masking& m, bool causal, double dropout_p,
                             double scale) {
  constexpr const char* op = "packed_qkv_attention";
  MIXGRAD_CHECK(qkv.defined() && qkv.dim() == 3, "{}: expected qkv [B, T, 3·H·d], got {}", op,
                qkv.defined() ? shape_str(qkv.shape()) : std::string("an undefined tensor"));
  MIXGRAD_CHECK(num_heads > 0 && qkv.size(2) % (3 * num_heads) == 0,
                "{}: the last dimension of qkv {} must be 3·H·d with H = num_heads = {}", op, shape_str(qkv.shape()),
                num_heads);
  const int64_t b = qkv.size(0), t = qkv.size(1), d = qkv.size(2) / (3 * num_heads), dim = num_heads * d;
  const AttentionSizes sizes{b, num_heads, t, t, d};
  const AttentionBackend backend = t_backend;
  if (backend != AttentionBackend::composite && qkv.device().is_cpu() && is_floating(qkv.dtype())) {
    detail::common_device(op, {qkv, m.attn_mask});
    check_attn_mask(op, m.attn_mask, sizes);
    if (m.by_lengths && m.lengths.defined()) check_lengths(op, m.lengths, b, qkv.device(), 0, t);
    MIXGRAD_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, "{}: dropout_p must be in [0, 1), got {}", op, dropout_p);
    const double s = scale > 0.0 ? scale : 1.0 / std::sqrt(double(d));
    std::string why = fused_obstacle(sizes, qkv.dtype(), qkv.device(), backend == AttentionBackend::fused);
    if (kernel_scale_ok(qkv.dtype(), s) && why.empty()) {
      const std::optional<Tensor> kv_len = fused_kv_lengths(m, sizes, qkv.device(), &why);
      if (kv_len) return packed_attention_fused_cpu(qkv, sizes, *kv_len, causal, dropout_p, s);
    }
  }
  // Every other case: the unpacked call (which validates the rest and chooses its own path).
  // [B, T, 3·H·d] -> [B, T, 3, H, d] -> [3, B, H, T, d]; the leading split is a free view.
  const Tensor hh = permute(qkv.reshape({b, t, 3, num_heads, d}), {2, 0, 3, 1, 4});
  const Shape head_shape{b, num_heads, t, d};
  const Tensor o = attention_impl(hh.slice0(0, 1).reshape(head_shape), hh.slice0(1, 1).reshape(head_shape),
                                  hh.slice0(2, 1).reshape(head_shape), m, causal, dropout_p, scale, backend);
  // [B, H, T, d] -> [B, T, H, d] -> [B, T, H·d].
  return permute(o, {0, 2, 1, 3}).reshape({b, t, dim});
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                    bool causal, double dropout_p, double scale) {
  return attention_impl(q, k, v, Masking{attn_mask, Tensor(), false}, causal, dropout_p, scale, t_backend);
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                    bool causal, double dropout_p, double scale, AttentionBackend backend) {
  return attention_impl(q, k, v, Masking{attn_mask, Tensor(), false}, causal, dropout_p, scale, backend);
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const KeyPadding& padding,
                                    bool causal, double dropout_p, double scale) {
  return attention_impl(q, k, v, Masking{Tensor(), padding.lengths, true}, causal, dropout_p, scale, t_backend);
}

Tensor packed_qkv_attention(const Tensor& qkv, int64_t num_heads, const Tensor& attn_mask, bool causal,
                            double dropout_p, double scale) {
  return packed_attention_impl(qkv, num_heads, Masking{attn_mask, Tensor(), false}, causal, dropout_p, scale);
}

Tensor packed_qkv_attention(const Tensor& qkv, int64_t num_heads, const KeyPadding& padding, bool causal,
                            double dropout_p, double scale) {
  return packed_attention_impl(qkv, num_heads, Masking{Tensor(), padding.lengths, true}, causal, dropout_p, scale);
}

}  // namespace mixgrad
