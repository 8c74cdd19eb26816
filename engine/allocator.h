// Device allocators (64-byte aligned CPU memory with a cache of large blocks; CUDA stream-ordered pools) with
// bytes-in-use and peak counters.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/device.h"

namespace mixgrad {

struct MemoryStats {
  int64_t bytes_in_use = 0;
  int64_t peak_bytes = 0;
  int64_t allocations = 0;     // number of allocate() calls so far
  // CUDA: memory the stream-ordered pool holds from the driver; CPU: bytes held from malloc (live blocks rounded to
  // their size class, plus the cache of freed blocks of 1 MiB and more)
  int64_t reserved_bytes = 0;
};

// Allocates `bytes` on `device` (never nullptr for bytes > 0; throws mixgrad::Error on out-of-memory with the size
// and the bytes already in use). Zero bytes returns nullptr.
void* device_allocate(Device device, size_t bytes);
// Frees memory from device_allocate; never throws.
void device_free(Device device, void* ptr, size_t bytes) noexcept;

MemoryStats memory_stats(Device device);
// Returns the CPU allocator's cached free blocks to the system; returns the bytes released. Freed CPU blocks of
// 1 MiB and more are otherwise kept for reuse (at most MIXGRAD_CPU_CACHE_MB megabytes, default 2048; 0 = never).
size_t empty_cpu_cache();
void reset_peak_memory(Device device);

// Copies between any two devices (synchronous with respect to the host when the destination is the CPU).
void device_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

}  // namespace mixgrad
