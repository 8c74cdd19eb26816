// Model configs as checkpoint metadata (string key -> string value), shared by every model: a reader whose errors
// name the config and the key, and the token-mixer options stored under their own names.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mixgrad::models {

using Metadata = std::map<std::string, std::string>;

// Bounds on model sizes, checked before anything is built (metadata from a checkpoint is untrusted; command lines
// declare the same ranges). Each is far above any model this engine trains on one machine, and low enough that no
// product of two of them overflows.
namespace limits {
constexpr int64_t kMaxWidth = int64_t(1) << 16;      // embed_dim, mlp_hidden / mlp_dim, qkv_dim, head_dim
constexpr int64_t kMaxDepth = 1024;                  // encoder blocks
constexpr int64_t kMaxHeads = 1024;                  // attention heads (also at most the width they divide)
constexpr int64_t kMaxClasses = int64_t(1) << 20;    // classifier outputs
constexpr int64_t kMaxImageSide = int64_t(1) << 14;  // ViT img_size
constexpr int64_t kMaxChannels = 1024;               // ViT in_chans
constexpr int64_t kMaxSequence = int64_t(1) << 24;   // LRA max_len, vocab_size, grid sides
constexpr double kMaxParameters = 4294967296.0;      // 2^32 parameters (16 GiB of float32)
}  // namespace limits

// Reads typed values of `m`; errors (mixgrad::Error) read "<who>::from_metadata: missing key "k"" or "... key "k" =
// "v" is not ..." / "is out of range; expected ..." (apps prefix the file name).
struct MetaReader {
  const Metadata& m;
  std::string who;  // "ViTConfig", "LraConfig"
  const std::string& get(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  double real(const std::string& key) const;   // finite
  bool boolean(const std::string& key) const;  // "true"/"1" or "false"/"0"
  bool has(const std::string& key) const { return m.count(key) != 0; }
  // An integer in [lo, hi].
  int64_t integer_in(const std::string& key, int64_t lo, int64_t hi) const;
  // A finite number in [lo, hi], or in (lo, hi] when `lo_open`.
  double real_in(const std::string& key, double lo, double hi, bool lo_open = false) const;
  // One of `choices`.
  const std::string& choice(const std::string& key, const std::vector<std::string>& choices) const;
};

std::string meta_bool(bool b);      // "true" / "false"
std::string meta_double(double d);  // the shortest text that reads back to d

// Every option of `mixer` (given ones resolved against its declaration, defaults filled in) under its own name, and
// their names in "mixer_options", so that a checkpoint says exactly which mixer it holds. An option name that clashes
// with a key already in `m` is an error naming `who`.
void put_mixer_options(Metadata& m, const std::string& who, const std::string& mixer,
                       const std::map<std::string, std::string>& options);
// The options listed in "mixer_options" (empty when the key is absent: checkpoints from before it existed), each
// checked against `mixer`'s declared type and range (an error names the key).
std::map<std::string, std::string> get_mixer_options(const MetaReader& r, const std::string& mixer);

}  // namespace mixgrad::models
