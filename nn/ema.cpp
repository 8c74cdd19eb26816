// MultiHeadEMA: parameter registration and MEGA's initialisation (specs/lra.md §6.2).
#include "nn/ema.h"

#include <algorithm>
#include <vector>

#include "engine/error.h"
#include "nn/mixer.h"
#include "nn/init.h"

namespace mixgrad::nn {

MultiHeadEMA::MultiHeadEMA(int64_t d, MultiHeadEMAOptions opt) : Layer("MultiHeadEMA"), embed_dim(d), options(opt) {
  MIXGRAD_CHECK(d > 0, "MultiHeadEMA: embed_dim must be positive, got {}", d);
  MIXGRAD_CHECK(opt.ndim >= 1 && opt.ndim <= kEmaMaxNdim, "MultiHeadEMA: ndim = {}, expected 1 <= ndim <= {}", opt.ndim,
                kEmaMaxNdim);
  MIXGRAD_CHECK(opt.truncation >= 0, "MultiHeadEMA: truncation = {}, expected >= 0 (0 = none)", opt.truncation);
  const int64_t rows = opt.bidirectional ? 2 * d : d, h = opt.ndim;
  delta = register_parameter("delta", empty({rows, h}));
  alpha = register_parameter("alpha", empty({rows, h}));
  beta = register_parameter("beta", empty({rows, h}));
  gamma = register_parameter("gamma", empty({rows, h}));
  omega = register_parameter("omega", empty({d}));
  init::normal_(delta, 0.0, 0.2);
  init::normal_(alpha, 0.0, 0.2);
  init::normal_(beta, 0.0, 0.02);
  float* b = beta.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t n = 0; n < h; ++n) b[r * h + n] += n % 2 == 0 ? 1.f : -1.f;
  init::normal_(gamma, 0.0, 1.0);
  init::normal_(omega, 0.0, 1.0);
}

Tensor MultiHeadEMA::forward(const Tensor& x, const Tensor& lengths) {
  return multihead_ema(x, delta, alpha, beta, gamma, omega, lengths,
                       {options.bidirectional, options.truncation, options.path});
}

std::optional<double> MultiHeadEMA::own_forward_flops(int64_t n) const {
  const EmaOptions op{options.bidirectional, options.truncation, options.path};
  const double dirs = options.bidirectional ? 2.0 : 1.0, d = double(embed_dim), len = double(n);
  if (ema_resolve_path(n, op) == EmaPath::scan) return dirs * 4.0 * len * d * double(options.ndim);
  const int64_t k = options.truncation == 0 ? n : std::min(options.truncation, n);
  return dirs * 2.0 * d * visible_pairs(n, /*causal=*/true, k);  // output t sums its last min(k, t + 1) inputs
}

Tensor MultiHeadEMA::kernel(int64_t k) const { return ema_kernel(delta, alpha, beta, gamma, k); }

}  // namespace mixgrad::nn
