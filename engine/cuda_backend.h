// CUDA runtime state owned by the engine: one non-blocking stream per device and the stream-ordered pools.
// Only included by engine sources compiled with MIXGRAD_WITH_CUDA.
#pragma once
#ifdef MIXGRAD_WITH_CUDA
#include <cuda_runtime_api.h>

#include "engine/device.h"

namespace mixgrad::cuda {

// The engine's stream on `device` (created on first use; makes `device` current on this thread).
cudaStream_t stream(const Device& device);
// Makes the device current on the calling thread.
void set_device(const Device& device);

}  // namespace mixgrad::cuda
#endif
