// Analytic matmul FLOP counts (see flops.h).
#include "apps/common/flops.h"

#include <optional>

#include "engine/error.h"
#include "nn/layers.h"
#include "nn/mixer.h"

namespace mixgrad::app {

FlopCount token_flops(const nn::Module& m, int64_t n) {
  FlopCount c;
  if (const auto* mixer = dynamic_cast<const nn::TokenMixer*>(&m)) {
    const std::optional<double> f = mixer->forward_flops(n);
    c.flops = f ? *f : double(n) * nn::linear_flops_per_row(m);
    c.complete = f.has_value();
    return c;
  }
  if (const auto* lin = dynamic_cast<const nn::Linear*>(&m))
    c.flops += 2.0 * double(n) * double(lin->in_features) * double(lin->out_features);
  const std::optional<double> own = m.own_forward_flops(n);
  c.flops += own.value_or(0.0);
  c.complete = own.has_value();
  for (const auto& [name, child] : m.named_children()) {
    const FlopCount sub = token_flops(*child, n);
    c.flops += sub.flops;
    c.complete = c.complete && sub.complete;
  }
  return c;
}

const nn::Module& child_module(const nn::Module& m, const std::string& name) {
  for (const auto& [n, child] : m.named_children())
    if (n == name) return *child;
  throw Error("flop count: the model has no module '" + name + "'");
}

}  // namespace mixgrad::app
