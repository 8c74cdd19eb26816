// Device parsing and CUDA detection: a machine with no GPU or no driver is told once and runs on the CPU.
#include "engine/device.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

#ifdef MIXGRAD_WITH_CUDA
#include "engine/cuda_backend.h"
#include "kernels/cuda/check.h"
#endif

namespace mixgrad {

Device Device::parse(const std::string& spec) {
  if (spec == "cpu") return Device(DeviceType::cpu, 0);
  if (spec == "cuda") return Device(DeviceType::cuda, 0);
  if (spec.rfind("cuda:", 0) == 0) {
    const std::string idx = spec.substr(5);
    bool digits = !idx.empty() && idx.size() < 4;
    for (char c : idx) digits = digits && c >= '0' && c <= '9';
    MIXGRAD_CHECK(digits, "device: invalid device \"{}\"; expected cpu, cuda or cuda:N", spec);
    return Device(DeviceType::cuda, std::stoi(idx));
  }
  throw Error(fmt::format("device: invalid device \"{}\"; expected cpu, cuda or cuda:N", spec));
}

namespace {
struct CudaProbe {
  int count = 0;
  std::string reason;
};

const CudaProbe& probe() {
  static const CudaProbe result = [] {
    CudaProbe p;
#ifdef MIXGRAD_WITH_CUDA
    if (const char* off = std::getenv("MIXGRAD_DISABLE_CUDA"); off && *off && std::string(off) != "0") {
      p.reason = "disabled by MIXGRAD_DISABLE_CUDA";
    } else {
      int n = 0;
      const cudaError_t err = cudaGetDeviceCount(&n);
      if (err != cudaSuccess) {
        p.reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
        cudaGetLastError();  // clear the sticky error
      } else if (n == 0) {
        p.reason = "no CUDA device found";
      } else {
        p.count = n;
      }
    }
#else
    p.reason = "mixgrad was built without the CUDA backend";
#endif
    return p;
  }();
  return result;
}
}  // namespace

bool cuda_compiled() {
#ifdef MIXGRAD_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_is_available() {
  const CudaProbe& p = probe();
  static std::once_flag told;
  if (p.count == 0 && cuda_compiled())
    std::call_once(told, [&] { std::fprintf(stderr, "mixgrad: CUDA unavailable (%s); running on the CPU\n", p.reason.c_str()); });
  return p.count > 0;
}

int cuda_device_count() { return probe().count; }
std::string cuda_unavailable_reason() { return probe().reason; }
Device default_device() { return cuda_is_available() ? Device(DeviceType::cuda, 0) : kCPU; }

void synchronize(Device d) {
  if (d.is_cpu()) return;
#ifdef MIXGRAD_WITH_CUDA
  MIXGRAD_CUDA_CHECK(cudaStreamSynchronize(cuda::stream(d)));
#endif
}

}  // namespace mixgrad
