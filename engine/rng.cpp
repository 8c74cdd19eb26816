// The default generator's state (one of the engine's few globals, per DESIGN.md).
#include "engine/rng.h"

#include <mutex>

namespace mixgrad {
namespace {
std::mutex g_mutex;
GeneratorState g_state{0x5eed, 0};
}  // namespace

void manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_state = {seed, 0};
}

GeneratorState generator_state() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_state;
}

void set_generator_state(GeneratorState s) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_state = s;
}

uint64_t next_random_stream() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_state.offset++;
}

}  // namespace mixgrad
