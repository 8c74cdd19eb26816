// Analytic matmul FLOP counts (see flops.h).
#include "apps/common/flops.h"

#include "engine/error.h"
#include "nn/layers.h"

namespace mixgrad::app {

double linear_flops_per_row(const nn::Module& m) {
  double f = 0;
  if (const auto* lin = dynamic_cast<const nn::Linear*>(&m))
    f += 2.0 * double(lin->in_features) * double(lin->out_features);
  for (const auto& [name, child] : m.named_children()) f += linear_flops_per_row(*child);
  return f;
}

std::optional<double> mixer_mixing_flops(const std::string& mixer, int64_t n, int64_t inner, bool causal) {
  const double nn_pairs = causal ? double(n) * double(n + 1) / 2.0 : double(n) * double(n);
  if (mixer == "softmax") return 4.0 * nn_pairs * double(inner);
  if (mixer == "csp") return 0.0;
  return std::nullopt;
}

const nn::Module& child_module(const nn::Module& m, const std::string& name) {
  for (const auto& [n, child] : m.named_children())
    if (n == name) return *child;
  throw Error("flop count: the model has no module '" + name + "'");
}

}  // namespace mixgrad::app
