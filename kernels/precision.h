// Compute precision of matrix products (GEMMs and the fused attention's tensor-core products), and the operand
// roundings that define it, identical on host and device.
//   fp32: full fp32 products (the default; the CPU kernels always compute this way unless told otherwise).
//   tf32: operands rounded to TF32 (10 mantissa bits), fp32 accumulation: cuBLAS TF32 tensor-op math and the TF32
//         attention kernels (kernels/flash_attention_tc.h) on CUDA; the CPU computes fp32.
//   bf16: operands rounded to bfloat16 (7 mantissa bits, round to nearest even), fp32 accumulation and fp32 outputs:
//         cuBLAS bf16 GEMMs and the attention kernels with bf16-rounded operands on CUDA; on the CPU the engine's
//         matmul / linear round their operands the same way (fp32 sums of exact bf16 products), so a recipe's bf16
//         numerics can be checked without a GPU. Weights, gradients and optimizer state stay fp32 ("master weights").
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace mixgrad::kernels {

enum class MatmulPrecision : uint8_t { fp32, tf32, bf16 };

inline const char* precision_name(MatmulPrecision p) {
  switch (p) {
    case MatmulPrecision::fp32: return "fp32";
    case MatmulPrecision::tf32: return "tf32";
    case MatmulPrecision::bf16: return "bf16";
  }
  return "unknown";
}

// TF32 rounding of an fp32 bit pattern as cvt.rna.tf32.f32 does it: round to nearest on the 13 dropped mantissa
// bits, ties away from zero (adding half an ulp to the magnitude carries into the exponent, so the largest
// values round to infinity as they should); infinities stay, NaN becomes the canonical quiet NaN.
MIXGRAD_HD uint32_t tf32_round_bits(uint32_t x) {
  if ((x & 0x7f800000u) == 0x7f800000u) return (x & 0x007fffffu) != 0 ? 0x7fffffffu : x;
  return (x + 0x00001000u) & 0xffffe000u;
}

// bfloat16 rounding of an fp32 bit pattern (the result keeps fp32 layout, low 16 bits zero): round to nearest, ties
// to even, as __float2bfloat16_rn and PyTorch's conversion do; infinities stay, NaN becomes the canonical quiet NaN.
MIXGRAD_HD uint32_t bf16_round_bits(uint32_t x) {
  if ((x & 0x7f800000u) == 0x7f800000u) return (x & 0x007fffffu) != 0 ? 0x7fffffffu : x;
  return (x + 0x00007fffu + ((x >> 16) & 1u)) & 0xffff0000u;
}

}  // namespace mixgrad::kernels
