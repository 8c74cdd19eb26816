// Token mixers: modules mapping [B, N, D] (+ per-sample valid lengths) to [B, N, D], chosen by name from one
// registry that also declares each mixer's typed options. Implemented in nn/mixer.cpp.
#pragma once
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace mixgrad::nn {

// One option a mixer declares. Values travel as strings ("csp_k=4" on a command line, "csp_k" in checkpoint
// metadata) and are checked against the declaration before any mixer is built. Names carry the mixer's prefix
// (csp_k, dcmha_window, ...), so one set of options can name several mixers' options at once (`compare`).
struct MixerOptionSpec {
  enum class Type { integer, real, choice, boolean };
  std::string name;
  Type type = Type::integer;
  std::string default_value;
  std::string help;
  std::vector<std::string> choices;  // Type::choice: the accepted values
  double min = -std::numeric_limits<double>::infinity(), max = std::numeric_limits<double>::infinity();  // inclusive
};

// Every declared option of one mixer with its checked value (defaults filled in); built by resolve_mixer_options.
class MixerOptions {
 public:
  MixerOptions() = default;
  int64_t integer(const std::string& name) const;
  double real(const std::string& name) const;
  bool boolean(const std::string& name) const;
  const std::string& text(const std::string& name) const;  // a choice's value (or any option's canonical string)
  const std::map<std::string, std::string>& values() const& { return values_; }
  std::map<std::string, std::string> values() && { return std::move(values_); }  // safe on a temporary
  const std::string& mixer() const { return mixer_; }  // whose options these are ("" for a default-built set)
  bool empty() const { return mixer_.empty(); }

 private:
  friend MixerOptions resolve_mixer_options(const std::string&, const std::map<std::string, std::string>&,
                                            const std::map<std::string, std::string>&);
  std::string mixer_;
  std::map<std::string, std::string> values_;
};

// What a mixer is built for. Models fill it once per block (layer_index differs per block).
struct MixerContext {
  int64_t dim = 0, num_heads = 1;
  int64_t inner_dim = 0;           // width of the mixing (attention's qkv width, CSP's V); 0 = dim
  int64_t seq_len = 0;                      // the longest sequence N the model takes (incl. a class token): CSP's N_s
  int64_t grid_h = 0, grid_w = 0;           // patch grid when tokens come from an image (0 otherwise)
  bool has_cls_token = false;               // token 0 is a class token (then N = 1 + grid_h·grid_w for image models)
  bool causal = false;                      // token i may only see tokens j <= i
  int64_t layer_index = 0, num_layers = 1;  // this block's position in the model (CSP's cross-layer schedule, ...)
  bool qkv_bias = true;
  double attn_drop = 0.0, proj_drop = 0.0;
  MixerOptions options;  // resolve_mixer_options(name, ...); an empty set means every default
};

// [B, N, D] -> [B, N, D]. lengths: optional int32 [B] on x's device (engine/sequence.h), sample b's valid tokens
// are positions [0, lengths[b]); undefined = every position valid. A mixer never lets a padded position reach a
// valid output, and gives padded inputs a zero gradient.
class TokenMixer : public Module {
 public:
  using Module::Module;
  virtual Tensor forward(const Tensor& x, const Tensor& lengths = Tensor()) = 0;
  // Every sequence length N the mixer is given must be a multiple of this (CSP's group size K); models pad to it.
  virtual int64_t sequence_multiple() const { return 1; }
  // Matmul FLOPs of one forward pass over one sample of n tokens (n <= the context's seq_len), a multiply-add
  // counting 2: its Linears on the rows they act on, its token-to-token products (attention's Q·Kᵀ and A·V, AFT's
  // key sums, Compose's head mixing, ...) and any other product of its parameters, as the mixer computes them for
  // this layer (its window, rank, variant). Element-wise work, softmax, norms, shifts and sorts are not counted.
  // nullopt = no formula (apps then count the mixer's Linears on every token and mark the total a lower bound).
  // A new mixer states its formula beside its implementation (docs/mixers.md "Adding a mixer").
  virtual std::optional<double> forward_flops(int64_t /*n*/) const { return std::nullopt; }
};

// Helpers for forward_flops.
// 2 · in · out summed over every nn::Linear in `m` (recursively): the FLOPs of applying them all to one row.
double linear_flops_per_row(const Module& m);
// The (query t, key s) pairs of n tokens with s visible to t: all n² (window 0), s <= t when causal, and with a
// window W > 0 only |t − s| < W (causal: t − W < s <= t). The pair count attention-like mixers multiply by.
double visible_pairs(int64_t n, bool causal, int64_t window = 0);

using MixerFactory = std::function<std::shared_ptr<TokenMixer>(const MixerContext&)>;

struct MixerInfo {
  std::string name, summary;
  std::vector<MixerOptionSpec> options;
  MixerFactory factory;
  // The mixer needs MixerContext.grid_h × grid_w (tokens on a 2-D grid: image patches, LRA pixel tasks) and rejects a
  // context without one; models, apps and the table-driven tests offer it only sequences that have a grid.
  bool needs_grid = false;
};

// The registry: one explicit table in nn/mixer.cpp (static self-registration would be dropped by the linker from a
// static library), then the mixers added at run time by register_mixer. A new built-in mixer is one new file under
// nn/mixers/ plus one entry there. mixer_registry() is a snapshot: the table's mixers, then registered ones in order.
std::vector<MixerInfo> mixer_registry();
const MixerInfo& mixer_info(const std::string& name);  // unknown name: error listing the known ones
std::vector<std::string> mixer_names();

// Adds a mixer at run time: how a project that links the installed package plugs its own mixer into every model
// (README "Extend mixgrad", examples/custom_layer). Afterwards it is listed, resolved, built and recorded in
// checkpoints like the table's mixers. Errors name the mixer and the problem: a name that is empty, not made of
// letters, digits, '_' and '-', or already registered; no factory; an empty summary; an option without name or help,
// declared twice, declared by another mixer, or whose default fails its own declaration. Thread-safe; references
// returned by mixer_info stay valid.
void register_mixer(MixerInfo info);

// Checks `given` (option name -> value) against `mixer`'s declared options and fills in the rest: first from
// `defaults` (an app's own defaults, e.g. the LRA app's csp_schedule=exponential; checked like `given`), then from
// the declarations. An unknown name, an option of another mixer or a bad value is an error naming the option, the
// value and what is expected.
MixerOptions resolve_mixer_options(const std::string& mixer, const std::map<std::string, std::string>& given,
                                   const std::map<std::string, std::string>& defaults = {});

// "key=value" (a --mixer-opt argument) into `into`; an error names the argument when it has no '=' or no key, or
// repeats a key.
void parse_mixer_option(const std::string& arg, std::map<std::string, std::string>& into);

// Builds mixer `name`; ctx.options empty = resolve_mixer_options(name, {}).
std::shared_ptr<TokenMixer> make_mixer(const std::string& name, const MixerContext& ctx);

}  // namespace mixgrad::nn
