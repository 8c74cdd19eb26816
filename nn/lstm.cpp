// nn::LSTM: parameter registration with PyTorch's names and initialisation, and the stack of fused layer ops.
#include "nn/lstm.h"

#include <cmath>
#include <string>

#include "nn/init.h"

namespace mixgrad::nn {

LSTM::LSTM(int64_t input, int64_t hidden, int64_t layers, bool bidir, double p)
    : Module("LSTM"), input_size(input), hidden_size(hidden), num_layers(layers), bidirectional(bidir), dropout(p) {
  MIXGRAD_CHECK(input >= 1 && hidden >= 1 && layers >= 1,
                "LSTM: input_size = {}, hidden_size = {}, num_layers = {} (expected all >= 1)", input, hidden, layers);
  MIXGRAD_CHECK(p >= 0.0 && p < 1.0, "LSTM: dropout = {} is outside [0, 1)", p);
  const int64_t dirs = bidir ? 2 : 1;
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  for (int64_t k = 0; k < layers; ++k) {
    const int64_t in = k == 0 ? input : dirs * hidden;
    std::vector<LstmDirection> layer;
    for (int64_t d = 0; d < dirs; ++d) {
      const std::string suffix = "_l" + std::to_string(k) + (d == 1 ? "_reverse" : "");
      LstmDirection w;
      w.w_ih = register_parameter("weight_ih" + suffix, empty({4 * hidden, in}));
      w.w_hh = register_parameter("weight_hh" + suffix, empty({4 * hidden, hidden}));
      w.b_ih = register_parameter("bias_ih" + suffix, empty({4 * hidden}));
      w.b_hh = register_parameter("bias_hh" + suffix, empty({4 * hidden}));
      for (Tensor* t : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) init::uniform_(*t, -bound, bound);
      layer.push_back(w);
    }
    layers_.push_back(std::move(layer));
  }
}

const std::vector<LstmDirection>& LSTM::layer(int64_t k) const {
  MIXGRAD_CHECK(k >= 0 && k < num_layers, "LSTM: layer {} is outside [0, {})", k, num_layers);
  return layers_[size_t(k)];
}

std::optional<double> LSTM::own_forward_flops(int64_t n) const {
  const double dirs = bidirectional ? 2.0 : 1.0, h = double(hidden_size);
  double flops = 0;
  for (int64_t k = 0; k < num_layers; ++k) {
    const double in = k == 0 ? double(input_size) : dirs * h;
    flops += dirs * 2.0 * double(n) * 4.0 * h * (in + h);
  }
  return flops;
}

LSTM::Output LSTM::forward(const Tensor& x, const Tensor& lengths) {
  MIXGRAD_CHECK(x.defined() && x.dim() == 3 && x.size(2) == input_size,
                "LSTM: x has shape {}, expected [B, L, input_size = {}]",
                x.defined() ? shape_str(x.shape()) : std::string("(undefined)"), input_size);
  Tensor h = x;
  std::vector<Tensor> h_n;
  for (int64_t k = 0; k < num_layers; ++k) {
    if (k > 0 && dropout > 0.0) h = mixgrad::dropout(h, dropout, is_training());
    LstmLayerOutput out = lstm_layer(h, layers_[size_t(k)], lengths);
    h = out.y;
    h_n.push_back(out.h_n);
  }
  return {h, num_layers == 1 ? h_n[0] : cat(h_n, 0)};
}

}  // namespace mixgrad::nn
