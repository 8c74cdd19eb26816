// MEGA's MultiHeadEMA layer (specs/lra.md §6.2): the five parameters with the spec's initialisation around the
// multihead_ema op (engine/ema.h), for the MEGA model's gated-attention blocks.
#pragma once
#include <cstdint>

#include "engine/ema.h"
#include "nn/module.h"

namespace mixgrad::nn {

struct MultiHeadEMAOptions {
  int64_t ndim = 16;          // EMA expansion dimension h (MEGA's default 16)
  bool bidirectional = true;  // MEGA's encoder layers: always on
  int64_t truncation = 0;     // kernel length min(truncation, L); 0 = none
  EmaPath path = EmaPath::automatic;
};

// x [B, L, D] → silu(EMA(x) + omega ⊙ x) [B, L, D]. Parameters (rows = 2·D bidirectional, else D):
// delta, alpha [rows, ndim] ~ N(0, 0.2); beta [rows, ndim] ~ N(0, 0.02) + (1, −1, 1, −1, …) along ndim;
// gamma [rows, ndim] and omega [D] ~ N(0, 1). Names as MEGA's state dict ("delta", ...); MEGA stores delta, alpha and
// beta as [rows, ndim, 1], so its checkpoints need that trailing 1 dropped. lengths (optional int32 [B], on the CPU
// or x's device) marks each sample's valid prefix: padded positions are zeroed before the EMA and give 0 outputs.
class MultiHeadEMA : public Layer {
 public:
  explicit MultiHeadEMA(int64_t embed_dim, MultiHeadEMAOptions options = {});
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  Tensor forward(const Tensor& x, const Tensor& lengths);
  // The convolution over the tokens, per direction, as the op runs it for n tokens (engine/ema.h's path choice):
  // the scan 4 · n · D · ndim (two multiply-adds per state), the direct convolution 2 · D per tap of every output.
  // Materialising the kernel (once per batch, not per sample) is not counted.
  std::optional<double> own_forward_flops(int64_t n) const override;

  // The materialised kernel [rows, k] (for inspection), not differentiable.
  Tensor kernel(int64_t k) const;

  Tensor delta, alpha, beta, gamma, omega;
  int64_t embed_dim;
  MultiHeadEMAOptions options;
};

}  // namespace mixgrad::nn
