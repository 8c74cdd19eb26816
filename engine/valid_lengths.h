// Per-sample valid lengths as the sequence ops take them (EMA, gated attention, masked BatchNorm): one check and one
// conversion for all of them. Internal to the engine's op files.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mixgrad::detail {

struct ValidLengths {
  Tensor lengths;      // int32 [B] on the reference tensor's device
  int64_t total = -1;  // Σ lengths when they were checked on the host; -1 when they stay on the device
};

// `lengths` (int32 or int64 [B], on the CPU or on `ref`'s device) for `ref` [B, L, ...] named `ref_name` in messages.
// Host values are checked here (each in [1, L]; the error names the sample); device values are checked on the device
// and a bad one is reported at the next read-back (the kernels clamp to [0, L] meanwhile) — never a read-back here.
ValidLengths prepare_valid_lengths(const char* op, const Tensor& lengths, const Tensor& ref, const char* ref_name);

}  // namespace mixgrad::detail
