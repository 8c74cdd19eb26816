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

// kPhiloxLanes Philox4x32-10 blocks at once, for CPU loops: block n has counter (lo[n] | hi[n] << 32, c2 | c3 << 32)
// and its four words land in out[0..3][n]: philox4x32_10's numbers, bit for bit. Each round reads one set of lane
// arrays and writes another (no aliasing), with the low and high halves of each product as separate expressions:
// that is the form compilers turn into vector multiplies (vpmuludq), about 5x the scalar rate on AVX2.
constexpr int kPhiloxLanes = 16;
inline void philox_lanes_round(uint32_t* __restrict y0, uint32_t* __restrict y1, uint32_t* __restrict y2,
                               uint32_t* __restrict y3, const uint32_t* __restrict x0, const uint32_t* __restrict x1,
                               const uint32_t* __restrict x2, const uint32_t* __restrict x3, uint32_t k0,
                               uint32_t k1) {
  for (int n = 0; n < kPhiloxLanes; ++n) {
    const uint32_t a = x0[n], c = x2[n];
    y0[n] = static_cast<uint32_t>((uint64_t{c} * 0xCD9E8D57u) >> 32) ^ x1[n] ^ k0;
    y1[n] = c * 0xCD9E8D57u;
    y2[n] = static_cast<uint32_t>((uint64_t{a} * 0xD2511F53u) >> 32) ^ x3[n] ^ k1;
    y3[n] = a * 0xD2511F53u;
  }
}
inline void philox4x32_10_lanes(uint64_t seed, const uint32_t* lo, const uint32_t* hi, uint32_t c2, uint32_t c3,
                                uint32_t out[4][kPhiloxLanes]) {
  uint32_t x[4][kPhiloxLanes], y[4][kPhiloxLanes];
  for (int n = 0; n < kPhiloxLanes; ++n) x[0][n] = lo[n], x[1][n] = hi[n], x[2][n] = c2, x[3][n] = c3;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; round += 2) {  // x -> y -> x
    philox_lanes_round(y[0], y[1], y[2], y[3], x[0], x[1], x[2], x[3], k0, k1);
    k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    philox_lanes_round(x[0], x[1], x[2], x[3], y[0], y[1], y[2], y[3], k0, k1);
    k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
  }
  for (int w = 0; w < 4; ++w)
    for (int n = 0; n < kPhiloxLanes; ++n) out[w][n] = x[w][n];
}

// Keep tests without floating point: a draw r passes "uniform of r >= p" (the 24-bit uniform float(r >> 8) / 2^24 of
// philox_uniform) exactly when (r >> 8) >= philox_keep_threshold(p) = ceil(p · 2^24), clamped to [0, 2^24] (2^24:
// nothing passes, p >= 1). Both sides are exact (r >> 8 < 2^24; scaling by 2^24 is exact), so the tests agree for
// every r and p, and the integer form vectorises.
inline uint32_t philox_keep_threshold(float p) {
  if (!(p > 0.0f)) return 0;
  if (p >= 1.0f) return 16777216u;
  const double t = static_cast<double>(p) * 16777216.0;
  const uint32_t c = static_cast<uint32_t>(t);
  return static_cast<double>(c) == t ? c : c + 1;
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
