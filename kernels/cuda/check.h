// Error checks for CUDA runtime and cuBLAS calls: they throw with file, line and the library's message.
#pragma once
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace mixgrad::kernels::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error at ") + file + ":" + std::to_string(line) + " in `" + expr +
                           "`: " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

}  // namespace mixgrad::kernels::cuda

#define MIXGRAD_CUDA_CHECK(expr)                                                        \
  do {                                                                                  \
    const cudaError_t mixgrad_err_ = (expr);                                            \
    if (mixgrad_err_ != cudaSuccess)                                                    \
      ::mixgrad::kernels::cuda::throw_cuda_error(mixgrad_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: reports bad launch configurations immediately (not at the next sync).
#define MIXGRAD_CUDA_LAUNCH_CHECK() MIXGRAD_CUDA_CHECK(cudaGetLastError())
