// Checking numbers: tensor comparison that reports the worst element, and central finite-difference gradient checks
// in double precision. Public so that a layer written outside mixgrad (README "Extend mixgrad") is checked with the
// same helper as the engine's own ops; the test suites' tolerance table lives in tests/common/check.h.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace mixgrad {

struct Tolerance {
  double rtol, atol;
};

struct CloseResult {
  bool ok = true;
  std::string message;  // max abs/rel error and where (flat index and multi-index)
};

// |a - b| <= atol + rtol·|b| element-wise (NaN equals NaN at the same position); shapes must match. Any device and
// floating dtype (compared as host doubles).
CloseResult all_close(const Tensor& actual, const Tensor& expected, Tolerance tol);
// Exactly equal bit patterns (same shape and dtype).
CloseResult bit_equal(const Tensor& actual, const Tensor& expected);

// The default tolerance of gradcheck: float64 central differences with eps 1e-6.
inline constexpr Tolerance kGradcheckTolerance{1e-5, 1e-7};

// Central finite differences: for each input that requires grad (float64 CPU tensors; an error result otherwise)
// compares the analytic gradient of sum(f(inputs) · w), w fixed random weights in [0.5, 1.5), with
// (L(x + eps) − L(x − eps)) / 2eps element by element. Inputs that do not require grad (or are undefined) are passed
// through unchanged. Leaves every input's .grad cleared.
CloseResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                      double eps = 1e-6, Tolerance tol = kGradcheckTolerance);

// Random float64 CPU tensor in [lo, hi) that requires grad (gradcheck's inputs).
Tensor rand_f64(const Shape& shape, double lo = -1.0, double hi = 1.0, bool requires_grad = true);

}  // namespace mixgrad
