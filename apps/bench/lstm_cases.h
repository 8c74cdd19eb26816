// Bench cases for the fused LSTM layer op (engine/lstm.h): forward and forward + backward of one bidirectional
// layer at LRA sizes, with per-sample lengths.
#pragma once
#include <vector>

#include "apps/bench/op_cases.h"

namespace mixgrad::bench {

// Op "lstm", one bidirectional layer, hidden H = input D = 128 (the project's own LSTM size: no LSTM preset is
// published, specs/lra.md §6.5), lengths spread over [L/2, L]:
//   ListOps  x [32, 2000, 128]
//   Image    x [50, 1024, 128]
// FLOPs: forward 2·B·L·dirs·4H·(D + H) (input projection + recurrent GEMMs), backward twice that. smoke: a tiny
// [2, 16, 8] case only (checks that it runs; not for timing).
std::vector<OpCase> lstm_op_cases(bool smoke = false);

}  // namespace mixgrad::bench
