#include "tests/common/csp_reference.h"

#include "engine/csp.h"

namespace mixgrad::testing {

std::vector<int32_t> csp_shifts_for(const CspCase& tc, std::mt19937& gen) {
  const std::string s = tc.schedule;
  if (s == "constant") return csp_shifts_constant(tc.D, tc.N, tc.K);
  if (s == "exponential") return csp_shifts_exponential(2, 3, tc.D, tc.N + 5);
  std::uniform_int_distribution<int32_t> d(0, int32_t(3 * tc.N));
  std::vector<int32_t> r(size_t(tc.D));
  for (auto& e : r) e = d(gen);
  return r;
}

const std::vector<CspCase>& csp_cases(bool tile_edges) {
  static const std::vector<CspCase> table = {
      {"K2 N8 D5", 2, 8, 5, 2, "constant", {}},
      {"K2 N1000 D7 exp", 2, 1000, 7, 2, "exponential", {}},
      {"K2 N64 D37 random", 3, 64, 37, 2, "random", {}},
      {"K4 N64 D8 const", 1, 64, 8, 4, "constant", {}},
      {"K4 N36 D33 exp", 2, 36, 33, 4, "exponential", {}},
      {"K8 N24 D33 exp", 2, 24, 33, 8, "exponential", {}},
      {"K8 N24 D70 random", 1, 24, 70, 8, "random", {}},
      {"B1 D1", 1, 16, 1, 4, "exponential", {}},
      {"N=K=2", 3, 2, 9, 2, "random", {}},
      {"N=K=8", 2, 8, 3, 8, "random", {}},
      {"K2 lengths", 4, 16, 70, 2, "exponential", {1, 16, 7, 13}},
      {"K4 lengths", 3, 12, 40, 4, "random", {3, 12, 1}},
      {"K8 lengths", 4, 24, 9, 8, "exponential", {5, 24, 17, 1}},
      {"K2 N1000 lengths", 2, 1000, 5, 2, "constant", {999, 501}},
  };
  static const std::vector<CspCase> with_edges = [] {
    std::vector<CspCase> t = table;
    t.push_back({"K2 N256 D100 const lengths", 4, 256, 100, 2, "constant", {256, 65, 130, 1}});
    t.push_back({"K4 N520 D64 exp lengths", 3, 520, 64, 4, "exponential", {520, 200, 63}});
    t.push_back({"K8 N1024 D48 random", 2, 1024, 48, 8, "random", {}});
    t.push_back({"K8 N512 D40 const lengths", 2, 512, 40, 8, "constant", {317, 512}});
    // Several 1024-row bands of the window design, a partial last band, an octet tail (D % 8 != 0), a length that
    // ends inside a band, and random shifts whose spread overflows the window (its direct-load fallback).
    t.push_back({"K2 N2600 D21 exp lengths", 2, 2600, 21, 2, "exponential", {2600, 1337}});
    t.push_back({"K4 N3072 D24 random", 1, 3072, 24, 4, "random", {}});
    return t;
  }();
  return tile_edges ? with_edges : table;
}

}  // namespace mixgrad::testing
