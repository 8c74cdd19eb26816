// Model configs as checkpoint metadata (string key -> string value), shared by every model: a reader whose errors
// name the config and the key, and the token-mixer options stored under their own names.
#pragma once
#include <cstdint>
#include <map>
#include <string>

namespace mixgrad::models {

using Metadata = std::map<std::string, std::string>;

// Reads typed values of `m`; errors read "<who>::from_metadata: missing key "k"" or "... key "k" = "v" is not ...".
struct MetaReader {
  const Metadata& m;
  std::string who;  // "ViTConfig", "LraConfig"
  const std::string& get(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  double real(const std::string& key) const;
  bool boolean(const std::string& key) const;  // "true"/"1" or "false"/"0"
  bool has(const std::string& key) const { return m.count(key) != 0; }
};

std::string meta_bool(bool b);      // "true" / "false"
std::string meta_double(double d);  // the shortest text that reads back to d

// Every option of `mixer` (given ones resolved against its declaration, defaults filled in) under its own name, and
// their names in "mixer_options", so that a checkpoint says exactly which mixer it holds. An option name that clashes
// with a key already in `m` is an error naming `who`.
void put_mixer_options(Metadata& m, const std::string& who, const std::string& mixer,
                       const std::map<std::string, std::string>& options);
// The options listed in "mixer_options" (empty when the key is absent: checkpoints from before it existed).
std::map<std::string, std::string> get_mixer_options(const MetaReader& r);

}  // namespace mixgrad::models
