// The token-mixer registry (one explicit table, then the mixers registered at run time) and the typed mixer
// options: declaration checks, parsing of "key=value" arguments, and the typed getters.
#include "nn/mixer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <deque>
#include <mutex>
#include <utility>

#include "nn/layers.h"
#include "nn/mixers/aft_mixer.h"
#include "nn/mixers/combiner_mixer.h"
#include "nn/mixers/csp_mixer.h"
#include "nn/mixers/dcmha_mixer.h"
#include "nn/mixers/s2mlpv2_mixer.h"
#include "nn/mixers/softmax_attention.h"

namespace mixgrad::nn {

// The built-in mixers.
static const std::vector<MixerInfo>& builtin_mixers() {
  static const std::vector<MixerInfo> table = {
      {"softmax", "softmax multi-head attention (fused flash-style kernels)", {}, make_softmax_attention},
      {"csp", "channel-wise sample permutation: per-channel circular shift + sort in groups of K", csp_mixer_options(),
       make_csp_mixer},
      {"dcmha", "dynamically composable multi-head attention (DCFormer Compose on scores and probabilities)",
       dcmha_mixer_options(), make_dcmha_mixer},
      {"aft-full", "AFT-full: attention-free mixing with a factorised pair-wise position bias", aft_full_options(),
       make_aft_full},
      {"aft-local", "AFT-local: AFT-full whose position bias is kept inside a window (0 outside)", aft_local_options(),
       make_aft_local},
      {"aft-simple", "AFT-simple: attention-free mixing without a position bias, O(N·D)", {}, make_aft_simple},
      {"aft-conv", "AFT-conv: per-head keys and a re-parameterised depth-wise kernel over the tokens",
       aft_conv_options(), make_aft_conv},
      {"combiner-fixed", "Combiner-Fixed: own span direct + max-pooled summaries of the other spans, one softmax",
       combiner_mixer_options(), make_combiner_fixed},
      {"combiner-logsparse",
       "Combiner-Logsparse: itself direct + summaries of dyadic blocks tiling the rest",
       {},
       make_combiner_logsparse},
      {"combiner-axial", "Combiner-Axial: own row direct + per-column summaries of the other rows",
       combiner_mixer_options(), make_combiner_axial},
      {"combiner-mixture", "Combiner-Mixture: own row and column direct + column and row-part summaries",
       combiner_mixer_options(), make_combiner_mixture},
      {"s2mlpv2", "S2-MLPv2 S2Attention: spatial shifts on the token grid + split attention over 3 branches",
       s2mlpv2_mixer_options(), make_s2mlpv2_mixer, /*needs_grid=*/true},
  };
  return table;
}

namespace {

// The table's mixers, then the registered ones; a deque keeps references (mixer_info's) valid as it grows.
struct Registry {
  explicit Registry(const std::vector<MixerInfo>& table) : mixers(table.begin(), table.end()) {}
  std::mutex mutex;
  std::deque<MixerInfo> mixers;
};

Registry& registry() {
  static Registry r(builtin_mixers());
  return r;
}

}  // namespace

std::vector<MixerInfo> mixer_registry() {
  Registry& r = registry();
  const std::lock_guard<std::mutex> lock(r.mutex);
  return {r.mixers.begin(), r.mixers.end()};
}

std::vector<std::string> mixer_names() {
  std::vector<std::string> names;
  for (const MixerInfo& m : mixer_registry()) names.push_back(m.name);
  return names;
}

const MixerInfo& mixer_info(const std::string& name) {
  Registry& r = registry();
  {
    const std::lock_guard<std::mutex> lock(r.mutex);
    for (const MixerInfo& m : r.mixers)
      if (m.name == name) return m;
  }
  throw Error(fmt::format("unknown token mixer \"{}\" (known: {})", name, fmt::join(mixer_names(), ", ")));
}

namespace {

const MixerOptionSpec* find_spec(const MixerInfo& info, const std::string& name) {
  for (const MixerOptionSpec& s : info.options)
    if (s.name == name) return &s;
  return nullptr;
}

// The mixer (other than `mixer`) that declares option `name`, or "".
std::string owner_of(const std::string& name) {
  for (const MixerInfo& m : mixer_registry())
    if (find_spec(m, name)) return m.name;
  return "";
}

// "a, b, c" of every option the mixers declare ("none" when there is none).
std::string option_names(const std::vector<MixerInfo>& mixers) {
  std::vector<std::string> names;
  for (const MixerInfo& m : mixers)
    for (const MixerOptionSpec& o : m.options) names.push_back(o.name);
  return names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "));
}

std::string describe(const MixerOptionSpec& s) {
  using T = MixerOptionSpec::Type;
  switch (s.type) {
    case T::integer:
      return fmt::format("an integer in [{}, {}]", s.min, s.max);
    case T::real:
      return fmt::format("a finite number in [{}, {}]", s.min, s.max);
    case T::boolean:
      return "true or false";
    case T::choice:
      return fmt::format("one of {}", fmt::join(s.choices, ", "));
  }
  return "";
}

// The canonical string of `value` for option `s` of mixer `mixer` (error naming both when it does not fit).
std::string check_value(const std::string& mixer, const MixerOptionSpec& s, const std::string& value) {
  using T = MixerOptionSpec::Type;
  const auto bad = [&](const char* why) {
    return Error(
        fmt::format("mixer {}: option {} = \"{}\" is {}; expected {}", mixer, s.name, value, why, describe(s)));
  };
  if (s.type == T::choice) {
    for (const std::string& c : s.choices)
      if (c == value) return value;
    throw bad("not a known value");
  }
  if (s.type == T::boolean) {
    if (value == "true" || value == "1") return "true";
    if (value == "false" || value == "0") return "false";
    throw bad("not a boolean");
  }
  size_t pos = 0;
  double v = 0;
  try {
    v = s.type == T::integer ? double(std::stoll(value, &pos)) : std::stod(value, &pos);
  } catch (const std::exception&) {
    pos = std::string::npos;
  }
  if (value.empty() || pos != value.size()) throw bad(s.type == T::integer ? "not an integer" : "not a number");
  if (!std::isfinite(v) || v < s.min || v > s.max) throw bad("out of range");
  return s.type == T::integer ? value : fmt::format("{}", v);
}

// Checks every entry of `given` against the declarations of `info` into `out` (existing entries are kept).
void check_all(const MixerInfo& info, const std::map<std::string, std::string>& given,
               std::map<std::string, std::string>& out) {
  for (const auto& [name, value] : given) {
    if (out.count(name)) continue;
    const MixerOptionSpec* spec = find_spec(info, name);
    if (!spec) {
      const std::string owner = owner_of(name);
      if (!owner.empty())
        throw Error(fmt::format("mixer {}: option {} belongs to mixer {} (options of {}: {})", info.name, name, owner,
                                info.name, option_names({info})));
      throw Error(fmt::format("mixer {}: unknown option \"{}\" (known options: {})", info.name, name,
                              option_names(mixer_registry())));
    }
    out[name] = check_value(info.name, *spec, value);
  }
}

}  // namespace

MixerOptions resolve_mixer_options(const std::string& mixer, const std::map<std::string, std::string>& given,
                                   const std::map<std::string, std::string>& defaults) {
  const MixerInfo& info = mixer_info(mixer);
  MixerOptions r;
  r.mixer_ = mixer;
  check_all(info, given, r.values_);
  // App defaults only for this mixer's own options (an app passes one defaults map for every mixer).
  std::map<std::string, std::string> own_defaults;
  for (const auto& [k, v] : defaults)
    if (find_spec(info, k)) own_defaults[k] = v;
  check_all(info, own_defaults, r.values_);
  for (const MixerOptionSpec& s : info.options)
    if (!r.values_.count(s.name)) r.values_[s.name] = check_value(mixer, s, s.default_value);
  return r;
}

namespace {
// The problem with `info` as a new entry of `mixers` ("" when there is none).
std::string registration_problem(const MixerInfo& info, const std::deque<MixerInfo>& mixers) {
  const auto name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; };
  if (info.name.empty() || !std::all_of(info.name.begin(), info.name.end(), name_char))
    return "the name must be non-empty and made of letters, digits, '_' and '-'";
  for (const MixerInfo& m : mixers)
    if (m.name == info.name) return "a mixer of that name is already registered";
  if (!info.factory) return "it has no factory";
  if (info.summary.empty()) return "its summary is empty (`info` lists it)";
  for (size_t i = 0; i < info.options.size(); ++i) {
    const MixerOptionSpec& o = info.options[i];
    if (o.name.empty() || o.help.empty()) return fmt::format("option {} needs a name and a help text", i);
    for (size_t j = 0; j < i; ++j)
      if (info.options[j].name == o.name) return fmt::format("option {} is declared twice", o.name);
    for (const MixerInfo& m : mixers)
      if (find_spec(m, o.name)) return fmt::format("option {} is already declared by mixer {}", o.name, m.name);
    try {
      (void)check_value(info.name, o, o.default_value);
    } catch (const Error& e) {
      return fmt::format("the default of option {} fails its declaration ({})", o.name, e.what());
    }
  }
  return "";
}
}  // namespace

void register_mixer(MixerInfo info) {
  Registry& r = registry();
  const std::lock_guard<std::mutex> lock(r.mutex);
  const std::string problem = registration_problem(info, r.mixers);
  if (!problem.empty()) {
    std::vector<std::string> names;
    for (const MixerInfo& m : r.mixers) names.push_back(m.name);
    throw Error(fmt::format("register_mixer \"{}\": {} (registered: {})", info.name, problem, fmt::join(names, ", ")));
  }
  r.mixers.push_back(std::move(info));
}

void parse_mixer_option(const std::string& arg, std::map<std::string, std::string>& into) {
  const size_t eq = arg.find('=');
  MIXGRAD_CHECK(eq != std::string::npos && eq > 0,
                "--mixer-opt \"{}\": expected key=value (e.g. csp_k=4; `info --mixer M` lists a mixer's options)", arg);
  const std::string key = arg.substr(0, eq);
  MIXGRAD_CHECK(!into.count(key), "--mixer-opt: option {} is given twice", key);
  into[key] = arg.substr(eq + 1);
}

namespace {
const std::string& lookup(const std::string& mixer, const std::map<std::string, std::string>& v,
                          const std::string& name) {
  const auto it = v.find(name);
  MIXGRAD_CHECK(it != v.end(), "mixer {}: option {} is not declared", mixer, name);
  return it->second;
}
}  // namespace

const std::string& MixerOptions::text(const std::string& name) const { return lookup(mixer_, values_, name); }
int64_t MixerOptions::integer(const std::string& name) const { return std::stoll(text(name)); }
double MixerOptions::real(const std::string& name) const { return std::stod(text(name)); }
bool MixerOptions::boolean(const std::string& name) const { return text(name) == "true"; }

std::shared_ptr<TokenMixer> make_mixer(const std::string& name, const MixerContext& ctx) {
  const MixerInfo& info = mixer_info(name);
  if (ctx.options.empty()) {
    MixerContext c = ctx;
    c.options = resolve_mixer_options(name, {});
    return info.factory(c);
  }
  MIXGRAD_CHECK(ctx.options.mixer() == name, "make_mixer: options resolved for mixer {} passed to mixer {}",
                ctx.options.mixer(), name);
  return info.factory(ctx);
}

double linear_flops_per_row(const Module& m) {
  double f = 0;
  if (const auto* lin = dynamic_cast<const Linear*>(&m)) f += 2.0 * double(lin->in_features) * double(lin->out_features);
  for (const auto& [name, child] : m.named_children()) f += linear_flops_per_row(*child);
  return f;
}

double visible_pairs(int64_t n, bool causal, int64_t window) {
  double pairs = 0;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t lo = window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
    const int64_t hi = causal ? t : (window > 0 ? std::min(n - 1, t + window - 1) : n - 1);
    pairs += double(hi - lo + 1);
  }
  return pairs;
}

}  // namespace mixgrad::nn
