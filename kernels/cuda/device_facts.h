// What kernels ask of the current CUDA device before choosing a launch (compute capability, opt-in shared memory,
// thread-block clusters), queried once per device and cached: launchers call this on every call.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

namespace mixgrad::kernels::cuda {

struct DeviceFacts {
  int device = 0;              // the index these facts describe
  int major = 0, minor = 0;    // compute capability
  size_t smem_optin = 0;       // cudaDevAttrMaxSharedMemoryPerBlockOptin (bytes)
  bool clusters = false;       // cudaDevAttrClusterLaunch
};

// The facts of the device current on this thread (cudaGetDevice). Thread-safe; CUDA errors throw.
DeviceFacts current_device_facts();

}  // namespace mixgrad::kernels::cuda
