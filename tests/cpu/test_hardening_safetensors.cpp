// Hostile safetensors files: a header nested 100,000 levels deep (was a SIGSEGV in the recursive parse and dump()),
// header and offset sizes near 2^64, shapes whose element count overflows, and every reader error naming the file.

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/safetensors.h"
#include "nn/serialize.h"
#include "tests/common/hostile_files.h"
#include "tests/common/temp_files.h"

namespace fs = std::filesystem;
using namespace mixgrad;
using Catch::Contains;

namespace {
struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("mixgrad_test_harden_st_") {}
};

// The mixgrad::Error message of read_safetensors on `bytes` written to dir/hostile.safetensors; FAILs on another
// exception type or none.
std::string read_error(const TempDir& dir, const std::vector<uint8_t>& bytes) {
  const fs::path f = dir / "hostile.safetensors";
  testing::write_bytes(f, bytes);
  try {
    (void)safetensors::read_safetensors(f);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("expected a mixgrad::Error");
  return "";
}
}  // namespace

TEST_CASE("a deeply nested header is refused before any recursive parse or dump", "[hardening][safetensors]") {
  TempDir dir;
  for (const std::string& header :
       {testing::nested_json(100'000), "{\"a\":" + testing::nested_json(100'000) + "}",
        "{\"t\":{\"dtype\":\"F32\",\"shape\":" + testing::nested_json(50'000) + ",\"data_offsets\":[0,0]}}"}) {
    const std::string msg = read_error(dir, testing::safetensors_file(header, {}));
    CHECK_THAT(msg, Contains("hostile.safetensors") && Contains("more than 8 levels deep"));
  }
  // Brackets inside strings do not count; a plain header of depth 3 loads.
  const std::string ok =
      R"({"__metadata__":{"note":"[[[[[[[[[[[[[[[["},"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  testing::write_bytes(dir / "ok.safetensors", testing::safetensors_file(ok, {7, 8}));
  CHECK(safetensors::read_safetensors(dir / "ok.safetensors").metadata.at("note") == "[[[[[[[[[[[[[[[[");
}

TEST_CASE("sizes near 2^64 in a safetensors file are errors, not overflows", "[hardening][safetensors]") {
  TempDir dir;
  SECTION("header length 2^64 - 1") {
    CHECK_THAT(read_error(dir, testing::safetensors_file("{}", {}, UINT64_MAX - 1)),
               Contains("hostile.safetensors") && Contains("larger than the file"));
  }
  SECTION("data_offsets end 2^64 - 1") {
    const std::string h = R"({"t":{"dtype":"U8","shape":[2],"data_offsets":[0,18446744073709551615]}})";
    CHECK_THAT(read_error(dir, testing::safetensors_file(h, {1, 2})),
               Contains("hostile.safetensors") && Contains("out of range"));
  }
  SECTION("a shape whose byte count wraps to the data size") {
    // 2^62 × 2^2 elements of 4 bytes = 2^66 bytes, which wraps to 0 in 64 bits.
    const std::string h = R"({"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})";
    CHECK_THAT(read_error(dir, testing::safetensors_file(h, {})),
               Contains("hostile.safetensors") && Contains("does not match data_offsets"));
  }
  SECTION("a dimension above INT64_MAX") {
    const std::string h = R"({"t":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,0]}})";
    CHECK_THAT(read_error(dir, testing::safetensors_file(h, {})), Contains("must hold non-negative integers"));
  }
  SECTION("TensorEntry::numel of a hand-made entry checks overflow") {
    safetensors::TensorEntry e{"w", "F32", {int64_t(1) << 40, int64_t(1) << 40}, {}};
    CHECK_THROWS_AS(e.numel(), Error);
    CHECK_THROWS_WITH(e.numel(), Contains("\"w\"") && Contains("2^63 - 1"));
  }
}

TEST_CASE("every safetensors reader error names the file", "[hardening][safetensors]") {
  TempDir dir;
  const std::vector<std::pair<std::string, std::vector<uint8_t>>> cases = {
      {"short", {1, 2, 3}},
      {"not JSON", testing::safetensors_file("{nope", {})},
      {"array", testing::safetensors_file("[]", {})},
      {"dtype", testing::safetensors_file(R"({"t":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", {0})},
      {"duplicate", testing::safetensors_file(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                              R"("t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                                              {0})},
      {"gap", testing::safetensors_file(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", {0, 0})},
      {"trailing", testing::safetensors_file(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", {0, 0})},
      {"metadata", testing::safetensors_file(R"({"__metadata__":{"a":1}})", {})},
      {"huge name", testing::safetensors_file("{\"" + std::string(100'000, 'n') + "\":3}", {})},
  };
  for (const auto& [what, bytes] : cases) {
    INFO(what);
    const std::string msg = read_error(dir, bytes);
    CHECK_THAT(msg, Contains("hostile.safetensors"));
    CHECK(msg.size() < 1000);  // a 100,000-character name is cut in the message
  }
  testing::write_bytes(dir / "ok.safetensors", testing::safetensors_file("{}", {}));
  const safetensors::SafetensorsFile f = safetensors::read_safetensors(dir / "ok.safetensors");
  CHECK_THROWS_AS(f.at("missing"), Error);
  CHECK_THROWS_WITH(f.at("missing"), Contains("ok.safetensors") && Contains("no tensor named \"missing\""));
}

TEST_CASE("load_tensors on a valid file whose tensors are huge but empty", "[hardening][safetensors]") {
  TempDir dir;
  // [0, 2^40, 2^40] holds no element: a valid file; shape_numel must not overflow on it.
  const std::string h = R"({"t":{"dtype":"F32","shape":[0,1099511627776,1099511627776],"data_offsets":[0,0]}})";
  testing::write_bytes(dir / "e.safetensors", testing::safetensors_file(h, {}));
  const nn::NamedTensors t = nn::load_tensors(dir / "e.safetensors");
  REQUIRE(t.size() == 1);
  CHECK(t[0].second.numel() == 0);
}
