// Test helpers shared by the CPU and CUDA suites: the tolerance table, tensor comparison that reports the worst
// element, and central finite-difference gradient checks in double precision.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/mixgrad.h"

namespace mixgrad::testing {

struct Tolerance {
  double rtol, atol;
};

// One table for every comparison the suites make.
enum class Compare { forward_f32, forward_f64, cpu_vs_cuda, gradcheck_f64 };
Tolerance tolerance(Compare c);

struct CloseResult {
  bool ok = true;
  std::string message;  // max abs/rel error and where (flat index and multi-index)
};

// |a - b| <= atol + rtol·|b| element-wise (NaN equals NaN at the same position); shapes must match.
CloseResult all_close(const Tensor& actual, const Tensor& expected, Tolerance tol);
// Exactly equal bit patterns.
CloseResult bit_equal(const Tensor& actual, const Tensor& expected);

// Central finite differences: for each input (float64, CPU, requires_grad) compares the analytic gradient of
// sum(f(inputs) · w) (w fixed random weights) with (L(x + eps) − L(x − eps)) / 2eps.
CloseResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                      double eps = 1e-6, Tolerance tol = tolerance(Compare::gradcheck_f64));

// Random float64 CPU tensor in [lo, hi) that requires grad (for gradcheck).
Tensor rand_f64(const Shape& shape, double lo = -1.0, double hi = 1.0, bool requires_grad = true);

}  // namespace mixgrad::testing

// REQUIRE with the comparison's message on failure.
#define REQUIRE_CLOSE(result)           \
  do {                                  \
    const auto& mg_r_ = (result);       \
    INFO(mg_r_.message);                \
    REQUIRE(mg_r_.ok);                  \
  } while (0)
