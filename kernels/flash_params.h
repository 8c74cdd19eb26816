// Parameters of the fused flash-style attention kernels (kernels/cpu/flash_attention.h and
// kernels/cuda/flash_attention.h, specs/mixers.md §2) and the dropout keep-mask both backends share.
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/common.h"
#include "kernels/philox.h"
#include "kernels/precision.h"

namespace mixgrad::kernels {

// Element strides of one [B, H, rows, d] operand; the last dimension (d) is always contiguous (stride 1).
// Example: the q part of a fused-projection [B, T, 3, H, d] tensor has batch = T·3·H·d, head = d, row = 3·H·d.
struct FlashStrides {
  int64_t batch = 0, head = 0, row = 0;
};

// Contiguous [B, H, rows, d].
inline FlashStrides flash_contiguous_strides(int64_t H, int64_t rows, int64_t d) {
  return FlashStrides{H * rows * d, rows * d, d};
}

// Q [B,H,T,d], K and V [B,H,Tk,d], O and dO [B,H,T,d], LSE [B,H,T] (always contiguous fp32),
// dQ like Q, dK and dV like K (each with its own strides). Semantics (specs/mixers.md §2.1):
//   S_ij = scale · q_i·k_j, P = softmax_j(S) over visible keys, O = (P ⊙ M/(1−p)) V, LSE_i = ln Σ_j exp(S_ij).
// Key j is visible to query i iff j < kv_len[b] (when kv_len is given) and, when causal, j ≤ i + (Tk − T)
// (bottom-right aligned). Rows with no visible key give O = 0, LSE = +inf and zero gradients.
struct FlashParams {
  int64_t B = 0, H = 0, T = 0, Tk = 0, d = 0;
  FlashStrides q, k, v, o;       // forward inputs and output
  FlashStrides dout, dq, dk, dv;  // backward: incoming gradient dO and the outputs dQ, dK, dV
  float scale = 1.0f;             // finite; flash_params_contiguous sets 1/√d
  bool causal = false;
  // Optional [B] key lengths (host memory for the CPU kernels, device memory for the CUDA kernels); values
  // are clamped to [0, Tk].
  const int32_t* kv_len = nullptr;
  // Attention dropout probability in [0, 1); the keep-mask is flash_dropout_keep(seed, offset, b, h, i, j, p),
  // regenerated identically in forward and backward.
  float dropout_p = 0.0f;
  uint64_t seed = 0, offset = 0;
  // true (default): dQ from a second pass over query blocks, no float atomics, bitwise reproducible.
  // false is accepted; the kernels currently run the deterministic path in both cases.
  bool deterministic = true;
  // CUDA only: tf32 or bf16 run the products of the forward and the backward on tensor cores
  // (kernels/flash_attention_tc.h: operands rounded to that precision, fp32 accumulation) on devices of compute
  // capability 8.0 and newer; fp32 runs the SIMT kernels. The CPU kernels are the fp32/fp64 reference and ignore it.
  // The engine sets it from matmul_precision().
  MatmulPrecision precision = MatmulPrecision::fp32;
};

// Every operand contiguous [B, H, rows, d], scale = 1/√d, no masks, no dropout.
inline FlashParams flash_params_contiguous(int64_t B, int64_t H, int64_t T, int64_t Tk, int64_t d) {
  FlashParams p;
  p.B = B, p.H = H, p.T = T, p.Tk = Tk, p.d = d;
  p.q = p.o = p.dout = p.dq = flash_contiguous_strides(H, T, d);
  p.k = p.v = p.dk = p.dv = flash_contiguous_strides(H, Tk, d);
  p.scale = d > 0 ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(d))) : 1.0f;
  return p;
}

// Throws std::invalid_argument naming `op` when sizes, scale or dropout_p are out of range.
inline void flash_check_params(const FlashParams& p, const char* op) {
  const auto fail = [&](const std::string& what) { throw std::invalid_argument(std::string(op) + ": " + what); };
  if (p.B < 0 || p.H < 0 || p.T < 0 || p.Tk < 0 || p.d < 0)
    fail("negative size (B=" + std::to_string(p.B) + ", H=" + std::to_string(p.H) + ", T=" + std::to_string(p.T) +
         ", Tk=" + std::to_string(p.Tk) + ", d=" + std::to_string(p.d) + ")");
  if (p.T > INT32_MAX || p.Tk > INT32_MAX) fail("T and Tk must be < 2^31");
  if (!std::isfinite(p.scale)) fail("scale must be finite");
  if (!(p.dropout_p >= 0.0f && p.dropout_p < 1.0f))
    fail("dropout_p must be in [0, 1), got " + std::to_string(p.dropout_p));
}

// Number of keys visible to query row i (visible keys are always the prefix [0, limit) of the row).
MIXGRAD_HD int64_t flash_key_limit(int64_t i, int64_t T, int64_t Tk, bool causal, int64_t kv_len_b) {
  int64_t lim = kv_len_b < Tk ? kv_len_b : Tk;
  if (causal) {
    const int64_t c = i + (Tk - T) + 1;
    lim = c < lim ? c : lim;
  }
  return lim < 0 ? 0 : lim;
}

// Dropout randomness: a Philox key derived from (seed, offset) once per launch, then one Philox block per
// (b, h, i, group of 4 keys) whose 4 words decide keys 4·j4 .. 4·j4+3. Keep iff uniform24 >= p.
MIXGRAD_HD uint64_t flash_dropout_key(uint64_t seed, uint64_t offset) {
  // Counter word far from the ones philox_u32 uses, so the derived key is unrelated to ordinary draws.
  const Philox4 r = philox4x32_10(seed, ~uint64_t{0}, offset);
  return (static_cast<uint64_t>(r.v[1]) << 32) | r.v[0];
}

MIXGRAD_HD Philox4 flash_dropout_bits4(uint64_t key, int64_t b, int64_t h, int64_t i, int64_t j4) {
  const uint64_t lo = (static_cast<uint64_t>(static_cast<uint32_t>(i)) << 32) | static_cast<uint32_t>(j4);
  const uint64_t hi = (static_cast<uint64_t>(static_cast<uint32_t>(b)) << 32) | static_cast<uint32_t>(h);
  return philox4x32_10(key, lo, hi);
}

MIXGRAD_HD bool flash_dropout_keep_word(uint32_t r, float p) {
  return static_cast<float>(r >> 8) * (1.0f / 16777216.0f) >= p;
}

MIXGRAD_HD uint32_t flash_philox_word(const Philox4& r, int lane) {
  return lane == 0 ? r.v[0] : lane == 1 ? r.v[1] : lane == 2 ? r.v[2] : r.v[3];
}

// Whether attention weight (b, h, query i, key j) is kept under dropout probability p (always kept for p <= 0).
// A deterministic function of (seed, offset, b, h, i, j), identical on host and device.
MIXGRAD_HD bool flash_dropout_keep(uint64_t seed, uint64_t offset, int64_t b, int64_t h, int64_t i, int64_t j,
                                   float p) {
  if (!(p > 0.0f)) return true;
  const Philox4 r = flash_dropout_bits4(flash_dropout_key(seed, offset), b, h, i, j >> 2);
  return flash_dropout_keep_word(flash_philox_word(r, static_cast<int>(j & 3)), p);
}

}  // namespace mixgrad::kernels
