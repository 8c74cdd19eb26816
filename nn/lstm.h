// nn::LSTM: a multi-layer, optionally bidirectional LSTM as PyTorch's nn.LSTM(batch_first=True), one fused
// engine op (engine/lstm.h) per layer, with per-sample lengths in place of packed sequences.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/lstm.h"
#include "nn/module.h"

namespace mixgrad::nn {

class LSTM : public Module {
 public:
  // Parameters named as PyTorch's (weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, then the same with
  // _reverse when bidirectional, layer by layer) so state dicts load both ways; each initialised U(−1/√H, 1/√H) as
  // PyTorch does. dropout (in [0, 1)) applies to every layer's output except the last's, in training mode only.
  LSTM(int64_t input_size, int64_t hidden_size, int64_t num_layers = 1, bool bidirectional = false,
       double dropout = 0.0);

  struct Output {
    Tensor y;    // [B, L, dirs·H], 0 at padded positions
    Tensor h_n;  // [num_layers·dirs, B, H], PyTorch's order (layer-major, forward then reverse)
  };
  // x [B, L, input_size]; lengths (optional) int32 [B] valid prefix lengths in [1, L], on the CPU or x's device.
  Output forward(const Tensor& x, const Tensor& lengths = Tensor());

  // The gate products of every layer and direction: 2 · n · 4H · (in + H), in = input_size, then dirs·H.
  std::optional<double> own_forward_flops(int64_t n) const override;

  // The parameters of one layer, forward direction first.
  const std::vector<LstmDirection>& layer(int64_t k) const;

  int64_t input_size, hidden_size, num_layers;
  bool bidirectional;
  double dropout;

 private:
  std::vector<std::vector<LstmDirection>> layers_;
};

}  // namespace mixgrad::nn
