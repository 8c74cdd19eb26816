// What every app parses the same way: checkpoint metadata values (errors name the file and the key), the CLI11
// validators and flags shared by `vit` and `lra` (numbers, devices, --mixer-opt), and the device choice.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/device.h"
#include "kernels/precision.h"
#include "nn/serialize.h"

namespace mixgrad::app {

// ---- checkpoint metadata -------------------------------------------------------------------------------------
// Each throws mixgrad::Error "<file>: metadata key '<key>' ..." when the key is missing or its value does not parse.
const std::string& meta_get(const nn::Metadata& m, const std::string& key, const std::string& file);
double meta_double(const nn::Metadata& m, const std::string& key, const std::string& file);
int64_t meta_int(const nn::Metadata& m, const std::string& key, const std::string& file);
uint64_t meta_u64(const nn::Metadata& m, const std::string& key, const std::string& file);
bool meta_bool(const nn::Metadata& m, const std::string& key, const std::string& file);  // "1"/"0"

// Comma-separated floats ("0.5,0.25"): the shortest round-tripping text, and its inverse (error naming `what`).
std::string join_floats(const std::vector<float>& v);
std::vector<float> parse_floats(const std::string& s, const std::string& what);

// Metadata entries "<prefix><key>" of a map, and the map back from them (mixer options in checkpoints).
void put_prefixed(nn::Metadata& m, const std::string& prefix, const std::map<std::string, std::string>& values);
std::map<std::string, std::string> get_prefixed(const nn::Metadata& m, const std::string& prefix);

// ---- command line --------------------------------------------------------------------------------------------
// An option whose value lands in `into` only when the flag is given (unset = the preset's).
template <class T>
CLI::Option* optional_flag(CLI::App* sc, const std::string& name, std::optional<T>& into, const std::string& help) {
  return sc->add_option_function<T>(
      name, [&into](const T& v) { into = v; }, help);
}

// A finite number, > 0 when `positive`, else >= 0.
CLI::Validator finite_number(bool positive);
// "all" or a comma-separated list of names from `known` (parse_name_list of apps/common/compare.h).
CLI::Validator name_list(const std::vector<std::string>& known, const std::string& what);
// An integer in [lo, hi] / a finite number in [lo, hi]. Unlike CLI::Range, the error says whether the value is not a
// number or out of range, and prints the bounds as given (CLI11 prints DBL_MAX with its 309 digits); CLI11 puts the
// flag name in front ("--epochs: 'abc' is not an integer; expected an integer in [1, 1000000]").
CLI::Validator integer_range(int64_t lo, int64_t hi);
CLI::Validator number_range(double lo, double hi);
// "auto", "cpu", "cuda" or "cuda:N".
CLI::Validator device_spec();
// "auto" = the default device (a usable GPU, else the CPU); anything else parsed.
Device resolve_device(const std::string& spec);

// --precision fp32|tf32|bf16 (matrix products, engine/ops.h set_matmul_precision) and --tf32, its older spelling of
// --precision tf32 (the two exclude each other), on `sc`.
void add_precision_flags(CLI::App* sc, std::string& precision, bool& tf32);
// The precision those flags ask for.
kernels::MatmulPrecision precision_from_flags(const std::string& precision, bool tf32);

// --mixer-opt key=value (repeatable) on `sc`; the raw strings land in `raw` and become a map with mixer_options().
void add_mixer_option_flag(CLI::App* sc, std::vector<std::string>& raw);
// The key=value strings of add_mixer_option_flag as a map (errors name the bad argument or a repeated key).
std::map<std::string, std::string> mixer_options(const std::vector<std::string>& raw);

// "mixer <name>: <summary>" and every declared option with its type, default and help, for `info`.
std::string describe_mixer(const std::string& name);

// "parameters:" then one line per parameter (name, shape, count) and "total parameters: N", for `info`.
std::string parameter_listing(const nn::Module& model);

// app.parse(argc, argv), then `after` (which may throw, e.g. on a bad --mixer-opt). Returns -1 when the command should
// run, else the exit code to end with: 0 for --help, CLI11's code for a bad flag, 2 when `after` threw (its message
// printed as "<name>: error: ...").
int parse_command_line(CLI::App& app, int argc, const char* const* argv, std::ostream& out, std::ostream& err,
                       const std::string& name, const std::function<void()>& after);
// The command line as one shell-quotable line (arguments with spaces or quotes single-quoted), for reports.
std::string command_line_text(int argc, const char* const* argv);
// Runs `body`; an exception is printed as "<name>: error: <message>" (after flushing stdout) and gives exit code 1.
int run_reporting_errors(const std::string& name, const std::function<void()>& body);

}  // namespace mixgrad::app
