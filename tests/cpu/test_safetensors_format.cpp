// safetensors file format on raw buffers: bit-exact round trip, layout, atomic writes, every corruption case,
// and an independent parse of the header with Python's json + struct when python3 is available.

#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "tests/common/temp_files.h"

namespace fs = std::filesystem;
using namespace mixgrad::safetensors;
using Catch::Contains;

namespace {

// This file's scratch directories: <temp>/mixgrad_test_st_<pid>_<n>.
struct TempDir : mixgrad::testing::TempDir {
  TempDir() : mixgrad::testing::TempDir("mixgrad_test_st_") {}
};
using mixgrad::testing::read_bytes;

// A file from a literal header and data area: 8-byte length (default: the header's size), header, data.
void write_raw(const fs::path& p, const std::string& header, const std::vector<uint8_t>& data,
               uint64_t length = std::numeric_limits<uint64_t>::max()) {
  if (length == std::numeric_limits<uint64_t>::max()) length = header.size();
  std::ofstream out(p, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(length >> (8 * i)));
  out << header;
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

template <typename T>
TensorRecord record(const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
                    const std::vector<T>& v) {
  return TensorRecord{name, dtype, std::move(shape), v.data(), v.size() * sizeof(T)};
}

template <typename T>
std::vector<T> as(const TensorEntry& e) {
  std::vector<T> v(e.bytes.size() / sizeof(T));
  std::memcpy(v.data(), e.bytes.data(), e.bytes.size());
  return v;
}

}  // namespace

TEST_CASE("safetensors round trip is bit-exact and keeps order and metadata", "[safetensors]") {
  TempDir dir;
  const fs::path file = dir / "model.safetensors";
  std::vector<float> w(6 * 5);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(float(i)) * 1e3f;
  w[0] = -0.0f;
  w[1] = std::numeric_limits<float>::quiet_NaN();
  w[2] = std::bit_cast<float>(0x7fa00001u);  // NaN with a payload
  w[3] = std::numeric_limits<float>::denorm_min();
  w[4] = -std::numeric_limits<float>::infinity();
  const std::vector<double> d = {1.0 / 3.0, -2.5e-300, 1e300};
  const std::vector<int32_t> i32 = {-7, 0, 2147483647};
  const std::vector<int64_t> i64 = {std::numeric_limits<int64_t>::min(), 42};
  const std::vector<uint8_t> u8 = {0, 1, 254, 255, 7};
  const std::vector<float> scalar = {3.5f};
  const std::vector<float> empty;
  const std::vector<uint16_t> bf16 = {0x3f80, 0xc000};
  const std::map<std::string, std::string> meta = {{"arch", "vit"}, {"mixer", "csp"}, {"note", "ü \"quoted\""}};
  write_safetensors(file,
                    {record("blocks.0.attn.qkv.weight", "F32", {6, 5}, w), record("z.f64", "F64", {3}, d),
                     record("a.i32", "I32", {1, 3}, i32), record("step", "I64", {2}, i64),
                     record("mask", "U8", {5}, u8), record("scalar", "F32", {}, scalar),
                     record("empty", "F32", {0, 4}, empty), record("half", "BF16", {2}, bf16)},
                    meta);
  CHECK(!fs::exists(dir / "model.safetensors.tmp"));

  const SafetensorsFile f = read_safetensors(file);
  REQUIRE(f.tensors.size() == 8);
  const std::vector<std::string> names = {"blocks.0.attn.qkv.weight", "z.f64", "a.i32", "step", "mask",
                                          "scalar",                   "empty", "half"};
  for (size_t i = 0; i < names.size(); ++i) CHECK(f.tensors[i].name == names[i]);
  const TensorEntry& tw = f.at("blocks.0.attn.qkv.weight");
  CHECK(tw.dtype == "F32");
  CHECK(tw.shape == std::vector<int64_t>{6, 5});
  CHECK(tw.numel() == 30);
  REQUIRE(tw.bytes.size() == w.size() * 4);
  CHECK(std::memcmp(tw.bytes.data(), w.data(), tw.bytes.size()) == 0);  // bit-exact, NaN payloads included
  CHECK(as<double>(f.at("z.f64")) == d);
  CHECK(as<int32_t>(f.at("a.i32")) == i32);
  CHECK(as<int64_t>(f.at("step")) == i64);
  CHECK(f.at("mask").bytes == u8);
  CHECK(f.at("scalar").shape.empty());
  CHECK(f.at("scalar").numel() == 1);
  CHECK(as<float>(f.at("scalar")) == scalar);
  CHECK(f.at("empty").shape == std::vector<int64_t>{0, 4});
  CHECK(f.at("empty").bytes.empty());
  CHECK(as<uint16_t>(f.at("half")) == bf16);
  CHECK(f.metadata == meta);
  CHECK(f.find("nope") == nullptr);
  CHECK_THROWS_WITH(f.at("nope"), Contains("no tensor named \"nope\""));

  // Overwriting an existing file replaces it whole.
  write_safetensors(file, {record("only", "U8", {5}, u8)});
  const SafetensorsFile g = read_safetensors(file);
  REQUIRE(g.tensors.size() == 1);
  CHECK(g.metadata.empty());
}

TEST_CASE("safetensors layout: little-endian length, JSON header padded to 8 bytes", "[safetensors]") {
  TempDir dir;
  for (int name_len = 1; name_len <= 9; ++name_len) {
    const fs::path file = dir / "layout.safetensors";
    const std::vector<float> v = {1.0f, 2.0f};
    write_safetensors(file, {record(std::string(static_cast<size_t>(name_len), 'w'), "F32", {2}, v)});
    const std::vector<uint8_t> bytes = read_bytes(file);
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= uint64_t(bytes[static_cast<size_t>(i)]) << (8 * i);
    CHECK(n % 8 == 0);
    REQUIRE(bytes.size() == 8 + n + 8);
    CHECK(bytes[8] == '{');
    const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
    CHECK(header.find_last_not_of(' ') == header.find_last_of('}'));  // only spaces after the closing brace
    CHECK(header.find("\"data_offsets\":[0,8]") != std::string::npos);
    float back[2];
    std::memcpy(back, bytes.data() + 8 + n, 8);
    CHECK((back[0] == 1.0f && back[1] == 2.0f));
  }
}

TEST_CASE("safetensors writer rejects bad records and leaves no temporary file", "[safetensors][errors]") {
  TempDir dir;
  const fs::path file = dir / "w.safetensors";
  const std::vector<float> v = {1, 2, 3, 4};
  REQUIRE_THROWS_WITH(write_safetensors(file, {record("a", "F32", {4}, v), record("a", "F32", {4}, v)}),
                      Contains("tensor \"a\"") && Contains("duplicate"));
  REQUIRE_THROWS_WITH(write_safetensors(file, {record("a", "F32", {3}, v)}),
                      Contains("tensor \"a\"") && Contains("= 12 bytes, but nbytes is 16"));
  REQUIRE_THROWS_WITH(write_safetensors(file, {record("a", "F31", {4}, v)}),
                      Contains("tensor \"a\"") && Contains("unknown safetensors dtype \"F31\""));
  REQUIRE_THROWS_WITH(write_safetensors(file, {record("a", "F32", {-1, 4}, v)}), Contains("negative dimension"));
  REQUIRE_THROWS_WITH(write_safetensors(file, {record("__metadata__", "F32", {4}, v)}), Contains("invalid name"));
  CHECK(!fs::exists(file));
  REQUIRE_THROWS_WITH(write_safetensors(dir / "missing_dir" / "x.safetensors", {record("a", "F32", {4}, v)}),
                      Contains("missing_dir/x.safetensors.tmp") && Contains("cannot create"));
  // A failed write keeps the previous file intact.
  write_safetensors(file, {record("a", "F32", {4}, v)});
  const std::vector<uint8_t> before = read_bytes(file);
  REQUIRE_THROWS(write_safetensors(file, {record("a", "F32", {4}, v), record("a", "F32", {4}, v)}));
  CHECK(read_bytes(file) == before);
  CHECK(!fs::exists(dir / "w.safetensors.tmp"));
}

TEST_CASE("safetensors reader: each corruption gives its error", "[safetensors][errors]") {
  TempDir dir;
  const fs::path f = dir / "bad.safetensors";
  const std::vector<uint8_t> data16(16, 0);
  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";

  SECTION("valid baseline") {
    write_raw(f, "{" + ok_entry + "}", data16);
    CHECK(read_safetensors(f).tensors.size() == 1);
  }
  SECTION("shorter than 8 bytes") {
    std::ofstream(f, std::ios::binary) << "abc";
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("bad.safetensors") && Contains("file is 3 bytes"));
  }
  SECTION("header length larger than the file") {
    write_raw(f, "{" + ok_entry + "}", data16, 1000);
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("header length 1000 is larger than the file"));
  }
  SECTION("invalid JSON") {
    write_raw(f, "{\"t\":{\"dtype\":", data16);
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("bad.safetensors") && Contains("header is not valid JSON"));
  }
  SECTION("header is not an object") {
    write_raw(f, "[1,2]", {});
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("header is a JSON array, expected an object"));
  }
  SECTION("unknown dtype") {
    write_raw(f, R"({"t":{"dtype":"Q7","shape":[2,2],"data_offsets":[0,16]}})", data16);
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("tensor \"t\"") && Contains("unknown safetensors dtype \"Q7\""));
  }
  SECTION("shape × dtype size differs from the offsets") {
    write_raw(f, R"({"t":{"dtype":"F64","shape":[2,2],"data_offsets":[0,16]}})", data16);
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("tensor \"t\"") && Contains("does not match data_offsets [0,16]"));
  }
  SECTION("negative shape") {
    write_raw(f, R"({"t":{"dtype":"F32","shape":[-2,-2],"data_offsets":[0,16]}})", data16);
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("tensor \"t\"") && Contains("non-negative integers"));
  }
  SECTION("offsets out of range") {
    write_raw(f, R"({"t":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}})", data16);
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("tensor \"t\"") && Contains("out of range") &&
                                                 Contains("data area has 16 bytes"));
  }
  SECTION("begin after end") {
    write_raw(f, R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}})", data16);
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("begin <= end"));
  }
  SECTION("overlapping tensors") {
    write_raw(f, R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
              std::vector<uint8_t>(12));
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("tensor \"b\"") && Contains("overlap tensor \"a\""));
  }
  SECTION("gap between tensors") {
    write_raw(f, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
              std::vector<uint8_t>(12));
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("tensor \"b\"") && Contains("a gap of 4 bytes"));
  }
  SECTION("data area not covered (trailing bytes)") {
    write_raw(f, "{" + ok_entry + "}", std::vector<uint8_t>(20));
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("tensors cover 16 bytes but the data area has 20 bytes"));
  }
  SECTION("non-string metadata") {
    write_raw(f, R"({"__metadata__":{"epoch":3},)" + ok_entry + "}", data16);
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("__metadata__ value for \"epoch\" is a JSON number"));
  }
  SECTION("duplicate tensor name") {
    write_raw(f, "{" + ok_entry + "," + ok_entry + "}", data16);
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("\"t\" more than once"));
  }
  SECTION("unexpected field") {
    write_raw(f, R"({"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16],"stride":[2,1]}})", data16);
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("tensor \"t\"") && Contains("unexpected field \"stride\""));
  }
  SECTION("missing data_offsets") {
    write_raw(f, R"({"t":{"dtype":"F32","shape":[2,2]}})", data16);
    REQUIRE_THROWS_WITH(read_safetensors(f), Contains("tensor \"t\"") && Contains("missing \"data_offsets\""));
  }
  SECTION("missing file") {
    REQUIRE_THROWS_WITH(read_safetensors(dir / "none.safetensors"), Contains("none.safetensors: cannot open"));
  }
}

TEST_CASE("safetensors file parses with an independent reader (python3 json + struct)", "[safetensors][python]") {
  if (std::system("python3 -c 'import json, struct' > /dev/null 2>&1") != 0) {
    WARN("python3 not available: independent header check not run");
    return;
  }
  TempDir dir;
  const fs::path file = dir / "py.safetensors";
  const std::vector<float> w = {1.5f, -2.25f, 3.0f, 0.125f, -0.0f, 1e-3f};
  const std::vector<int64_t> step = {123456789012345LL};
  const std::vector<uint8_t> u8 = {9, 8, 7};
  write_safetensors(file, {record("head.weight", "F32", {2, 3}, w), record("step", "I64", {}, step),
                           record("mask", "U8", {3}, u8)},
                    {{"arch", "vit"}});
  // Mirrors the reference loader's checks: padded JSON header, offsets contiguous from 0 covering the data.
  const std::string script = R"PY(
import json, struct, sys
blob = open(sys.argv[1], 'rb').read()
(n,) = struct.unpack('<Q', blob[:8])
assert (8 + n) % 8 == 0 and blob[8:9] == b'{'
header = json.loads(blob[8:8 + n].decode('utf-8'))
data = blob[8 + n:]
meta = header.pop('__metadata__', {})
sizes = {'F32': 4, 'F64': 8, 'I32': 4, 'I64': 8, 'U8': 1}
fmt = {'F32': 'f', 'F64': 'd', 'I32': 'i', 'I64': 'q', 'U8': 'B'}
end = 0
for name, t in sorted(header.items(), key=lambda kv: kv[1]['data_offsets']):
    b, e = t['data_offsets']
    assert b == end, (name, b, end)
    count = 1
    for d in t['shape']:
        count *= d
    assert e - b == count * sizes[t['dtype']], name
    values = struct.unpack('<%d%s' % (count, fmt[t['dtype']]), data[b:e])
    print(name, t['dtype'], t['shape'], ' '.join(repr(v) for v in values))
    end = e
assert end == len(data)
print('metadata', json.dumps(meta, sort_keys=True))
)PY";
  const fs::path py = dir / "check.py";
  std::ofstream(py) << script;
  const std::string cmd = "python3 " + py.string() + " " + file.string() + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  const int status = ::pclose(pipe);
  INFO(out);
  REQUIRE(status == 0);
  CHECK(out ==
        "head.weight F32 [2, 3] 1.5 -2.25 3.0 0.125 -0.0 0.0010000000474974513\n"
        "step I64 [] 123456789012345\n"
        "mask U8 [3] 9 8 7\n"
        "metadata {\"arch\": \"vit\"}\n");
}
