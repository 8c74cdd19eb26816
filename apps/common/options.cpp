// Metadata parsing, shared CLI validators and flags, and the mixer descriptions of `info`.
#include "apps/common/options.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <ostream>
#include <sstream>

#include "apps/common/compare.h"
#include "engine/error.h"
#include "engine/mixgrad.h"
#include "nn/mixer.h"

namespace mixgrad::app {

const std::string& meta_get(const nn::Metadata& m, const std::string& key, const std::string& file) {
  auto it = m.find(key);
  MIXGRAD_CHECK(it != m.end(), "{}: metadata key '{}' is missing (not a checkpoint of this app?)", file, key);
  return it->second;
}

namespace {
// Parses the whole of `s` with `parse` (a std::sto* call taking a position out-parameter).
template <class T, class Parse>
T parse_all(const std::string& s, Parse parse, const std::string& key, const std::string& file, const char* what) {
  try {
    size_t pos = 0;
    const T v = parse(s, &pos);
    if (pos == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(fmt::format("{}: metadata key '{}' = '{}' is not {}", file, key, s, what));
}
}  // namespace

double meta_double(const nn::Metadata& m, const std::string& key, const std::string& file) {
  return parse_all<double>(
      meta_get(m, key, file), [](const std::string& s, size_t* p) { return std::stod(s, p); }, key, file, "a number");
}
int64_t meta_int(const nn::Metadata& m, const std::string& key, const std::string& file) {
  return parse_all<int64_t>(
      meta_get(m, key, file), [](const std::string& s, size_t* p) { return std::stoll(s, p); }, key, file,
      "an integer");
}
uint64_t meta_u64(const nn::Metadata& m, const std::string& key, const std::string& file) {
  return parse_all<uint64_t>(
      meta_get(m, key, file), [](const std::string& s, size_t* p) { return std::stoull(s, p); }, key, file,
      "an unsigned integer");
}
bool meta_bool(const nn::Metadata& m, const std::string& key, const std::string& file) {
  const std::string& s = meta_get(m, key, file);
  MIXGRAD_CHECK(s == "0" || s == "1", "{}: metadata key '{}' = '{}' is not 0 or 1", file, key, s);
  return s == "1";
}

std::string join_floats(const std::vector<float>& v) { return fmt::format("{}", fmt::join(v, ",")); }

std::vector<float> parse_floats(const std::string& s, const std::string& what) {
  std::vector<float> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t pos = 0;
      out.push_back(std::stof(item, &pos));
      MIXGRAD_CHECK(pos == item.size(), "bad number");
    } catch (const std::exception&) {
      throw Error(fmt::format("{}: '{}' is not a comma-separated list of numbers", what, s));
    }
  }
  MIXGRAD_CHECK(!out.empty(), "{} is empty", what);
  return out;
}

void put_prefixed(nn::Metadata& m, const std::string& prefix, const std::map<std::string, std::string>& values) {
  for (const auto& [k, v] : values) m[prefix + k] = v;
}

std::map<std::string, std::string> get_prefixed(const nn::Metadata& m, const std::string& prefix) {
  std::map<std::string, std::string> out;
  for (auto it = m.lower_bound(prefix); it != m.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
    out[it->first.substr(prefix.size())] = it->second;
  return out;
}

CLI::Validator finite_number(bool positive) {
  return CLI::Validator(
      [positive](std::string& s) -> std::string {
        const std::string bound = positive ? "> 0" : ">= 0";
        double v = 0;
        try {
          size_t pos = 0;
          v = std::stod(s, &pos);
          if (pos != s.size()) return "'" + s + "' is not a number; expected a finite number " + bound;
        } catch (const std::exception&) {
          return "'" + s + "' is not a finite number; expected a finite number " + bound;
        }
        if (!std::isfinite(v)) return "'" + s + "' is not finite; expected a finite number " + bound;
        if (positive ? v <= 0 : v < 0) return "'" + s + "' is out of range; expected a finite number " + bound;
        return {};
      },
      positive ? "POSITIVE" : "NONNEGATIVE");
}

CLI::Validator name_list(const std::vector<std::string>& known, const std::string& what) {
  return CLI::Validator(
      [known, what](std::string& s) -> std::string {
        try {
          (void)parse_name_list(s, known, what);
          return {};
        } catch (const std::exception& e) {
          return e.what();
        }
      },
      "LIST");
}

CLI::Validator integer_range(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        const std::string expected = fmt::format("expected an integer in [{}, {}]", lo, hi);
        long long v = 0;
        try {
          size_t pos = 0;
          v = std::stoll(s, &pos);
          if (pos != s.size()) return "'" + s + "' is not an integer; " + expected;
        } catch (const std::out_of_range&) {
          return "'" + s + "' is out of range; " + expected;
        } catch (const std::exception&) {
          return "'" + s + "' is not an integer; " + expected;
        }
        if (v < lo || v > hi) return fmt::format("{} is out of range; {}", v, expected);
        return {};
      },
      fmt::format("INT in [{}, {}]", lo, hi));
}

CLI::Validator number_range(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        const std::string expected = fmt::format("expected a finite number in [{}, {}]", lo, hi);
        double v = 0;
        try {
          size_t pos = 0;
          v = std::stod(s, &pos);
          if (pos != s.size()) return "'" + s + "' is not a number; " + expected;
        } catch (const std::exception&) {
          return "'" + s + "' is not a finite number; " + expected;
        }
        if (!std::isfinite(v) || v < lo || v > hi) return "'" + s + "' is out of range; " + expected;
        return {};
      },
      fmt::format("NUMBER in [{}, {}]", lo, hi));
}

CLI::Validator device_spec() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (s == "auto") return {};
        try {
          (void)Device::parse(s);
          return {};
        } catch (const std::exception& e) {
          return std::string("bad device '") + s + "' (auto, cpu, cuda or cuda:N): " + e.what();
        }
      },
      "DEVICE");
}

void add_precision_flags(CLI::App* sc, std::string& precision, bool& tf32) {
  auto* opt = sc->add_option("--precision", precision,
                             "Matrix products (matmul, linear, fused attention): fp32; tf32 (CUDA tensor cores, the "
                             "CPU computes fp32); bf16 (operands rounded to bfloat16, fp32 sums, fp32 weights and "
                             "optimizer state; on the CPU the same rounding, for checking numerics, not for speed)")
                  ->check(CLI::IsMember({"fp32", "tf32", "bf16"}))
                  ->capture_default_str();
  sc->add_flag("--tf32", tf32, "The same as --precision tf32")->excludes(opt);
}

kernels::MatmulPrecision precision_from_flags(const std::string& precision, bool tf32) {
  return tf32 ? kernels::MatmulPrecision::tf32 : parse_matmul_precision(precision);
}

Device resolve_device(const std::string& spec) {
  if (spec == "auto") return default_device();
  const Device d = Device::parse(spec);
  if (d.is_cuda()) {
    MIXGRAD_CHECK(cuda_compiled(), "--device {}: this build has no CUDA backend; expected --device cpu or auto", spec);
    MIXGRAD_CHECK(d.index < cuda_device_count(),
                  "--device {}: {}; expected --device cpu or auto, or a CUDA device index "
                  "below {}",
                  spec,
                  cuda_device_count() == 0 ? "CUDA is unavailable (" + cuda_unavailable_reason() + ")"
                                           : fmt::format("no CUDA device {}", d.index),
                  cuda_device_count());
  }
  return d;
}

void add_mixer_option_flag(CLI::App* sc, std::vector<std::string>& raw) {
  sc->add_option("--mixer-opt", raw,
                 "A token-mixer option key=value (repeatable), e.g. csp_k=4; `info --mixer M` lists a mixer's "
                 "options. Unknown keys and bad values are errors")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
}

std::map<std::string, std::string> mixer_options(const std::vector<std::string>& raw) {
  std::map<std::string, std::string> out;
  for (const std::string& a : raw) nn::parse_mixer_option(a, out);
  return out;
}

std::string describe_mixer(const std::string& name) {
  const nn::MixerInfo& info = nn::mixer_info(name);
  std::string s = fmt::format("mixer {}: {}\n", info.name, info.summary);
  if (info.options.empty()) return s + "  (no options)\n";
  for (const nn::MixerOptionSpec& o : info.options) {
    std::string kind = "integer";
    if (o.type == nn::MixerOptionSpec::Type::real) kind = "number";
    if (o.type == nn::MixerOptionSpec::Type::boolean) kind = "true|false";
    if (o.type == nn::MixerOptionSpec::Type::choice) kind = fmt::format("{}", fmt::join(o.choices, "|"));
    s += fmt::format("  --mixer-opt {}=<{}> (default {}): {}\n", o.name, kind, o.default_value, o.help);
  }
  return s;
}

std::string parameter_listing(const nn::Module& model) {
  std::string s = "parameters:\n";
  for (const auto& [name, t] : model.named_parameters())
    s += fmt::format("  {:<40} {:<18} {}\n", name, shape_str(t.shape()), t.numel());
  return s + fmt::format("total parameters: {}\n", model.num_parameters());
}

int parse_command_line(CLI::App& app, int argc, const char* const* argv, std::ostream& out, std::ostream& err,
                       const std::string& name, const std::function<void()>& after) {
  try {
    app.parse(argc, argv);
    after();
  } catch (const CLI::ParseError& ex) {
    const int code = app.exit(ex, out, err);
    return code == 0 && ex.get_exit_code() != 0 ? ex.get_exit_code() : code;
  } catch (const std::exception& ex) {
    err << name << ": error: " << ex.what() << "\n";
    return 2;
  }
  return -1;
}

std::string command_line_text(int argc, const char* const* argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (i == 0) a = std::filesystem::path(a).filename().string();
    const bool plain = !a.empty() && a.find_first_of(" \t\n'\"$\\;&|<>*?()`") == std::string::npos;
    if (!plain) {
      std::string q = "'";
      for (char ch : a) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      a = q + "'";
    }
    s += (i ? " " : "") + a;
  }
  return s;
}

int run_reporting_errors(const std::string& name, const std::function<void()>& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& ex) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n", name.c_str(), ex.what());
    return 1;
  }
}

}  // namespace mixgrad::app
