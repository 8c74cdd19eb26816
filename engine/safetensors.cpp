// safetensors reader/writer. Validation follows the reference implementation (contiguous offsets from 0 that
// cover the data area exactly) and is stricter where it is silent (duplicate keys, unexpected fields).
#include "engine/safetensors.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "engine/error.h"
#include "engine/file_io.h"

namespace mixgrad::safetensors {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this build would need byte swapping");

using OrderedJson = nlohmann::ordered_json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference loader's limit
// A valid header nests three levels ({name: {shape: [...]}}); anything deeper is refused before the JSON parser (and
// the recursive dump() in error messages) ever sees it.
constexpr int kMaxHeaderDepth = 8;

Error file_error(const std::filesystem::path& path, const std::string& what) {
  return Error(path.string() + ": " + what);
}

// "\"name\"" for a message, cut to 80 characters (a hostile file may hold names of any length).
std::string cut(const std::string& text) { return text.size() > 80 ? text.substr(0, 80) + "..." : text; }
std::string quote_name(const std::string& name) {
  std::string out = "\"";  // appended, not `"\"" + ...`: GCC 12 -O3 misreports that as -Wrestrict
  out += cut(name);
  out += '"';
  return out;
}

// The deepest nesting of [ and { outside JSON strings in `text` (a linear scan, no recursion); stops counting past
// `limit`.
int nesting_depth(const uint8_t* text, size_t n, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < n && deepest <= limit; ++i) {
    const uint8_t c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Product of dims × element size, or false on overflow.
bool byte_count(const std::vector<int64_t>& shape, size_t elem, uint64_t* out) {
  uint64_t n = elem;
  for (int64_t d : shape) {
    if (d < 0) return false;
    const uint64_t ud = static_cast<uint64_t>(d);
    if (ud != 0 && n > std::numeric_limits<uint64_t>::max() / ud) return false;
    n *= ud;
  }
  *out = n;
  return true;
}

uint64_t json_offset(const OrderedJson& v, bool* ok) {
  *ok = v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  return *ok ? v.get<uint64_t>() : 0;
}

}  // namespace

size_t dtype_size(std::string_view dtype) {
  static const std::map<std::string_view, size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  const auto it = sizes.find(dtype);
  if (it == sizes.end())
    throw std::invalid_argument("unknown safetensors dtype \"" + std::string(dtype) +
                                "\", expected one of BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64");
  return it->second;
}

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, d, &n))
      throw Error(
          fmt::format("safetensors: tensor \"{}\" has shape {} whose element count is negative or above "
                      "2^63 - 1",
                      name, shape_string(shape)));
  return n;
}

const TensorEntry* SafetensorsFile::find(std::string_view name) const {
  for (const TensorEntry& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorEntry& SafetensorsFile::at(std::string_view name) const {
  if (const TensorEntry* t = find(name)) return *t;
  throw Error((path.empty() ? std::string("safetensors") : path.string()) + ": no tensor named \"" + std::string(name) +
              "\" in the file (" + std::to_string(tensors.size()) + " tensors)");
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorRecord>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  OrderedJson header = OrderedJson::object();
  if (!metadata.empty()) {
    OrderedJson meta = OrderedJson::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const TensorRecord& t : tensors) {
    const std::string where = path.string() + ": tensor \"" + t.name + "\": ";
    if (t.name.empty() || t.name == "__metadata__")
      throw std::invalid_argument(where + "invalid name, expected a non-empty name other than __metadata__");
    if (!names.insert(t.name).second) throw std::invalid_argument(where + "duplicate tensor name");
    size_t elem = 0;
    try {
      elem = dtype_size(t.dtype);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(where + e.what());
    }
    uint64_t expected = 0;
    if (!byte_count(t.shape, elem, &expected))
      throw std::invalid_argument(where + "shape " + shape_string(t.shape) +
                                  " has a negative dimension or too many elements");
    if (expected != t.nbytes)
      throw std::invalid_argument(where + "shape " + shape_string(t.shape) + " × " + std::to_string(elem) +
                                  " bytes (" + t.dtype + ") = " + std::to_string(expected) + " bytes, but nbytes is " +
                                  std::to_string(t.nbytes));
    if (t.nbytes > 0 && t.data == nullptr) throw std::invalid_argument(where + "data is null but nbytes > 0");
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // e.g. a name or metadata value that is not valid UTF-8
    throw std::invalid_argument(path.string() + ": cannot encode the header as JSON (" + e.what() +
                                "); names and metadata must be valid UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // data area starts 8-byte aligned
  uint8_t length_le[8];
  for (int i = 0; i < 8; ++i) length_le[i] = static_cast<uint8_t>(uint64_t(text.size()) >> (8 * i));

  std::vector<io::Bytes> pieces = {{length_le, 8}, {text.data(), text.size()}};
  for (const TensorRecord& t : tensors) pieces.push_back({t.data, t.nbytes});
  io::write_file_atomic(path, pieces);
}

SafetensorsFile read_safetensors(const std::filesystem::path& path) {
  const std::vector<uint8_t> bytes = io::read_regular_file(path);
  const uint64_t file_size = bytes.size();
  if (file_size < 8)
    throw file_error(path, "file is " + std::to_string(file_size) +
                               " bytes, shorter than the 8-byte header length of a safetensors file");
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= uint64_t(bytes[static_cast<size_t>(i)]) << (8 * i);
  if (header_len > file_size - 8)
    throw file_error(path, "header length " + std::to_string(header_len) + " is larger than the file: only " +
                               std::to_string(file_size - 8) + " bytes follow the 8-byte length (not a safetensors "
                               "file, or truncated)");
  if (header_len > kMaxHeaderBytes)
    throw file_error(path, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                               std::to_string(kMaxHeaderBytes) + " bytes");
  const uint64_t data_begin = 8 + header_len, data_size = file_size - data_begin;
  if (nesting_depth(bytes.data() + 8, static_cast<size_t>(header_len), kMaxHeaderDepth) > kMaxHeaderDepth)
    throw file_error(path, "header nests JSON arrays/objects more than " + std::to_string(kMaxHeaderDepth) +
                               " levels deep; a safetensors header needs 3 (not a safetensors file?)");

  // Duplicate top-level keys are silently merged by JSON parsers; catch them while parsing.
  std::string duplicate;
  std::set<std::string> seen;
  const OrderedJson::parser_callback_t on_event = [&](int depth, OrderedJson::parse_event_t event, OrderedJson& j) {
    if (event == OrderedJson::parse_event_t::key && depth == 1) {
      const std::string key = j.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  OrderedJson header;
  try {
    header = OrderedJson::parse(bytes.begin() + 8, bytes.begin() + static_cast<std::ptrdiff_t>(data_begin), on_event);
  } catch (const nlohmann::json::exception& e) {
    throw file_error(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) throw file_error(path, "header lists " + quote_name(duplicate) + " more than once");
  if (!header.is_object())
    throw file_error(path, std::string("header is a JSON ") + header.type_name() + ", expected an object");

  SafetensorsFile file;
  file.path = path;
  struct Span {
    uint64_t begin, end;
    size_t entry;
  };
  std::vector<Span> spans;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object())
        throw file_error(path, std::string("__metadata__ is a JSON ") + value.type_name() +
                                   ", expected an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          throw file_error(path, "__metadata__ value for " + quote_name(mk) + " is a JSON " + mv.type_name() +
                                     ", expected a string");
        file.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor " + quote_name(key) + ": ";
    if (!value.is_object()) throw file_error(path, where + "entry is a JSON " + value.type_name() + ", expected an object");
    for (const auto& [field, unused] : value.items()) {
      (void)unused;
      if (field != "dtype" && field != "shape" && field != "data_offsets")
        throw file_error(path,
                         where + "unexpected field " + quote_name(field) + ", expected dtype, shape, data_offsets");
    }
    if (!value.contains("dtype") || !value["dtype"].is_string())
      throw file_error(path, where + "missing or non-string \"dtype\"");
    if (!value.contains("shape") || !value["shape"].is_array())
      throw file_error(path, where + "missing or non-array \"shape\"");
    if (!value.contains("data_offsets") || !value["data_offsets"].is_array() || value["data_offsets"].size() != 2)
      throw file_error(path, where + "missing \"data_offsets\", expected [begin, end]");
    TensorEntry entry;
    entry.name = key;
    entry.dtype = value["dtype"].get<std::string>();
    size_t elem = 0;
    try {
      elem = dtype_size(entry.dtype);
    } catch (const std::invalid_argument& e) {
      throw file_error(path, where + e.what());
    }
    for (const OrderedJson& d : value["shape"]) {
      bool ok = false;
      const uint64_t dim = json_offset(d, &ok);
      if (!ok || dim > uint64_t(std::numeric_limits<int64_t>::max()))
        throw file_error(path, where + "shape " + cut(value["shape"].dump()) + " must hold non-negative integers");
      entry.shape.push_back(static_cast<int64_t>(dim));
    }
    bool ok_begin = false, ok_end = false;
    const uint64_t begin = json_offset(value["data_offsets"][0], &ok_begin);
    const uint64_t end = json_offset(value["data_offsets"][1], &ok_end);
    const std::string offsets = cut(value["data_offsets"].dump());
    if (!ok_begin || !ok_end || begin > end)
      throw file_error(path, where + "data_offsets " + offsets + " must be non-negative integers with begin <= end");
    if (end > data_size)
      throw file_error(path, where + "data_offsets " + offsets + " out of range: the data area has " +
                                 std::to_string(data_size) + " bytes");
    uint64_t expected = 0;
    if (!byte_count(entry.shape, elem, &expected) || expected != end - begin)
      throw file_error(path, where + "shape " + shape_string(entry.shape) + " × " + std::to_string(elem) +
                                 " bytes (" + entry.dtype + ") does not match data_offsets " + offsets + " (" +
                                 std::to_string(end - begin) + " bytes)");
    spans.push_back({begin, end, file.tensors.size()});
    file.tensors.push_back(std::move(entry));
  }

  std::stable_sort(spans.begin(), spans.end(),
                   [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const Span& s : spans) {
    const std::string& name = file.tensors[s.entry].name;
    if (s.begin < covered)
      throw file_error(path, "tensor \"" + name + "\": data_offsets [" + std::to_string(s.begin) + ", " +
                                 std::to_string(s.end) + "] overlap tensor \"" + *previous + "\" (which ends at " +
                                 std::to_string(covered) + ")");
    if (s.begin > covered)
      throw file_error(path, "tensor \"" + name + "\": data_offsets begin at " + std::to_string(s.begin) +
                                 " but the previous tensor ends at " + std::to_string(covered) +
                                 ": a gap of " + std::to_string(s.begin - covered) +
                                 " bytes; tensors must cover the data area contiguously");
    covered = s.end;
    previous = &name;
  }
  if (covered != data_size)
    throw file_error(path, "tensors cover " + std::to_string(covered) + " bytes but the data area has " +
                               std::to_string(data_size) + " bytes (" + std::to_string(data_size - covered) +
                               " trailing bytes not described by the header)");

  std::vector<TensorEntry> ordered;
  ordered.reserve(file.tensors.size());
  for (const Span& s : spans) {
    TensorEntry& e = file.tensors[s.entry];
    const auto first = bytes.begin() + static_cast<std::ptrdiff_t>(data_begin + s.begin);
    e.bytes.assign(first, first + static_cast<std::ptrdiff_t>(s.end - s.begin));
    ordered.push_back(std::move(e));
  }
  file.tensors = std::move(ordered);
  return file;
}

}  // namespace mixgrad::safetensors
