// Devices (cpu, cuda:N), CUDA availability detection that never crashes, and the per-device stream.
#pragma once
#include <cstdint>
#include <string>

#include "engine/error.h"

namespace mixgrad {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  constexpr Device() = default;
  constexpr Device(DeviceType t, int i = 0) : type(t), index(i) {}
  Device(const char* spec) : Device(parse(spec)) {}          // "cpu", "cuda", "cuda:1"
  Device(const std::string& spec) : Device(parse(spec)) {}

  static Device parse(const std::string& spec);
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  friend bool operator==(const Device& a, const Device& b) {
    return a.type == b.type && (a.type == DeviceType::cpu || a.index == b.index);
  }
};

inline const Device kCPU{DeviceType::cpu, 0};

// True when the CUDA backend was compiled in.
bool cuda_compiled();
// True when the CUDA backend is compiled in and at least one device is usable. The first call that finds
// none says why once on stderr ("CUDA unavailable: ...; running on the CPU").
bool cuda_is_available();
// Number of usable CUDA devices (0 when unavailable).
int cuda_device_count();
// Why CUDA is unavailable ("" when it is available).
std::string cuda_unavailable_reason();
// "cuda" when available, else "cpu" (what --device auto resolves to).
Device default_device();
// Blocks until all work queued on the device's stream has finished (no-op on the CPU).
void synchronize(Device d);

}  // namespace mixgrad

template <> struct fmt::formatter<mixgrad::Device> : fmt::formatter<std::string> {
  auto format(const mixgrad::Device& d, format_context& ctx) const {
    return fmt::formatter<std::string>::format(d.str(), ctx);
  }
};
