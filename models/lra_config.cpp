// LraConfig: checkpoint metadata, validation and parameter estimates of every LRA model family, and the family table.
#include "models/lra_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "engine/ema.h"
#include "engine/error.h"
#include "models/config_metadata.h"
#include "models/lra_lstm.h"
#include "nn/mixer.h"

namespace mixgrad::models {

namespace {

bool registry_mixer(const std::string& name) {
  const std::vector<std::string> names = nn::mixer_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

[[noreturn]] void fail(const std::string& what) { throw Error("LraConfig: " + what); }

// ---- transformer (specs/lra.md §6.1) --------------------------------------------------------------------------
void validate_transformer(const LraConfig& c) {
  const int64_t inner = c.qkv_dim > 0 ? c.qkv_dim : c.embed_dim;
  if (c.num_heads < 1 || inner % c.num_heads != 0)
    fail(fmt::format("num_heads ({}) must be >= 1 and divide the qkv width ({})", c.num_heads, inner));
  if (c.num_heads > limits::kMaxHeads)
    fail(fmt::format("num_heads ({}) must be at most {}", c.num_heads, limits::kMaxHeads));
  if (c.pos == "sinusoidal" && c.embed_dim % 2 != 0) fail("sinusoidal positions need an even embed_dim");
  if (c.grid_h * c.grid_w == 0 && nn::mixer_info(c.mixer).needs_grid)
    fail(
        fmt::format("mixer {} needs a token grid (it shifts along rows and columns): only the pixel tasks (image, "
                    "pathfinder) have one, task {} with {} input has none",
                    c.mixer, c.task, c.input));
}

double transformer_parameters(const LraConfig& c) {
  const double d = double(c.embed_dim), q = double(c.qkv_dim > 0 ? c.qkv_dim : c.embed_dim), m = double(c.mlp_dim);
  const double h = double(c.head_dim > 0 ? c.head_dim : c.mlp_dim), n = double(c.seq_len());
  const double embedding = c.input == "tokens" ? double(c.vocab_size) * d : 2 * d;
  const double positions = c.pos == "none" ? 0 : n * d;  // learned, or the sinusoid table (not a parameter, but held)
  const double block = 4 * d * q + 2 * d * m + 6 * d + m + q;
  const double head_in = c.dual == "nli" ? 4 * d : c.dual == "concat" ? 2 * d : d;
  return embedding + positions + double(c.depth) * block + head_in * h + h * h + h * double(c.num_classes) + 4 * d;
}

// ---- MEGA and CSP-MEGA (specs/lra.md §6.2-6.3, csp.md §10) ---------------------------------------------------
void validate_mega(const LraConfig& c) {
  const auto width_ok = [](int64_t v) { return v >= 1 && v <= limits::kMaxWidth; };
  if (!width_ok(c.zdim) || !width_ok(c.hdim))
    fail(fmt::format("mega: zdim ({}) and hdim ({}) must be in [1, {}]", c.zdim, c.hdim, limits::kMaxWidth));
  if (c.ema_ndim < 1 || c.ema_ndim > kEmaMaxNdim)
    fail(fmt::format("mega: ema_ndim ({}) must be in [1, {}]", c.ema_ndim, kEmaMaxNdim));
  if (c.truncation < 0) fail(fmt::format("mega: truncation ({}) must be >= 0 (0 = the whole sequence)", c.truncation));
  if (c.chunk != -1 && c.chunk < 1) fail(fmt::format("mega: chunk ({}) must be -1 (full attention) or >= 1", c.chunk));
  if (c.mixer == "csp" && c.chunk != -1)
    fail(
        fmt::format("mega with mixer csp: chunk must be -1 (CSP replaces the attention and spans the whole "
                    "sequence), got {}",
                    c.chunk));
  if (c.pool != "mean") fail(fmt::format("mega pools by masked mean: pool must be mean, got \"{}\"", c.pool));
  if (c.pos != "none") fail(fmt::format("mega has no absolute positions: pos must be none, got \"{}\"", c.pos));
  if (c.causal) fail("mega: causal is not supported (the LRA encoders are bidirectional)");
  if (c.attn_dropout != 0)
    fail(
        fmt::format("mega: attn_dropout must be 0, got {} (the fused gated attention drops nothing from A; every "
                    "MEGA LRA run uses 0)",
                    c.attn_dropout));
}

// Exact: what LraMega builds (tests compare the two).
double mega_parameters(const LraConfig& c) {
  const bool csp = c.mixer == "csp";
  const double d = double(c.embed_dim), z = csp ? 0.0 : double(c.zdim), v = double(c.hdim), f = double(c.mlp_dim);
  const double positions = double(c.chunk > 0 ? c.chunk : c.max_len);
  const double norm = c.norm == "scalenorm" ? 1.0 : 2 * d;
  const double ema = 4 * 2 * d * double(c.ema_ndim) + d;
  const double attention = csp ? 0.0 : 4 * z + 2 * positions - 1;  // CSP: no Q, K, relative bias
  const double layer =
      ema + (d * v + v) + (d + 1) * (2 * d + z + v) + (v * d + d) + attention + (2 * d * f + f + d) + 2 * norm;
  const double embedding = c.input == "tokens" ? double(c.vocab_size) * d : 2 * d;
  const double h = double(c.head_dim > 0 ? c.head_dim : c.mlp_dim);
  const double head_in = c.dual == "nli" ? 4 * d : c.dual == "concat" ? 2 * d : d;
  return embedding + double(c.depth) * layer + (c.prenorm ? norm : 0.0) + head_in * h + h + h * double(c.num_classes);
}

// ---- LSTM (specs/lra.md §6.5) -----------------------------------------------------------------------------------
void validate_lstm(const LraConfig& c) {
  if (c.pool != "mean")
    fail(fmt::format("lstm pools by lstm_pool (mean or last): pool must be mean, got \"{}\"", c.pool));
  if (c.pos != "none") fail(fmt::format("lstm has no absolute positions: pos must be none, got \"{}\"", c.pos));
  if (c.causal) fail("lstm: causal is not supported (the LRA LSTM is bidirectional)");
  if (c.hidden_dropout < 0 || c.hidden_dropout >= 1)
    fail(fmt::format("lstm: hidden_dropout (between layers) must be in [0, 1), got {}", c.hidden_dropout));
}

// ---- FLASH / GAU (specs/lra.md §6.4) ----------------------------------------------------------------------------
void validate_flash(const LraConfig& c) {
  const auto width_ok = [](int64_t v) { return v >= 1 && v <= limits::kMaxWidth; };
  if (!width_ok(c.zdim) || !width_ok(c.hdim))
    fail(fmt::format("flash: zdim ({}) and hdim (the expansion e, {}) must be in [1, {}]", c.zdim, c.hdim,
                     limits::kMaxWidth));
  if (c.chunk != -1 && c.chunk < 1) fail(fmt::format("flash: chunk ({}) must be -1 (full attention) or >= 1", c.chunk));
  if (c.pool != "mean") fail(fmt::format("flash pools by masked mean: pool must be mean, got \"{}\"", c.pool));
  if (c.pos != "none")
    fail(fmt::format("flash has no absolute positions (the GAU's relative bias): pos must be none, got \"{}\"", c.pos));
  if (c.causal) fail("flash: causal is not supported (the LRA encoders are bidirectional)");
  if (c.attn_dropout != 0)
    fail(fmt::format("flash: attn_dropout must be 0, got {} (the fused gated attention drops nothing from A)",
                     c.attn_dropout));
}

// Exact: what LraFlash builds (tests compare the two).
double flash_parameters(const LraConfig& c) {
  const double d = double(c.embed_dim), e = double(c.hdim), s = double(c.zdim);
  const double positions = double(c.chunk > 0 ? c.chunk : c.max_len);
  const double norm = c.norm == "scalenorm" ? 1.0 : 2 * d;
  const double layer = norm + (d + 1) * (2 * e + s) + 4 * s + (2 * positions - 1) + (e * d + d);
  const double embedding = c.input == "tokens" ? double(c.vocab_size) * d : 2 * d;
  const double h = double(c.head_dim > 0 ? c.head_dim : c.mlp_dim);
  const double head_in = c.dual == "nli" ? 4 * d : c.dual == "concat" ? 2 * d : d;
  return embedding + double(c.depth) * layer + norm + head_in * h + h + h * double(c.num_classes);
}

// ---- the table --------------------------------------------------------------------------------------------------
std::vector<LraFamily> make_families() {
  std::vector<LraFamily> f;
  f.push_back({"transformer",
               "the LRA Transformer encoder with any registered token mixer (specs/lra.md §6.1)",
               "softmax",
               {},
               "",
               validate_transformer,
               transformer_parameters});
  f.push_back({"mega",
               "MEGA: EMA + single-head gated attention (specs/lra.md §6.2); --mixer csp = CSP-MEGA (§6.3)",
               "gated",
               {"gated", "csp"},
               "",
               validate_mega,
               mega_parameters});
  f.push_back({"flash",
               "FLASH / GAU: gated attention units with full or chunked quadratic relu² attention (specs/lra.md §6.4)",
               "gated",
               {"gated"},
               "",
               validate_flash,
               flash_parameters});
  f.push_back({"lstm",
               "a bidirectional multi-layer LSTM encoder (specs/lra.md §6.5)",
               "none",
               {"none"},
               "",
               validate_lstm,
               lra_lstm_parameters});
  return f;
}

}  // namespace

const std::vector<LraFamily>& lra_families() {
  static const std::vector<LraFamily> families = make_families();
  return families;
}

std::vector<std::string> lra_model_names() {
  std::vector<std::string> names;
  for (const LraFamily& f : lra_families()) names.push_back(f.name);
  return names;
}

const LraFamily& lra_family(const std::string& name, bool require_built) {
  for (const LraFamily& f : lra_families())
    if (f.name == name) {
      if (require_built && !f.unavailable.empty()) {
        std::vector<std::string> built;
        for (const LraFamily& g : lra_families())
          if (g.unavailable.empty()) built.push_back(g.name);
        throw Error(fmt::format("LRA model {}: {} (built: {})", name, f.unavailable, fmt::join(built, ", ")));
      }
      return f;
    }
  throw Error(fmt::format("unknown LRA model family \"{}\" (known: {})", name, fmt::join(lra_model_names(), ", ")));
}

std::vector<std::string> lra_family_mixers(const std::string& model) {
  const LraFamily& f = lra_family(model, false);
  return f.mixers.empty() ? nn::mixer_names() : f.mixers;
}

std::vector<std::string> lra_all_mixer_names() {
  std::vector<std::string> all;
  for (const LraFamily& f : lra_families())
    for (const std::string& m : lra_family_mixers(f.name))
      if (std::find(all.begin(), all.end(), m) == all.end()) all.push_back(m);
  return all;
}

std::string lra_mixer_mismatch(const std::string& model, const std::string& mixer) {
  const std::vector<std::string> ok = lra_family_mixers(model);
  if (std::find(ok.begin(), ok.end(), mixer) != ok.end()) return "";
  return fmt::format("model {} has no mixer \"{}\" (it takes: {})", model, mixer, fmt::join(ok, ", "));
}

// ---- metadata ---------------------------------------------------------------------------------------------------
std::map<std::string, std::string> LraConfig::to_metadata() const {
  Metadata m = {{"arch", "lra-" + model},
                {"task", task},
                {"input", input},
                {"vocab_size", std::to_string(vocab_size)},
                {"pixel_mean", meta_double(pixel_mean)},
                {"pixel_std", meta_double(pixel_std)},
                {"max_len", std::to_string(max_len)},
                {"embed_dim", std::to_string(embed_dim)},
                {"depth", std::to_string(depth)},
                {"num_heads", std::to_string(num_heads)},
                {"qkv_dim", std::to_string(qkv_dim)},
                {"mlp_dim", std::to_string(mlp_dim)},
                {"pool", pool},
                {"pos", pos},
                {"dropout", meta_double(dropout)},
                {"attn_dropout", meta_double(attn_dropout)},
                {"ln_eps", meta_double(ln_eps)},
                {"mixer", mixer},
                {"causal", meta_bool(causal)},
                {"grid_h", std::to_string(grid_h)},
                {"grid_w", std::to_string(grid_w)},
                {"num_classes", std::to_string(num_classes)},
                {"dual", dual},
                {"head_dim", std::to_string(head_dim)}};
  if (model != "transformer") {  // the transformer's metadata stays as it always was
    m["zdim"] = std::to_string(zdim), m["hdim"] = std::to_string(hdim), m["ema_ndim"] = std::to_string(ema_ndim);
    m["truncation"] = std::to_string(truncation), m["norm"] = norm, m["prenorm"] = meta_bool(prenorm);
    m["attn_fn"] = attn_fn, m["chunk"] = std::to_string(chunk), m["hidden_dropout"] = meta_double(hidden_dropout);
    m["lstm_hidden"] = std::to_string(lstm_hidden), m["lstm_pool"] = lstm_pool;
  }
  if (registry_mixer(mixer)) put_mixer_options(m, "LraConfig", mixer, mixer_options);
  return m;
}

namespace {

std::string model_of_arch(const MetaReader& r) {
  std::vector<std::string> archs;
  for (const std::string& n : lra_model_names()) archs.push_back("lra-" + n);
  return r.choice("arch", archs).substr(4);
}

// The fields of the families other than the transformer.
void read_family_fields(const MetaReader& r, LraConfig& c) {
  using namespace limits;
  const double below_one = std::nextafter(1.0, 0.0);
  c.zdim = r.integer_in("zdim", 1, kMaxWidth);
  c.hdim = r.integer_in("hdim", 1, kMaxWidth);
  c.ema_ndim = r.integer_in("ema_ndim", 1, kEmaMaxNdim);
  c.truncation = r.integer_in("truncation", 0, kMaxSequence);
  c.norm = r.choice("norm", {"layernorm", "scalenorm", "batchnorm"});
  c.prenorm = r.boolean("prenorm");
  c.attn_fn = r.choice("attn_fn", {"softmax", "laplace", "relu2"});
  c.chunk = r.integer_in("chunk", -1, kMaxSequence);
  c.hidden_dropout = r.real_in("hidden_dropout", 0.0, below_one);
  c.lstm_hidden = r.integer_in("lstm_hidden", 1, kMaxWidth);
  c.lstm_pool = r.choice("lstm_pool", {"mean", "last"});
}

}  // namespace

LraConfig LraConfig::from_metadata(const std::map<std::string, std::string>& meta) {
  // Every field is read with its bounds (the error names the key) before validate() checks how they fit together,
  // and before anything is built.
  using namespace limits;
  const MetaReader r{meta, "LraConfig"};
  const double below_one = std::nextafter(1.0, 0.0);
  LraConfig c;
  c.model = model_of_arch(r);
  c.task = r.get("task");
  c.input = r.choice("input", {"tokens", "pixels"});
  c.vocab_size = r.integer_in("vocab_size", c.input == "tokens" ? 2 : 0, kMaxSequence);
  c.pixel_mean = r.real("pixel_mean");
  c.pixel_std = r.real_in("pixel_std", 0.0, 1e30, true);
  c.max_len = r.integer_in("max_len", 1, kMaxSequence);
  c.embed_dim = r.integer_in("embed_dim", 1, kMaxWidth);
  c.depth = r.integer_in("depth", 1, kMaxDepth);
  c.qkv_dim = r.integer_in("qkv_dim", 0, kMaxWidth);
  c.num_heads = r.integer_in("num_heads", 1, std::min(c.qkv_dim > 0 ? c.qkv_dim : c.embed_dim, kMaxHeads));
  c.mlp_dim = r.integer_in("mlp_dim", 1, kMaxWidth);
  c.pool = r.choice("pool", {"cls", "mean"});
  c.pos = r.choice("pos", {"sinusoidal", "learned", "none"});
  c.dropout = r.real_in("dropout", 0.0, below_one);
  c.attn_dropout = r.real_in("attn_dropout", 0.0, below_one);
  c.ln_eps = r.real_in("ln_eps", 0.0, 1.0, true);
  c.mixer = r.choice("mixer", lra_family_mixers(c.model));
  c.causal = r.boolean("causal");
  c.grid_h = r.integer_in("grid_h", 0, kMaxSequence);
  c.grid_w = r.integer_in("grid_w", 0, kMaxSequence);
  c.num_classes = r.integer_in("num_classes", 2, kMaxClasses);
  c.dual = r.choice("dual", {"none", "nli", "concat"});
  c.head_dim = r.integer_in("head_dim", 0, kMaxWidth);
  if (c.model != "transformer") read_family_fields(r, c);
  if (registry_mixer(c.mixer)) c.mixer_options = get_mixer_options(r, c.mixer);
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(fmt::format("LraConfig::from_metadata: {}", e.what()));
  }
  return c;
}

// ---- validation -------------------------------------------------------------------------------------------------
double LraConfig::approx_parameters() const {
  const LraFamily& f = lra_family(model, false);
  return f.approx_parameters ? f.approx_parameters(*this) : transformer_parameters(*this);
}

void LraConfig::validate() const {
  constexpr int64_t kMaxSize = int64_t(1) << 24;
  const auto in_range = [&](int64_t v, int64_t lo) { return v >= lo && v <= kMaxSize; };
  const auto width_ok = [](int64_t v, int64_t lo) { return v >= lo && v <= limits::kMaxWidth; };
  const LraFamily& family = lra_family(model, false);
  if (input != "tokens" && input != "pixels") fail(fmt::format("input must be tokens or pixels, got \"{}\"", input));
  if (input == "tokens" && !in_range(vocab_size, 2)) fail(fmt::format("vocab_size {} must be >= 2", vocab_size));
  if (input == "pixels" && !(std::isfinite(pixel_mean) && std::isfinite(pixel_std) && pixel_std > 0))
    fail(fmt::format("pixel normalisation ({}, {}) needs a finite mean and a std > 0", pixel_mean, pixel_std));
  if (!in_range(max_len, 1) || !in_range(embed_dim, 1) || !in_range(depth, 1) || !in_range(mlp_dim, 1) ||
      !in_range(num_classes, 2) || qkv_dim < 0 || head_dim < 0)
    fail(
        fmt::format("max_len ({}), embed_dim ({}), depth ({}), mlp_dim ({}) must be >= 1 and num_classes ({}) >= 2, "
                    "all at most 2^24",
                    max_len, embed_dim, depth, mlp_dim, num_classes));
  if (!width_ok(embed_dim, 1) || !width_ok(mlp_dim, 1) || !width_ok(qkv_dim, 0) || !width_ok(head_dim, 0) ||
      depth > limits::kMaxDepth || num_classes > limits::kMaxClasses)
    fail(
        fmt::format("embed_dim ({}), mlp_dim ({}), qkv_dim ({}) and head_dim ({}) must be at most {}, depth ({}) at "
                    "most {}, num_classes ({}) at most {}",
                    embed_dim, mlp_dim, qkv_dim, head_dim, limits::kMaxWidth, depth, limits::kMaxDepth, num_classes,
                    limits::kMaxClasses));
  if (pool != "cls" && pool != "mean") fail(fmt::format("pool must be cls or mean, got \"{}\"", pool));
  if (pos != "sinusoidal" && pos != "learned" && pos != "none")
    fail(fmt::format("pos must be sinusoidal, learned or none, got \"{}\"", pos));
  for (double p : {dropout, attn_dropout, hidden_dropout})
    if (!(p >= 0 && p < 1)) fail(fmt::format("dropout rates must be in [0, 1), got {}", p));
  if (!(ln_eps > 0 && std::isfinite(ln_eps))) fail(fmt::format("ln_eps must be positive, got {}", ln_eps));
  if (dual != "none" && dual != "nli" && dual != "concat")
    fail(fmt::format("dual must be none, nli or concat, got \"{}\"", dual));
  if (grid_h < 0 || grid_w < 0 || grid_h > kMaxSize || grid_w > kMaxSize ||
      (grid_h * grid_w != 0 && grid_h * grid_w != max_len))
    fail(fmt::format("a pixel grid {}x{} must hold max_len = {} tokens", grid_h, grid_w, max_len));
  if (const std::string why = lra_mixer_mismatch(model, mixer); !why.empty()) fail(why);
  if (norm != "layernorm" && norm != "scalenorm" && norm != "batchnorm")
    fail(fmt::format("norm must be layernorm, scalenorm or batchnorm, got \"{}\"", norm));
  if (attn_fn != "softmax" && attn_fn != "laplace" && attn_fn != "relu2")
    fail(fmt::format("attn_fn must be softmax, laplace or relu2, got \"{}\"", attn_fn));
  if (lstm_pool != "mean" && lstm_pool != "last")
    fail(fmt::format("lstm_pool must be mean or last, got \"{}\"", lstm_pool));
  if (family.validate) family.validate(*this);
  if (approx_parameters() > limits::kMaxParameters)
    fail(
        fmt::format("the model would hold about {:.3g} parameters, more than the limit of 2^32 (vocab_size {}, "
                    "max_len {}, embed_dim {}, depth {}, mlp_dim {})",
                    approx_parameters(), vocab_size, max_len, embed_dim, depth, mlp_dim));
  (void)resolved_mixer_options();
}

std::map<std::string, std::string> LraConfig::resolved_mixer_options() const {
  if (!registry_mixer(mixer)) {
    MIXGRAD_CHECK(mixer_options.empty(), "LraConfig: mixer {} of model {} takes no mixer options, got {}", mixer, model,
                  mixer_options.begin()->first);
    return {};
  }
  return nn::resolve_mixer_options(mixer, mixer_options).values();
}

}  // namespace mixgrad::models
