// The configuration of every LRA model family (specs/lra.md §6): the Transformer encoder, MEGA (and CSP-MEGA),
// FLASH/GAU and the LSTM. One struct, recorded in checkpoint metadata (errors name the key), validated per family;
// the families themselves are listed in one table (lra_families()) that the factory (models/lra_model.h), the app's
// flags, presets and compare read.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mixgrad::models {

struct LraConfig {
  // The model family: "transformer", "mega", "flash" or "lstm" (metadata "arch" = "lra-<model>").
  std::string model = "transformer";
  std::string task = "listops";  // recorded for the app; the model itself only uses the sizes below
  std::string input = "tokens";  // "tokens" (an embedding table) or "pixels" (e = x·w + b, x = (v/255 − mean)/std)
  int64_t vocab_size = 16;       // tokens: ids in [0, vocab_size), 0 = padding
  double pixel_mean = 0.5, pixel_std = 0.5;
  int64_t max_len = 2000;  // the longest input sequence (without the class token)
  // embed_dim: the model width d. depth: blocks (LSTM: layers). mlp_dim: the MLP / MEGA normalized-FFN hidden width.
  int64_t embed_dim = 512, depth = 4, num_heads = 8, qkv_dim = 0, mlp_dim = 1024;  // qkv_dim 0 = embed_dim
  std::string pool = "cls";        // "cls" (a learned vector prepended; its final state is pooled) or "mean" (masked)
  std::string pos = "sinusoidal";  // "sinusoidal", "learned" or "none"
  double dropout = 0.1, attn_dropout = 0.1, ln_eps = 1e-6;  // ln_eps: the eps of every norm of the model
  // The token mixer. transformer: any registered mixer (nn/mixer.h); mega: "gated" (MEGA's gated attention) or
  // "csp" (CSP-MEGA: A·V replaced by CSP(V)); the other families: their lra_family() mixers.
  std::string mixer = "softmax";
  std::map<std::string, std::string> mixer_options;  // as given; resolved against the mixer's declaration
  bool causal = false;
  int64_t grid_h = 0, grid_w = 0;  // pixel tasks: the image the sequence is read from (for grid-aware mixers)
  int64_t num_classes = 10;
  std::string dual = "none";  // Retrieval: "nli" ([u, v, u⊙v, u−v]) or "concat" ([u, v]); "none" = one input
  int64_t head_dim = 0;       // classifier hidden width (MEGA's cls_out); 0 = mlp_dim

  // ---- families other than the transformer (recorded in their checkpoints only) ----
  int64_t zdim = 64;                // MEGA / GAU: width z of the shared representation Z (queries and keys)
  int64_t hdim = 256;               // MEGA: value width v; GAU: expansion width e
  int64_t ema_ndim = 16;            // MEGA: EMA dimension h per channel
  int64_t truncation = 0;           // MEGA: EMA kernel length min(truncation, L); 0 = the whole sequence
  std::string norm = "layernorm";   // MEGA / GAU: "layernorm", "scalenorm" or "batchnorm"
  bool prenorm = false;             // MEGA: pre-norm blocks (and a final norm) instead of post-norm
  std::string attn_fn = "softmax";  // MEGA / GAU attention function: "softmax", "laplace" or "relu2"
  int64_t chunk = -1;               // MEGA / GAU: attend within chunks of this many positions; -1 = full attention
  double hidden_dropout = 0.0;      // MEGA: dropout on V and in the FFN (activation dropout); LSTM: between layers
  int64_t lstm_hidden = 128;        // LSTM: hidden width per direction (the LSTM's layers are `depth`)
  std::string lstm_pool = "mean";   // LSTM: "mean" (masked mean of the outputs) or "last" (final states)

  int64_t seq_len() const { return max_len + (pool == "cls" ? 1 : 0); }         // tokens the blocks see at most
  std::map<std::string, std::string> to_metadata() const;                       // "arch" = "lra-<model>"
  static LraConfig from_metadata(const std::map<std::string, std::string>& m);  // errors name the key
  // Clear errors naming the fields, incl. the bounds of models/config_metadata.h, then the family's own rules.
  void validate() const;
  double approx_parameters() const;  // about how many parameters (and position-table entries) it builds
  // The mixer options every app default and `mixer_options` resolve to (what checkpoints record); empty for a mixer
  // that is not in the token-mixer registry (MEGA's "gated").
  std::map<std::string, std::string> resolved_mixer_options() const;
};

// One model family of the LRA app. A family whose `unavailable` is non-empty is known but not built yet: asking for
// it is an error that says so.
struct LraFamily {
  std::string name;           // "transformer", "mega", ...
  std::string description;    // one line for --help and info
  std::string default_mixer;  // what --mixer means when not given
  // The mixers the family takes; empty = every mixer of the token-mixer registry (nn/mixer.h).
  std::vector<std::string> mixers;
  std::string unavailable;
  void (*validate)(const LraConfig&) = nullptr;             // the family's rules (after the common ones)
  double (*approx_parameters)(const LraConfig&) = nullptr;  // about how many parameters it builds
};

const std::vector<LraFamily>& lra_families();
std::vector<std::string> lra_model_names();  // every family, built or not
// The family named `name` (error listing the known ones); `require_built`: also an error when it is not built yet.
const LraFamily& lra_family(const std::string& name, bool require_built = true);
// The mixers `model` takes (error for an unknown family).
std::vector<std::string> lra_family_mixers(const std::string& model);
// Every mixer name some family takes (for the command line's first check; the pair is checked by validate()).
std::vector<std::string> lra_all_mixer_names();
// Empty when `model` takes `mixer`, else a sentence saying why not and what it takes.
std::string lra_mixer_mismatch(const std::string& model, const std::string& mixer);

}  // namespace mixgrad::models
