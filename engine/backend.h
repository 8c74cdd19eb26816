// Internal helpers for op implementations: device checks and the CUDA stream of a tensor's device.
// Op sources include this; it pulls in the CUDA kernel headers only when the CUDA backend is compiled.
#pragma once
#include <string>
#include <vector>

#include "engine/tensor.h"

#ifdef MIXGRAD_WITH_CUDA
#include "engine/cuda_backend.h"
#define MIXGRAD_IF_CUDA(...) __VA_ARGS__
#else
#define MIXGRAD_IF_CUDA(...)
#endif

namespace mixgrad::detail {

// All defined tensors on one device (error naming the op and the devices otherwise); returns that device.
Device common_device(const char* op, const std::vector<Tensor>& ts);
// Same dtype for all defined tensors.
void check_same_dtype(const char* op, const std::vector<Tensor>& ts);
// CUDA kernels are float32 only: error naming the op for other dtypes on CUDA.
void check_cuda_float(const char* op, const Tensor& t);
// Throws the "built without CUDA" error for a CUDA tensor reaching a CPU-only build.
[[noreturn]] void no_cuda(const char* op);
// Normalises a possibly negative dim against `ndim` (error naming the op when out of range).
int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim);
// Product of shape[begin, end).
int64_t prod(const Shape& s, int64_t begin, int64_t end);

}  // namespace mixgrad::detail

#ifdef MIXGRAD_WITH_CUDA
namespace mixgrad::detail {
inline cudaStream_t stream_of(const Tensor& t) { return cuda::stream(t.device()); }
}  // namespace mixgrad::detail
#endif
