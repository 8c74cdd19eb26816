// Helpers for the engine op tests that check ops against naive float64 reference loops: seeded random vectors,
// tensors built from them, values read back as doubles, index and broadcast-shape math.
#pragma once
#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "engine/mixgrad.h"
#include "tests/common/check.h"

// The expression throws mixgrad::Error with a message matching `matcher`.
#define REQUIRE_MG_ERROR(expr, matcher)        \
  do {                                         \
    REQUIRE_THROWS_AS(expr, ::mixgrad::Error); \
    REQUIRE_THROWS_WITH(expr, matcher);        \
  } while (0)

namespace mixgrad::testing {

// n values uniform in [lo, hi), reproducible from `seed`.
std::vector<double> uniform(int64_t n, double lo, double hi, uint64_t seed);

// The values a tensor of dtype dt actually holds.
std::vector<double> rounded(std::vector<double> v, DType dt);

// CPU tensor of shape s holding v, in dtype dt.
Tensor make(const std::vector<double>& v, const Shape& s, DType dt = DType::f64);
// The same in float64, requiring grad.
Tensor make_leaf(const std::vector<double>& v, const Shape& s);

// Forward tolerance for dtype dt (forward_f64 or forward_f32).
Tolerance fwd_tol(DType dt);

// The tensor's values (detached) as doubles.
std::vector<double> values(const Tensor& t);

// Multi-index of row-major flat index `flat` in shape s, and back.
std::vector<int64_t> unravel(int64_t flat, const Shape& s);
int64_t ravel(const std::vector<int64_t>& idx, const Shape& s);

// NumPy broadcast of two shapes (sizes assumed compatible).
Shape broadcast_shapes(const Shape& a, const Shape& b);

}  // namespace mixgrad::testing
