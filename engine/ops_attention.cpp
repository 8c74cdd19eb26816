// scaled_dot_product_attention: the composite path (matmul, where, softmax, dropout, matmul), each piece an
// existing differentiable op, so the backward comes from theirs. A fused flash-style kernel replaces the body of
// attention_composite() later; the validation and the public signature stay.
#include <cmath>
#include <limits>

#include "engine/attention.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mixgrad {
namespace {

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

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                    bool causal, double dropout_p, double scale) {
  constexpr const char* op = "scaled_dot_product_attention";
  MIXGRAD_CHECK(q.defined() && k.defined() && v.defined(), "{}: q, k and v must be defined", op);
  MIXGRAD_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
                "{}: expected q [B, H, T, d] and k, v [B, H, Tk, d], got q {}, k {}, v {}", op, shape_str(q.shape()),
                shape_str(k.shape()), shape_str(v.shape()));
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), d = q.size(3), tk = k.size(2);
  MIXGRAD_CHECK(k.size(0) == b && k.size(1) == h && k.size(3) == d && v.shape() == k.shape(),
                "{}: expected k and v of shape [{}, {}, Tk, {}] (matching q {}), got k {}, v {}", op, b, h, d,
                shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  detail::common_device(op, {q, k, v, attn_mask});
  detail::check_same_dtype(op, {q, k, v});
  MIXGRAD_CHECK(is_floating(q.dtype()), "{}: expected floating-point q, k, v, got {}", op, q.dtype());
  if (q.device().is_cuda()) detail::check_cuda_float(op, q);
  MIXGRAD_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, "{}: dropout_p must be in [0, 1), got {}", op, dropout_p);
  if (attn_mask.defined()) {
    MIXGRAD_CHECK(attn_mask.dtype() == DType::u8, "{}: attn_mask must be uint8 (nonzero = may attend), got {}", op,
                  attn_mask.dtype());
    const Shape full_shape{b, h, t, tk};
    const Shape bs = broadcast_shapes(attn_mask.shape(), full_shape, op);
    MIXGRAD_CHECK(bs == full_shape, "{}: attn_mask {} does not broadcast to the scores' shape {}", op,
                  shape_str(attn_mask.shape()), shape_str(full_shape));
  }
  const double s = scale > 0.0 ? scale : 1.0 / std::sqrt(double(d));
  return attention_composite(q, k, v, attn_mask, causal, dropout_p, s);
}

}  // namespace mixgrad
