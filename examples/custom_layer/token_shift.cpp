// The token_shift op: validation, forward, and a tape node whose backward uses the tensors saved by the forward.
#include "token_shift.h"

#include <cstdint>
#include <vector>

namespace custom_layer {

using mixgrad::Tensor;

namespace {

// Sizes of a validated call.
struct Dims {
  int64_t B = 0, N = 0, D = 0;
};

Dims check_inputs(const Tensor& x, const Tensor& wf, const Tensor& wb) {
  MIXGRAD_CHECK(x.defined() && wf.defined() && wb.defined(), "token_shift: every input must be defined");
  MIXGRAD_CHECK(x.dim() == 3, "token_shift: expected x [B, N, D], got {}", mixgrad::shape_str(x.shape()));
  const Dims d{x.size(0), x.size(1), x.size(2)};
  for (const Tensor* w : {&wf, &wb})
    MIXGRAD_CHECK(w->shape() == mixgrad::Shape{d.D}, "token_shift: gate logits must be [{}] for x {}, got {}", d.D,
                  mixgrad::shape_str(x.shape()), mixgrad::shape_str(w->shape()));
  MIXGRAD_CHECK(wf.dtype() == x.dtype() && wb.dtype() == x.dtype(),
                "token_shift: x, wf and wb must share a dtype, got {}, {} and {}", x.dtype(), wf.dtype(), wb.dtype());
  MIXGRAD_CHECK(x.device().is_cpu() && wf.device().is_cpu() && wb.device().is_cpu(),
                "token_shift: this example op runs on CPU tensors only, got x on {}", x.device());
  return d;
}

// y = x + tf ⊙ x[n-1] + tb ⊙ x[n+1] for gates tf = tanh(wf), tb = tanh(wb).
template <class T>
void forward_cpu(const Dims& d, const T* x, const T* tf, const T* tb, T* y) {
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t n = 0; n < d.N; ++n) {
      const T* row = x + (b * d.N + n) * d.D;
      T* out = y + (b * d.N + n) * d.D;
      for (int64_t c = 0; c < d.D; ++c) out[c] = row[c];
      if (n > 0)
        for (int64_t c = 0; c < d.D; ++c) out[c] += tf[c] * row[c - d.D];
      if (n + 1 < d.N)
        for (int64_t c = 0; c < d.D; ++c) out[c] += tb[c] * row[c + d.D];
    }
}

// dx[n] = dy[n] + tf ⊙ dy[n+1] + tb ⊙ dy[n-1]; dwf = (1 − tf²) ⊙ Σ dy[n] ⊙ x[n-1]; dwb = (1 − tb²) ⊙ Σ dy[n] ⊙ x[n+1].
template <class T>
void backward_cpu(const Dims& d, const T* dy, const T* x, const T* tf, const T* tb, T* dx, T* dwf, T* dwb) {
  std::vector<T> sf(size_t(d.D), T(0)), sb(size_t(d.D), T(0));
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t n = 0; n < d.N; ++n) {
      const int64_t at = (b * d.N + n) * d.D;
      for (int64_t c = 0; c < d.D; ++c) dx[at + c] = dy[at + c];
      if (n + 1 < d.N)
        for (int64_t c = 0; c < d.D; ++c) {
          dx[at + c] += tf[c] * dy[at + d.D + c];
          sb[size_t(c)] += dy[at + c] * x[at + d.D + c];
        }
      if (n > 0)
        for (int64_t c = 0; c < d.D; ++c) {
          dx[at + c] += tb[c] * dy[at - d.D + c];
          sf[size_t(c)] += dy[at + c] * x[at - d.D + c];
        }
    }
  for (int64_t c = 0; c < d.D; ++c) {
    dwf[c] = (T(1) - tf[c] * tf[c]) * sf[size_t(c)];
    dwb[c] = (T(1) - tb[c] * tb[c]) * sb[size_t(c)];
  }
}

}  // namespace

Tensor token_shift(const Tensor& x, const Tensor& wf, const Tensor& wb) {
  const Dims d = check_inputs(x, wf, wb);
  Tensor tf, tb;
  {
    mixgrad::NoGradGuard ng;  // the gates' own derivative is applied by hand in the backward
    tf = mixgrad::tanh(wf);
    tb = mixgrad::tanh(wb);
  }
  Tensor y = mixgrad::empty_like(x);
  MIXGRAD_DISPATCH_FLOATING(x.dtype(), "token_shift", [&] {
    forward_cpu<scalar_t>(d, x.data<scalar_t>(), tf.data<scalar_t>(), tb.data<scalar_t>(), y.data<scalar_t>());
  });
  if (mixgrad::autograd::needs_grad({x, wf, wb}))
    // Saved for the backward: the input and both gates (detached, so the node never owns an autograd identity).
    mixgrad::autograd::record("token_shift", {x, wf, wb}, {y},
                              [d, x = x.detach(), tf, tb](const std::vector<Tensor>& dy) -> std::vector<Tensor> {
                                Tensor dx = mixgrad::empty_like(x), dwf = mixgrad::empty_like(tf),
                                       dwb = mixgrad::empty_like(tb);
                                MIXGRAD_DISPATCH_FLOATING(x.dtype(), "token_shift backward", [&] {
                                  backward_cpu<scalar_t>(d, dy[0].data<scalar_t>(), x.data<scalar_t>(),
                                                         tf.data<scalar_t>(), tb.data<scalar_t>(), dx.data<scalar_t>(),
                                                         dwf.data<scalar_t>(), dwb.data<scalar_t>());
                                });
                                return {dx, dwf, dwb};  // one gradient per input, each of the input's shape
                              });
  return y;
}

}  // namespace custom_layer
