// Bench cases for the CSP op (specs/csp.md §8): forward and backward at the three sizes of §8.1, each with a
// device-to-device copy of the same tensor (`clone()`) as the bandwidth reference.
#pragma once
#include <cstdint>
#include <vector>

#include "apps/bench/op_cases.h"

namespace mixgrad::bench {

// Ops "csp" (forward 2·B·N·D·4 bytes, backward with recompute 3·B·N·D·4) and "copy" (forward 2·B·N·D·4; its
// backward is a pass-through, so its bytes are 0 → null GB/s). Shapes, in order:
//   ViT CIFAR-10 layer   [64, 64, 512]      K = 2, constant schedule
//   LRA Image            [50, 1024, 320]    K = 2, exponential schedule, layer 4 of 8 (N_s = 1024)
//   Path-X               [pathx_batch, 16384, 128]  K = 2, exponential schedule, layer 3 of 4 (the widest shifts)
// pathx_batch is 60 in the spec (a 0.5 GB tensor); pass 4 on the CPU to keep a sample short. The batch is part of
// the shape string, so records of different batches never compare by mistake.
std::vector<OpCase> csp_op_cases(int64_t pathx_batch = 60);

}  // namespace mixgrad::bench
