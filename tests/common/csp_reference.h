// Shared by the CPU and CUDA CSP suites: the case table (K 2/4/8, lengths, shift schedules), the shifts each case
// uses, seeded value fills (ties, ±0, NaN/±inf), and bit-for-bit comparison of value vectors.
#pragma once
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/mixgrad.h"

namespace mixgrad::testing {

struct CspCase {
  const char* name;
  int64_t B, N, D;
  int K;
  // "constant" (small spread: the CUDA tiled path), "exponential" (layer 2 of 3, N_s = N + 5 so shifts exceed n_b),
  // "random" (wide, drawn from the case's generator)
  const char* schedule;
  std::vector<int32_t> lengths;
};

// The shifts case tc uses; "random" draws them from gen.
std::vector<int32_t> csp_shifts_for(const CspCase& tc, std::mt19937& gen);

// The case table both suites run. With tile_edges, four more cases follow that cross the CUDA tiled design's band
// and tile edges (N over several 64-row bands, D over several 32-channel tiles).
const std::vector<CspCase>& csp_cases(bool tile_edges = false);

enum class Fill { normal, ties01, zeros_signed, specials };

// n values of the given fill, reproducible from gen. The CPU suite draws the pick only for fills that use it;
// the CUDA suite draws it for every element (pick_every_element), which keeps each suite's inputs as they were.
template <class T>
std::vector<T> csp_values(size_t n, Fill fill, std::mt19937& gen, bool pick_every_element = false) {
  std::vector<T> x(n);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_int_distribution<int> pick(0, 6);
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  for (auto& e : x) {
    const int p0 = pick_every_element ? pick(gen) : 0;
    auto p = [&] { return pick_every_element ? p0 : pick(gen); };
    switch (fill) {
      case Fill::normal: e = T(normal(gen)); break;
      case Fill::ties01: e = T(p() % 2); break;
      case Fill::zeros_signed: e = p() % 2 ? T(-0.0) : T(0.0); break;
      case Fill::specials: {
        const int q = p();
        e = q == 0 ? nan : q == 1 ? -nan : q == 2 ? inf : q == 3 ? -inf : q == 4 ? T(-0.0) : q == 5 ? T(0.0) : T(1);
        break;
      }
    }
  }
  return x;
}

// Same size and identical bit patterns; on a difference `where` (when given) names the first one.
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b, std::string* where = nullptr) {
  if (a.size() != b.size()) {
    if (where) *where = fmt::format("sizes {} vs {}", a.size(), b.size());
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      if (where) *where = fmt::format("first difference at flat index {}: {} vs {}", i, a[i], b[i]);
      return false;
    }
  return true;
}

}  // namespace mixgrad::testing

// REQUIRE that two value vectors are bit for bit the same, naming the first difference on failure.
#define REQUIRE_SAME_BITS(a, b)                                              \
  do {                                                                       \
    std::string mg_where_;                                                   \
    const bool mg_ok_ = ::mixgrad::testing::same_bits((a), (b), &mg_where_); \
    INFO(mg_where_);                                                         \
    REQUIRE(mg_ok_);                                                         \
  } while (0)
