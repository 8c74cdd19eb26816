// Bench cases for S2-MLPv2 (specs/mixers.md §1): the spatial shift and the two memory-bound split-attention passes
// (K1 = s2_branch_sum, K3 = s2_split_combine), reported in GB/s.
#pragma once
#include <vector>

#include "apps/bench/op_cases.h"

namespace mixgrad::bench {

// Ops "spatial_shift" (x [B, H, W, C]: forward reads x and writes y, backward reads dY and writes dX: 2·B·H·W·C·4
// bytes each), "s2_branch_sum" (z [B, N, 3C] -> a [B, C]: forward reads z; backward writes dz) and "s2_split_combine"
// (z, abar [B, 3, C] -> out [B, N, C]: forward reads z and writes out; backward reads dOut and z, writes dz; the
// [B, 3, C] tensors are negligible). Shapes: the fmnist ViT with --block s2mlpv2 (B 128, 7×7 grid, C 64) and the
// reference model's two stages (B 64: 32×32 grid, C 192; 16×16 grid, C 384).
std::vector<OpCase> s2mlp_op_cases();

}  // namespace mixgrad::bench
