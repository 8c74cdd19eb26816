// The default Philox generator: a seed and a stream counter. Every random op call takes a fresh stream
// (kernels/philox.h: counter_hi = stream, counter_lo = block index), so the same seed replays the same numbers
// on the CPU and on CUDA, whatever the sizes of earlier draws.
#pragma once
#include <cstdint>

namespace mixgrad {

struct GeneratorState {
  uint64_t seed = 0;
  uint64_t offset = 0;
};

void manual_seed(uint64_t seed);
GeneratorState generator_state();
void set_generator_state(GeneratorState s);
// Returns the stream to use for one random op and advances the generator.
uint64_t next_random_stream();

}  // namespace mixgrad
