// Typed metadata reads and the mixer options in checkpoint metadata.
#include "models/config_metadata.h"

#include <fmt/format.h>

#include <sstream>
#include <vector>

#include "engine/error.h"
#include "nn/mixer.h"

namespace mixgrad::models {

const std::string& MetaReader::get(const std::string& key) const {
  auto it = m.find(key);
  MIXGRAD_CHECK(it != m.end(), "{}::from_metadata: missing key \"{}\"", who, key);
  return it->second;
}

namespace {
template <class T, class Parse>
T parse_value(const MetaReader& r, const std::string& key, Parse parse, const char* what) {
  const std::string& s = r.get(key);
  size_t pos = 0;
  T v{};
  bool ok = !s.empty();
  try {
    v = parse(s, &pos);
  } catch (const std::exception&) {
    ok = false;
  }
  if (!ok || pos != s.size())
    throw Error(fmt::format("{}::from_metadata: key \"{}\" = \"{}\" is not {}", r.who, key, s, what));
  return v;
}
}  // namespace

int64_t MetaReader::integer(const std::string& key) const {
  return parse_value<int64_t>(
      *this, key, [](const std::string& s, size_t* p) { return std::stoll(s, p); }, "an integer");
}
double MetaReader::real(const std::string& key) const {
  return parse_value<double>(
      *this, key, [](const std::string& s, size_t* p) { return std::stod(s, p); }, "a number");
}
bool MetaReader::boolean(const std::string& key) const {
  const std::string& s = get(key);
  if (s == "true" || s == "1") return true;
  if (s == "false" || s == "0") return false;
  throw Error(fmt::format("{}::from_metadata: key \"{}\" = \"{}\" is not a boolean (true/false)", who, key, s));
}

std::string meta_bool(bool b) { return b ? "true" : "false"; }
std::string meta_double(double d) { return fmt::format("{}", d); }

void put_mixer_options(Metadata& m, const std::string& who, const std::string& mixer,
                       const std::map<std::string, std::string>& options) {
  std::vector<std::string> names;
  const nn::MixerOptions resolved = nn::resolve_mixer_options(mixer, options);
  for (const auto& [k, v] : resolved.values()) {
    MIXGRAD_CHECK(!m.count(k) && k != "mixer_options" && k.find(',') == std::string::npos,
                  "{}::to_metadata: mixer option \"{}\" clashes with a config key or contains a comma", who, k);
    m[k] = v;
    names.push_back(k);
  }
  m["mixer_options"] = fmt::format("{}", fmt::join(names, ","));
}

std::map<std::string, std::string> get_mixer_options(const MetaReader& r) {
  std::map<std::string, std::string> out;
  if (!r.has("mixer_options")) return out;
  std::stringstream ss(r.get("mixer_options"));
  std::string name;
  while (std::getline(ss, name, ','))
    if (!name.empty()) out[name] = r.get(name);
  return out;
}

}  // namespace mixgrad::models
