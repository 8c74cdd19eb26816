// The test suites' tolerance table.
#include "tests/common/check.h"

namespace mixgrad::testing {

Tolerance tolerance(Compare c) {
  switch (c) {
    case Compare::forward_f32:
      return {1e-5, 1e-6};
    case Compare::forward_f64:
      return {1e-11, 1e-13};
    case Compare::cpu_vs_cuda:
      return {1e-4, 1e-5};
    case Compare::gradcheck_f64:
      return kGradcheckTolerance;
  }
  return {0, 0};
}

}  // namespace mixgrad::testing
