// Per-device cache of the attributes launchers consult (kernels/cuda/device_facts.h).
#include "kernels/cuda/device_facts.h"

#include <mutex>

#include "kernels/cuda/check.h"

namespace mixgrad::kernels::cuda {
namespace {

DeviceFacts query(int dev) {
  DeviceFacts f;
  f.device = dev;
  int optin = 0, clusters = 0;
  MIXGRAD_CUDA_CHECK(cudaDeviceGetAttribute(&f.major, cudaDevAttrComputeCapabilityMajor, dev));
  MIXGRAD_CUDA_CHECK(cudaDeviceGetAttribute(&f.minor, cudaDevAttrComputeCapabilityMinor, dev));
  MIXGRAD_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  MIXGRAD_CUDA_CHECK(cudaDeviceGetAttribute(&clusters, cudaDevAttrClusterLaunch, dev));
  f.smem_optin = static_cast<size_t>(optin);
  f.clusters = clusters != 0;
  return f;
}

}  // namespace

DeviceFacts current_device_facts() {
  constexpr int kCached = 64;
  static std::once_flag once[kCached];
  static DeviceFacts facts[kCached];
  int dev = 0;
  MIXGRAD_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= kCached) return query(dev);  // beyond the cache: ask every time
  std::call_once(once[dev], [dev] { facts[dev] = query(dev); });  // an exception leaves it unset for a retry
  return facts[dev];
}

}  // namespace mixgrad::kernels::cuda
