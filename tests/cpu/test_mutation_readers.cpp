// Deterministic mutation test of every reader of untrusted files: a few thousand seeded mutations (bit flips,
// byte overwrites, truncations, insertions, deletions, repeated chunks, huge numbers in text and binary fields) of
// valid IDX (plain and gzip), CIFAR-10, safetensors checkpoints (ViT and LRA, with the header length kept consistent
// so that the JSON and the model metadata are reached), ListOps TSV, PNG and Pathfinder metadata inputs. Each must
// load or fail with a mixgrad::Error naming the file, within a second: never a crash, a hang or another exception
// type. The ASan/UBSan build (scripts/test-sanitize) runs the same cases under the sanitizers.

#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <typeinfo>
#include <vector>

#include "tests/common/hostile_files.h"
#include "tests/common/temp_files.h"
#include "tests/fuzz/readers.h"

namespace fs = std::filesystem;
using namespace mixgrad;
using mixgrad::fuzz::Format;

namespace {

// Text that breaks number parsing and size arithmetic.
const std::vector<std::string> kHugeText = {"99999999999999999999999",
                                            "-1",
                                            "0",
                                            "1e308",
                                            "-1e308",
                                            "nan",
                                            "inf",
                                            "18446744073709551615",
                                            "9223372036854775807",
                                            "-9223372036854775808",
                                            "4294967296",
                                            "1e-320",
                                            "0x10",
                                            "",
                                            "4611686018427387904"};
// Binary values that break size arithmetic (written big- or little-endian).
const std::vector<uint64_t> kHugeBinary = {
    0xffffffffull, 0x7fffffffull, 0x80000000ull, 0xffffffffffffffffull, 0x7fffffffffffffffull, 0x100000000ull, 0};

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}
  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  // One random mutation of `in`; `text` favours text-shaped edits (numbers, separators).
  std::vector<uint8_t> mutate(std::vector<uint8_t> b, bool text) {
    const int kinds = 9;
    const uint64_t rounds = 1 + below(3);
    for (uint64_t r = 0; r < rounds; ++r) apply(b, static_cast<int>(below(kinds)), text);
    return b;
  }

 private:
  void apply(std::vector<uint8_t>& b, int kind, bool text) {
    const size_t at = static_cast<size_t>(below(b.size() + 1));
    switch (kind) {
      case 0:  // bit flip
        if (!b.empty()) b[at % b.size()] ^= static_cast<uint8_t>(1u << below(8));
        return;
      case 1:  // byte overwrite with a random or boundary value
        if (!b.empty()) b[at % b.size()] = below(2) ? static_cast<uint8_t>(below(256)) : (below(2) ? 0xff : 0);
        return;
      case 2:  // truncation
        b.resize(at);
        return;
      case 3: {  // insertion of random bytes
        std::vector<uint8_t> ins(static_cast<size_t>(1 + below(16)));
        for (uint8_t& c : ins)
          c = static_cast<uint8_t>(text ? " \t\n\r[]()0123456789.-e,:\"{}"[below(26)] : below(256));
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), ins.begin(), ins.end());
        return;
      }
      case 4: {  // deletion of a range
        const size_t n = std::min<size_t>(b.size() - std::min(at, b.size()), static_cast<size_t>(1 + below(32)));
        b.erase(b.begin() + static_cast<std::ptrdiff_t>(std::min(at, b.size())),
                b.begin() + static_cast<std::ptrdiff_t>(std::min(at, b.size()) + n));
        return;
      }
      case 5: {  // a chunk repeated
        if (b.empty()) return;
        const size_t from = at % b.size(), n = std::min<size_t>(b.size() - from, static_cast<size_t>(1 + below(64)));
        std::vector<uint8_t> chunk(b.begin() + static_cast<std::ptrdiff_t>(from),
                                   b.begin() + static_cast<std::ptrdiff_t>(from + n));
        for (uint64_t k = 0, reps = 1 + below(4); k < reps; ++k)
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(from), chunk.begin(), chunk.end());
        return;
      }
      case 6: {  // a huge number as text replacing a run of digits (or inserted)
        const std::string& s = kHugeText[static_cast<size_t>(below(kHugeText.size()))];
        size_t begin = at, end = at;
        while (begin > 0 && begin <= b.size() && std::isdigit(b[begin - 1])) --begin;
        while (end < b.size() && std::isdigit(b[end])) ++end;
        b.erase(b.begin() + static_cast<std::ptrdiff_t>(begin), b.begin() + static_cast<std::ptrdiff_t>(end));
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(begin), s.begin(), s.end());
        return;
      }
      case 7: {  // a huge binary value over 4 or 8 bytes, big- or little-endian
        const uint64_t v = kHugeBinary[static_cast<size_t>(below(kHugeBinary.size()))];
        const size_t width = below(2) ? 4 : 8;
        const bool big = below(2);
        if (b.size() < width) return;
        const size_t pos = at % (b.size() - width + 1);
        for (size_t i = 0; i < width; ++i) {
          const size_t shift = 8 * (big ? width - 1 - i : i);
          b[pos + i] = static_cast<uint8_t>(shift < 64 ? v >> shift : 0);
        }
        return;
      }
      default:  // no-op round (keeps some single-mutation cases)
        return;
    }
  }
  std::mt19937_64 rng_;  // fully specified by the standard: the same cases on every platform
};

// A safetensors mutant whose 8-byte length is rewritten to match its (mutated) header, so that most mutants get past
// the length check into the JSON parser and the metadata validation.
std::vector<uint8_t> consistent_safetensors(Mutator& m, const std::vector<uint8_t>& valid) {
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len |= uint64_t(valid[size_t(i)]) << (8 * i);
  const std::vector<uint8_t> header(valid.begin() + 8, valid.begin() + 8 + static_cast<std::ptrdiff_t>(len));
  const std::vector<uint8_t> data(valid.begin() + 8 + static_cast<std::ptrdiff_t>(len), valid.end());
  const std::vector<uint8_t> mutated = m.mutate(header, true);
  return testing::safetensors_file(std::string(mutated.begin(), mutated.end()), data);
}

struct Seed {
  Format format;
  std::string what;
  std::vector<uint8_t> bytes;
  bool text;
};

std::vector<Seed> seeds() {
  using namespace testing;
  std::vector<uint8_t> pixels(3 * 5 * 4);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7);
  return {
      {Format::idx, "plain IDX", idx_file({3, 5, 4}, pixels), false},
      {Format::idx, "gzip IDX", gzip_bytes(idx_file({3, 5, 4}, pixels)), false},
      {Format::cifar10, "CIFAR-10 batch", cifar10_records(2), false},
      {Format::safetensors, "ViT checkpoint", tiny_vit_checkpoint(), false},
      {Format::safetensors, "LRA checkpoint", tiny_lra_checkpoint(), false},
      {Format::listops_tsv, "ListOps TSV", as_bytes(listops_tsv_text()), true},
      {Format::png, "PNG", data::encode_png_gray(std::vector<uint8_t>(16, 77), 4, 4), false},
      {Format::pathfinder_metadata, "Pathfinder metadata", as_bytes(pathfinder_metadata_text()), true},
  };
}

}  // namespace

TEST_CASE("mutated inputs load or fail with a mixgrad::Error naming the file, never anything else",
          "[mutation][hardening]") {
  testing::TempDir dir("mixgrad_test_mutation_");
  // 300 per seed, 300 more header-consistent ones per safetensors seed, 150 for Pathfinder (a folder scan and an
  // OpenMP region each): about 2,850 cases, a few seconds on an idle 2-core machine.
  constexpr int kPerSeed = 300;
  const data::QuietWarnings quiet;  // the 2-record CIFAR seed is a logged count; keep the output readable
  int loaded = 0, rejected = 0;
  for (const Seed& seed : seeds()) {
    INFO("seed input: " << seed.what);
    REQUIRE_NOTHROW(fuzz::run_reader(seed.format, dir.path, seed.bytes));  // every seed is valid
    Mutator m(0x5eed0000u + static_cast<uint64_t>(seed.format) * 131 + seed.what.size());
    const int cases = seed.format == Format::safetensors           ? 2 * kPerSeed
                      : seed.format == Format::pathfinder_metadata ? kPerSeed / 2
                                                                   : kPerSeed;
    for (int i = 0; i < cases; ++i) {
      const std::vector<uint8_t> input = seed.format == Format::safetensors && i % 2 == 1
                                             ? consistent_safetensors(m, seed.bytes)
                                             : m.mutate(seed.bytes, seed.text);
      const auto t0 = std::chrono::steady_clock::now();
      std::string failure;
      try {
        fuzz::run_reader(seed.format, dir.path, input);
        ++loaded;
      } catch (const Error& e) {
        ++rejected;
        const std::string what = e.what();
        // A file-based reader's error names the file (or the folder it read); the PNG decoder reads memory only.
        if (seed.format != Format::png && what.find(dir.path.string()) == std::string::npos)
          failure = "error does not name the file: " + what;
      } catch (const std::exception& e) {
        failure = std::string("exception other than mixgrad::Error: ") + typeid(e).name() + ": " + e.what();
      }
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (secs > 1.0) failure += " (took " + std::to_string(secs) + " s, expected well under 1 s)";
      if (!failure.empty()) {
        const fs::path keep = fs::temp_directory_path() / ("mixgrad_mutation_failure_" + std::to_string(i));
        testing::write_bytes(keep, input);
        FAIL(seed.what << " mutation " << i << " (input kept in " << keep.string() << "): " << failure);
      }
    }
  }
  INFO(loaded << " mutants loaded, " << rejected << " rejected");
  CHECK(rejected > 1000);  // the mutations reach the checks (a mutator that never breaks anything tests nothing)
  CHECK(loaded > 50);      // and some leave the input valid (e.g. pixel bytes)
}
