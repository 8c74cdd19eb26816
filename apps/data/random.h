// A sequential random stream for the data generators (ListOps, Pathfinder): Philox draws (kernels/philox.h) read
// in order, so a seed gives the same data on every machine, compiler and thread count (std:: distributions are
// implementation-defined and would not).
#pragma once
#include <cstdint>

#include "kernels/philox.h"

namespace mixgrad::data {

class DataRng {
 public:
  // `stream` separates independent uses of one seed (e.g. one stream per generated image).
  explicit DataRng(uint64_t seed, uint64_t stream = 0) : seed_(seed), stream_(stream) {}

  uint32_t next_u32() { return kernels::philox_u32(seed_, stream_, counter_++); }
  uint64_t next_u64() {
    const uint64_t lo = next_u32();
    return (static_cast<uint64_t>(next_u32()) << 32) | lo;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  // Uniform integer in [lo, hi] (inclusive); lo <= hi. 64 random bits mod the span: the bias is below
  // span / 2^64, far under anything a data set of this size could show.
  int64_t randint(int64_t lo, int64_t hi) {
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(span == 0 ? next_u64() : next_u64() % span);
  }
  uint64_t draws() const { return counter_; }

 private:
  uint64_t seed_, stream_, counter_ = 0;
};

}  // namespace mixgrad::data
