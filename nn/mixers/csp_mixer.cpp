// CSP token mixer (specs/csp.md §9.1): option parsing, the shift table, mask -> lengths, and the forward.
#include "nn/mixers/csp_mixer.h"

#include <algorithm>
#include <utility>

#include "engine/csp.h"

namespace mixgrad::nn {
namespace {

const std::vector<std::string>& known_options() {
  static const std::vector<std::string> names = {"csp_k", "csp_schedule", "csp_layer", "csp_num_layers"};
  return names;
}

int64_t parse_int_option(const std::map<std::string, std::string>& options, const std::string& key) {
  const std::string& s = options.at(key);
  size_t pos = 0;
  int64_t value = 0;
  bool ok = !s.empty();
  try {
    value = std::stoll(s, &pos);
  } catch (const std::exception&) {
    ok = false;
  }
  MIXGRAD_CHECK(ok && pos == s.size(), "CspMixer: option {} = \"{}\" is not an integer", key, s);
  return value;
}

}  // namespace

CspMixer::CspMixer(const MixerContext& ctx)
    : TokenMixer("CspMixer"), dim(ctx.dim), seq_len(ctx.seq_len), k(2), schedule("constant"), proj_drop(ctx.proj_drop) {
  const auto& opt = ctx.options;
  for (const auto& [key, value] : opt)
    if (key.rfind("csp_", 0) == 0 &&
        std::find(known_options().begin(), known_options().end(), key) == known_options().end())
      throw Error(fmt::format("CspMixer: unknown option \"{}\" (known: {})", key, fmt::join(known_options(), ", ")));
  MIXGRAD_CHECK(dim > 0, "CspMixer: dim must be positive, got {}", dim);
  MIXGRAD_CHECK(seq_len > 0, "CspMixer: seq_len (the number of tokens N, schedule length) must be positive, got {}",
                seq_len);
  MIXGRAD_CHECK(proj_drop >= 0 && proj_drop < 1, "CspMixer: proj_drop must be in [0, 1), got {}", proj_drop);
  if (opt.count("csp_k")) {
    const int64_t kk = parse_int_option(opt, "csp_k");
    MIXGRAD_CHECK(kk == 2 || kk == 4 || kk == 8, "CspMixer: csp_k = {} is not supported (expected 2, 4 or 8)", kk);
    k = int(kk);
  }
  MIXGRAD_CHECK(seq_len % k == 0,
                "CspMixer: the token count N = {}{} is not a multiple of csp_k K = {} (CSP sorts groups of K tokens); "
                "choose K dividing N (K = 2 needs an even N) or a patch size / pooling that gives such an N",
                seq_len, ctx.has_cls_token ? " (patches + class token)" : "", k);
  if (opt.count("csp_schedule")) schedule = opt.at("csp_schedule");
  if (schedule == "constant") {
    shifts = csp_shifts_constant(dim, seq_len, k);
  } else if (schedule == "exponential") {
    MIXGRAD_CHECK(opt.count("csp_layer") && opt.count("csp_num_layers"),
                  "CspMixer: csp_schedule = exponential needs the options csp_layer (this block's index) and "
                  "csp_num_layers (the model's depth)");
    const int64_t layer = parse_int_option(opt, "csp_layer"), layers = parse_int_option(opt, "csp_num_layers");
    MIXGRAD_CHECK(layers >= 1 && layer >= 0 && layer < layers,
                  "CspMixer: csp_layer = {} must be in [0, csp_num_layers = {})", layer, layers);
    shifts = csp_shifts_exponential(layer, layers, dim, seq_len);
  } else {
    throw Error(fmt::format("CspMixer: csp_schedule = \"{}\" is unknown (expected constant or exponential)", schedule));
  }
  v = register_module("v", std::make_shared<Linear>(dim, dim, false));
  proj = register_module("proj", std::make_shared<Linear>(dim, dim, true));
}

Tensor csp_lengths_from_mask(const Tensor& mask, int64_t batch, int64_t seq) {
  MIXGRAD_CHECK(mask.dtype() == DType::u8 && mask.shape() == Shape({batch, seq}),
                "CspMixer: key_padding_mask must be uint8 [{}, {}] (1 = valid), got {} {}", batch, seq, mask.dtype(),
                shape_str(mask.shape()));
  Tensor lengths = csp_mask_lengths(mask, "CspMixer");
  if (!mask.device().is_cpu()) return lengths;  // checked on the device; reading it back here would wait for the GPU
  const int32_t* n = lengths.data<int32_t>();
  for (int64_t b = 0; b < batch; ++b)
    if (n[b] != seq) return lengths;
  return Tensor();  // every row full: the unmasked op
}

Tensor CspMixer::forward(const Tensor& x, const Tensor& key_padding_mask) {
  MIXGRAD_CHECK(x.dim() == 3 && x.size(2) == dim, "CspMixer: expected input [B, N, {}], got {}", dim,
                shape_str(x.shape()));
  const int64_t b = x.size(0), n = x.size(1);
  MIXGRAD_CHECK(n % k == 0, "CspMixer: input has N = {} tokens, not a multiple of csp_k K = {} (input {})", n, k,
                shape_str(x.shape()));
  Tensor lengths;
  if (key_padding_mask.defined()) lengths = csp_lengths_from_mask(key_padding_mask, b, n);
  Tensor h = csp(v->forward(x), shifts, k, lengths);
  return dropout(proj->forward(h), proj_drop, is_training());
}

std::shared_ptr<TokenMixer> make_csp_mixer(const MixerContext& ctx) { return std::make_shared<CspMixer>(ctx); }

}  // namespace mixgrad::nn
