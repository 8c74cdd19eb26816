// `bench --allreduce`: the in-place all-reduce of the data-parallel trainer (apps/common/distributed.h) on f32
// host buffers of gradient sizes, timed over this process's communicator (run it under mpirun).
#pragma once
#include <cstdint>
#include <vector>

#include "apps/common/distributed.h"

namespace mixgrad::bench {

struct AllReduceTime {
  int64_t bytes = 0;
  double ms = 0;          // median over the repeats of the slowest rank's time per call
  double algbw_gbps = 0;  // bytes / time
  double busbw_gbps = 0;  // algbw x 2(W-1)/W: the bytes each rank sends and receives in a ring all-reduce
};

// Each size: `warmup` untimed calls, then `repeats` timed samples (barrier, call, max over the ranks).
std::vector<AllReduceTime> time_all_reduce(dist::Communicator& comm, const std::vector<int64_t>& bytes, int repeats,
                                           int warmup);

}  // namespace mixgrad::bench
