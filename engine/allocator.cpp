// CPU allocator (64-byte aligned) and CUDA allocator on stream-ordered pools (cudaMallocAsync with a release
// threshold of "never", so a steady training loop reuses pool memory and never reaches cudaMalloc).
#include "engine/allocator.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "engine/error.h"

#ifdef MIXGRAD_WITH_CUDA
#include <cuda_runtime.h>

#include <unordered_map>

#include "engine/cuda_backend.h"
#include "kernels/cuda/check.h"
#endif

namespace mixgrad {
namespace {

struct Counters {
  std::atomic<int64_t> in_use{0}, peak{0}, allocations{0};
  void add(int64_t bytes) {
    const int64_t now = in_use.fetch_add(bytes) + bytes;
    allocations.fetch_add(1);
    int64_t p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
  }
  void sub(int64_t bytes) { in_use.fetch_sub(bytes); }
};

constexpr int kMaxCudaDevices = 16;
Counters g_cpu;
Counters g_cuda[kMaxCudaDevices];

Counters& counters(Device d) {
  if (d.is_cpu()) return g_cpu;
  MIXGRAD_CHECK(d.index >= 0 && d.index < kMaxCudaDevices, "allocator: device index {} out of range", d.index);
  return g_cuda[d.index];
}

std::string human_bytes(int64_t b) {
  if (b >= (int64_t(1) << 30)) return fmt::format("{:.2f} GiB", double(b) / double(int64_t(1) << 30));
  if (b >= (int64_t(1) << 20)) return fmt::format("{:.1f} MiB", double(b) / double(int64_t(1) << 20));
  return fmt::format("{} bytes", b);
}

}  // namespace

#ifdef MIXGRAD_WITH_CUDA
namespace cuda {
namespace {
struct DeviceState {
  cudaStream_t stream = nullptr;
};
std::mutex g_cuda_mutex;
DeviceState g_state[kMaxCudaDevices];
}  // namespace

void set_device(const Device& device) { MIXGRAD_CUDA_CHECK(cudaSetDevice(device.index)); }

cudaStream_t stream(const Device& device) {
  MIXGRAD_CHECK(device.is_cuda() && device.index >= 0 && device.index < cuda_device_count(),
                "cuda: device {} is not usable ({} CUDA devices available{})", device, cuda_device_count(),
                cuda_is_available() ? "" : ": " + cuda_unavailable_reason());
  set_device(device);
  std::lock_guard<std::mutex> lock(g_cuda_mutex);
  DeviceState& st = g_state[device.index];
  if (!st.stream) {
    MIXGRAD_CUDA_CHECK(cudaStreamCreateWithFlags(&st.stream, cudaStreamNonBlocking));
    cudaMemPool_t pool;
    MIXGRAD_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device.index));
    uint64_t threshold = UINT64_MAX;  // keep freed memory in the pool: no cudaMalloc in a steady loop
    MIXGRAD_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  }
  return st.stream;
}
}  // namespace cuda
#endif

void* device_allocate(Device device, size_t bytes) {
  if (bytes == 0) return nullptr;
  Counters& c = counters(device);
  if (device.is_cpu()) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    MIXGRAD_CHECK(p != nullptr, "out of memory: could not allocate {} on the CPU ({} already in use by tensors)",
                  human_bytes(int64_t(bytes)), human_bytes(c.in_use.load()));
    c.add(int64_t(bytes));
    return p;
  }
#ifdef MIXGRAD_WITH_CUDA
  cudaStream_t s = cuda::stream(device);
  void* p = nullptr;
  const cudaError_t err = cudaMallocAsync(&p, bytes, s);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw Error(fmt::format("out of memory: could not allocate {} on {} ({} already in use by tensors)",
                            human_bytes(int64_t(bytes)), device, human_bytes(c.in_use.load())));
  }
  MIXGRAD_CUDA_CHECK(err);
  c.add(int64_t(bytes));
  return p;
#else
  throw Error(fmt::format("allocate: {} requested but mixgrad was built without CUDA", device));
#endif
}

void device_free(Device device, void* ptr, size_t bytes) noexcept {
  if (!ptr) return;
  if (device.is_cpu()) {
    std::free(ptr);
    g_cpu.sub(int64_t(bytes));
    return;
  }
#ifdef MIXGRAD_WITH_CUDA
  try {
    cudaFreeAsync(ptr, cuda::stream(device));
  } catch (...) {
    // destructors never throw; a failing free at shutdown is ignored
  }
  if (device.index >= 0 && device.index < kMaxCudaDevices) g_cuda[device.index].sub(int64_t(bytes));
#endif
}

MemoryStats memory_stats(Device device) {
  Counters& c = counters(device);
  MemoryStats s;
  s.bytes_in_use = c.in_use.load();
  s.peak_bytes = c.peak.load();
  s.allocations = c.allocations.load();
  s.reserved_bytes = s.bytes_in_use;
#ifdef MIXGRAD_WITH_CUDA
  if (device.is_cuda() && device.index < cuda_device_count()) {
    cudaMemPool_t pool;
    uint64_t reserved = 0;
    if (cudaDeviceGetDefaultMemPool(&pool, device.index) == cudaSuccess &&
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved) == cudaSuccess)
      s.reserved_bytes = int64_t(reserved);
  }
#endif
  return s;
}

void reset_peak_memory(Device device) {
  Counters& c = counters(device);
  c.peak.store(c.in_use.load());
}

void device_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef MIXGRAD_WITH_CUDA
  if (dst_device.is_cuda() && src_device.is_cuda()) {
    if (dst_device == src_device) {
      MIXGRAD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda::stream(dst_device)));
    } else {
      synchronize(src_device);
      MIXGRAD_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, bytes,
                                             cuda::stream(dst_device)));
    }
  } else if (dst_device.is_cuda()) {
    cudaStream_t s = cuda::stream(dst_device);
    MIXGRAD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
    MIXGRAD_CUDA_CHECK(cudaStreamSynchronize(s));  // the host buffer may be freed right after
  } else {
    cudaStream_t s = cuda::stream(src_device);
    MIXGRAD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
    MIXGRAD_CUDA_CHECK(cudaStreamSynchronize(s));
  }
#else
  throw Error("copy: a CUDA device was named but mixgrad was built without CUDA");
#endif
}

}  // namespace mixgrad
