// Times one op case's forward and backward on a device: median over repeats of a host clock between
// synchronize() calls, with inputs rotated so consecutive calls do not hit in the cache.
#pragma once
#include <cstdint>

#include "apps/bench/op_cases.h"

namespace mixgrad::bench {

struct MeasureConfig {
  int warmup = 2;              // untimed samples before the timed ones
  int repeats = 10;            // timed samples; the median is reported
  double min_sample_ms = 2.0;  // a sample repeats the call until it lasts about this long (short kernels, launch-bound)
  double cold_mib = 128.0;     // consecutive calls cycle through input sets spanning at least this many MiB
  int64_t max_calls = 4096;    // upper bound on calls per sample
};

struct PassTime {
  double ms = 0;            // median milliseconds per call
  int64_t calls = 0;        // calls per timed sample
  int64_t input_sets = 0;   // distinct input sets cycled through
};

struct CaseTimes {
  PassTime forward, backward;
  bool has_backward = false;
};

CaseTimes measure(const OpCase& c, Device device, const MeasureConfig& cfg, bool backward);

// Allocator peak (memory_stats) above what was in use before the call, in bytes, for one forward under
// NoGradGuard and one forward with grad + autograd::backward (-1: not measured).
struct PeakMemory {
  int64_t forward = -1, forward_backward = -1;
};
PeakMemory measure_peak_memory(const OpCase& c, Device device, bool backward);

}  // namespace mixgrad::bench
