// Typed metadata reads and the mixer options in checkpoint metadata.
#include "models/config_metadata.h"

#include <fmt/format.h>

#include <cmath>
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
    throw Error(fmt::format("{}::from_metadata: key \"{}\" = \"{}\" is not {}", r.who, key,
                            s.size() > 80 ? s.substr(0, 80) + "..." : s, what));
  return v;
}
}  // namespace

int64_t MetaReader::integer(const std::string& key) const {
  return parse_value<int64_t>(
      *this, key, [](const std::string& s, size_t* p) { return std::stoll(s, p); }, "an integer");
}
double MetaReader::real(const std::string& key) const {
  const double v = parse_value<double>(
      *this, key, [](const std::string& s, size_t* p) { return std::stod(s, p); }, "a number");
  if (!std::isfinite(v))
    throw Error(fmt::format("{}::from_metadata: key \"{}\" = \"{}\" is not finite; expected a finite number", who, key,
                            get(key)));
  return v;
}

int64_t MetaReader::integer_in(const std::string& key, int64_t lo, int64_t hi) const {
  const int64_t v = integer(key);
  if (v < lo || v > hi)
    throw Error(fmt::format("{}::from_metadata: key \"{}\" = {} is out of range; expected an integer in [{}, {}]", who,
                            key, v, lo, hi));
  return v;
}

double MetaReader::real_in(const std::string& key, double lo, double hi, bool lo_open) const {
  const double v = real(key);
  if (lo_open ? !(v > lo && v <= hi) : !(v >= lo && v <= hi))
    throw Error(fmt::format("{}::from_metadata: key \"{}\" = {} is out of range; expected a number in {}{}, {}]", who,
                            key, get(key), lo_open ? "(" : "[", lo, hi));
  return v;
}

const std::string& MetaReader::choice(const std::string& key, const std::vector<std::string>& choices) const {
  const std::string& v = get(key);
  for (const std::string& c : choices)
    if (v == c) return v;
  throw Error(fmt::format("{}::from_metadata: key \"{}\" = \"{}\" is not one of {}", who, key,
                          v.size() > 80 ? v.substr(0, 80) + "..." : v, fmt::join(choices, ", ")));
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

std::map<std::string, std::string> get_mixer_options(const MetaReader& r, const std::string& mixer) {
  std::map<std::string, std::string> out;
  if (!r.has("mixer_options")) return out;
  std::stringstream ss(r.get("mixer_options"));
  std::string name;
  while (std::getline(ss, name, ','))
    if (!name.empty()) out[name] = r.get(name);
  try {
    (void)nn::resolve_mixer_options(mixer, out);  // the registry's declared types and ranges
  } catch (const Error& e) {
    throw Error(fmt::format("{}::from_metadata: {}", r.who, e.what()));
  }
  return out;
}

}  // namespace mixgrad::models
