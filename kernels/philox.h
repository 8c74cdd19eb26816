// Philox4x32-10 counter-based generator (Salmon et al., SC'11), identical on host and device, so a seed and
// offset give the same random numbers on the CPU and on CUDA.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace mixgrad::kernels {

struct Philox4 {
  uint32_t v[4];
};

MIXGRAD_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// One Philox4x32-10 block: key = 64-bit seed, counter = 128 bits (block index, stream offset).
MIXGRAD_HD Philox4 philox4x32_10(uint64_t seed, uint64_t counter_lo, uint64_t counter_hi) {
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = philox_mulhilo(0xD2511F53u, c0, &hi0);
    const uint32_t lo1 = philox_mulhilo(0xCD9E8D57u, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The i-th 32-bit draw of the stream (seed, offset): draw i lives in block i/4, lane i%4.
MIXGRAD_HD uint32_t philox_u32(uint64_t seed, uint64_t offset, uint64_t i) {
  const Philox4 r = philox4x32_10(seed, i >> 2, offset);
  return r.v[i & 3];
}

// Uniform in [0, 1) with 24 random bits: exactly representable, so bit-identical on host and device.
MIXGRAD_HD float philox_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
  return static_cast<float>(philox_u32(seed, offset, i) >> 8) * (1.0f / 16777216.0f);
}

}  // namespace mixgrad::kernels
