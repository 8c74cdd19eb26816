// CPU allocator (64-byte aligned, large blocks cached by size class) and CUDA allocator on stream-ordered pools
// (cudaMallocAsync with a release threshold of "never", so a steady training loop reuses pool memory and never
// reaches cudaMalloc).
#include "engine/allocator.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/error.h"

#ifdef MIXGRAD_WITH_CUDA
#include <cuda_runtime.h>

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

// ---- CPU block cache ----------------------------------------------------------------------------------------------
// Large CPU blocks are kept after free and handed out again for the same size class, like the CUDA pool: a fresh
// large block is fresh pages from the kernel, and on the development VM each page fault costs microseconds (a
// 65 MB output took ~50 ms to fault in, 20× the copy itself), which dominated every memory-bound op. Blocks below
// kCacheMinBytes go straight to malloc (glibc keeps those in its own bins). Size classes: multiples of 1/8 of the
// request's power of two (at least 64 KiB), so at most 12.5 % is wasted. The cache holds at most
// MIXGRAD_CPU_CACHE_MB megabytes (default 2048; 0 disables it); when malloc fails, the cache is emptied and the
// allocation retried.
constexpr size_t kCacheMinBytes = size_t{1} << 20;

size_t size_class(size_t bytes) {
  if (bytes < kCacheMinBytes) return (bytes + 63) / 64 * 64;
  size_t pow2 = kCacheMinBytes;
  while (pow2 * 2 <= bytes) pow2 *= 2;
  const size_t step = pow2 / 8;
  return (bytes + step - 1) / step * step;
}

class CpuCache {
 public:
  CpuCache() {
    const char* env = std::getenv("MIXGRAD_CPU_CACHE_MB");
    if (env != nullptr && *env != '\0') {
      char* end = nullptr;
      const unsigned long long mb = std::strtoull(env, &end, 10);
      if (end != nullptr && *end == '\0')
        limit_ = size_t(mb) << 20;
      else
        fmt::print(stderr, "mixgrad: ignoring MIXGRAD_CPU_CACHE_MB=\"{}\" (expected a whole number of megabytes); "
                           "caching up to {} MB\n", env, limit_ >> 20);
    }
  }
  // A cached block of exactly `cls` bytes, or nullptr.
  void* take(size_t cls) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(cls);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= cls;
    return p;
  }
  // Keeps the block if the cache has room; returns false when the caller must free it.
  bool put(void* p, size_t cls) {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_ + cls > limit_) return false;
    free_[cls].push_back(p);
    cached_ += cls;
    return true;
  }
  // Frees every cached block; returns the bytes released.
  size_t release_all() {
    std::lock_guard<std::mutex> lock(mu_);
    size_t released = 0;
    for (auto& [cls, blocks] : free_) {
      for (void* p : blocks) std::free(p);
      released += cls * blocks.size();
      blocks.clear();
    }
    cached_ = 0;
    return released;
  }
  size_t cached() {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }

 private:
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0, limit_ = size_t{2048} << 20;
};

// Never destroyed: tensors with static storage may be freed after main returns.
CpuCache& cpu_cache() {
  static CpuCache* cache = new CpuCache();
  return *cache;
}
std::atomic<int64_t> g_cpu_held{0};  // bytes obtained from malloc and not yet returned (live + cached)

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
    const size_t cls = size_class(bytes);
    void* p = cls >= kCacheMinBytes ? cpu_cache().take(cls) : nullptr;
    if (p == nullptr) {
      p = std::aligned_alloc(64, cls);
      if (p == nullptr && cpu_cache().cached() > 0) {  // give the cache back and try once more
        g_cpu_held.fetch_sub(int64_t(cpu_cache().release_all()));
        p = std::aligned_alloc(64, cls);
      }
      MIXGRAD_CHECK(p != nullptr, "out of memory: could not allocate {} on the CPU ({} already in use by tensors)",
                    human_bytes(int64_t(bytes)), human_bytes(c.in_use.load()));
      g_cpu_held.fetch_add(int64_t(cls));
    }
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
    const size_t cls = size_class(bytes);
    if (cls < kCacheMinBytes || !cpu_cache().put(ptr, cls)) {
      std::free(ptr);
      g_cpu_held.fetch_sub(int64_t(cls));
    }
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
  s.reserved_bytes = device.is_cpu() ? g_cpu_held.load() : s.bytes_in_use;
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

size_t empty_cpu_cache() {
  const size_t released = cpu_cache().release_all();
  g_cpu_held.fetch_sub(int64_t(released));
  return released;
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
    // No wait for the GPU: from pageable memory (mixgrad never pins host memory) the driver stages the bytes before
    // the call returns, so the host buffer may be freed or reused at once; the copy runs in stream order.
    MIXGRAD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
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
