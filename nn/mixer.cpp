// The token-mixer registry: one explicit table (static self-registration would be dropped by the linker from a static
// library). A new mixer is one new file under nn/mixers/ plus one line here.
#include "nn/mixer.h"

#include <utility>

#include "nn/mixers/csp_mixer.h"
#include "nn/mixers/softmax_attention.h"

namespace mixgrad::nn {
namespace {

const std::vector<std::pair<std::string, MixerFactory>>& registry() {
  static const std::vector<std::pair<std::string, MixerFactory>> table = {
      {"softmax", make_softmax_attention},
      {"csp", make_csp_mixer},
  };
  return table;
}

}  // namespace

std::shared_ptr<TokenMixer> make_mixer(const std::string& name, const MixerContext& ctx) {
  for (const auto& [n, factory] : registry())
    if (n == name) return factory(ctx);
  throw Error(fmt::format("make_mixer: unknown token mixer \"{}\" (known: {})", name, fmt::join(mixer_names(), ", ")));
}

std::vector<std::string> mixer_names() {
  std::vector<std::string> names;
  for (const auto& [n, factory] : registry()) names.push_back(n);
  return names;
}

}  // namespace mixgrad::nn
