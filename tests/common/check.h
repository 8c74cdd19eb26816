// Test helpers shared by the CPU and CUDA suites: the tolerance table. Tensor comparison that reports the worst
// element and the float64 finite-difference gradient check are the public ones of engine/gradcheck.h (the same helper
// a layer written outside mixgrad uses), re-exported here under mixgrad::testing.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/gradcheck.h"
#include "engine/mixgrad.h"

namespace mixgrad::testing {

using mixgrad::all_close;
using mixgrad::bit_equal;
using mixgrad::CloseResult;
using mixgrad::gradcheck;
using mixgrad::rand_f64;
using mixgrad::Tolerance;

// One table for every comparison the suites make (gradcheck_f64 is gradcheck's default, kGradcheckTolerance).
enum class Compare { forward_f32, forward_f64, cpu_vs_cuda, gradcheck_f64 };
Tolerance tolerance(Compare c);

}  // namespace mixgrad::testing

// REQUIRE with the comparison's message on failure.
#define REQUIRE_CLOSE(result)     \
  do {                            \
    const auto& mg_r_ = (result); \
    INFO(mg_r_.message);          \
    REQUIRE(mg_r_.ok);            \
  } while (0)
