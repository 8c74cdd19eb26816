// safetensors bridge: Tensor <-> the raw file format of engine/safetensors.h.
#include "nn/serialize.h"

#include <cstring>

#include "engine/safetensors.h"

namespace mixgrad::nn {
namespace {
std::string st_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
  }
  return "?";
}

DType from_st_dtype(const std::string& s, const std::string& file, const std::string& name) {
  if (s == "F32") return DType::f32;
  if (s == "F64") return DType::f64;
  if (s == "I32") return DType::i32;
  if (s == "I64") return DType::i64;
  if (s == "U8") return DType::u8;
  throw Error(fmt::format("{}: tensor \"{}\" has dtype {}, which mixgrad cannot load (F32, F64, I32, I64, U8)", file,
                          name, s));
}
}  // namespace

void save_tensors(const std::filesystem::path& path, const NamedTensors& tensors, const Metadata& metadata) {
  std::vector<Tensor> host;
  std::vector<safetensors::TensorRecord> recs;
  host.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    MIXGRAD_CHECK(t.defined(), "save: tensor \"{}\" is undefined", name);
    host.push_back(t.detach().to(kCPU));
    const Tensor& h = host.back();
    recs.push_back({name, st_dtype(h.dtype()), h.shape(), h.raw_data(), h.nbytes()});
  }
  try {
    safetensors::write_safetensors(path, recs, metadata);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(e.what());
  }
}

NamedTensors load_tensors(const std::filesystem::path& path, Metadata* metadata) {
  safetensors::SafetensorsFile f;
  try {
    f = safetensors::read_safetensors(path);
  } catch (const std::exception& e) {
    throw Error(e.what());
  }
  NamedTensors out;
  for (const auto& e : f.tensors) {
    Tensor t = empty(e.shape, TensorOptions(from_st_dtype(e.dtype, path.string(), e.name)));
    MIXGRAD_CHECK(t.nbytes() == e.bytes.size(), "{}: tensor \"{}\" has {} bytes, expected {}", path.string(), e.name,
                  e.bytes.size(), t.nbytes());
    if (!e.bytes.empty()) std::memcpy(t.raw_data(), e.bytes.data(), e.bytes.size());
    out.emplace_back(e.name, t);
  }
  if (metadata) *metadata = f.metadata;
  return out;
}

void save_state_dict(const Module& m, const std::filesystem::path& path, const Metadata& metadata) {
  save_tensors(path, m.state_dict(), metadata);
}

void load_state_dict(Module& m, const std::filesystem::path& path, Metadata* metadata, bool strict) {
  NamedTensors t = load_tensors(path, metadata);
  try {
    m.load_state_dict(t, strict);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path.string(), e.what()));
  }
}

}  // namespace mixgrad::nn
