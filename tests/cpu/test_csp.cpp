// CSP (specs/csp.md §11.2): the op and its kernels against a brute-force reference that builds the explicit
// permutation per (sample, channel) as §11.1 describes — forward and backward bit for bit — plus the permutation
// property, the adjoint identity, finite differences, ties/NaN/±inf/±0 order rules, padding, the shift schedules'
// test vectors, the sorting-network fast path against the general path, every error message, and Path-X size.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/csp.h"
#include "engine/mixgrad.h"
#include "kernels/cpu/csp.h"
#include "tests/common/check.h"
#include "tests/common/csp_reference.h"

namespace {

using namespace mixgrad;
using testing::bit_equal;
using testing::Fill;
using testing::same_bits;
using Case = testing::CspCase;

// ---- brute-force reference (§11.1) -------------------------------------------------------------------------------

template <class T>
bool ref_before(T a, T b) {  // §5: NaN after every number
  return (!std::isnan(a) && std::isnan(b)) || a < b;
}
template <class T>
bool ref_equiv(T a, T b) {  // §5: -0 == +0, NaN == NaN
  return a == b || (std::isnan(a) && std::isnan(b));
}

template <class T>
struct Reference {
  std::vector<T> y, dv;
  std::vector<std::vector<int64_t>> perm;  // perm[b·D + c][j] = π_{b,c}(j) for j < n_b
};

template <class T>
Reference<T> brute_force(const std::vector<T>& v, const std::vector<T>& dy, const std::vector<int32_t>& shifts,
                         const std::vector<int32_t>& lengths, int64_t B, int64_t N, int64_t D, int K) {
  Reference<T> r;
  r.y.assign(v.size(), T(0));
  r.dv.assign(v.size(), T(0));
  auto at = [&](int64_t b, int64_t j, int64_t c) { return size_t((b * N + j) * D + c); };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < D; ++c) {
      const int64_t n = lengths.empty() ? N : lengths[size_t(b)];
      const int64_t s = int64_t(shifts[size_t(c)]) % n;
      std::vector<int64_t> src(static_cast<size_t>(n)), pi(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) src[size_t(j)] = ((j - s) % n + n) % n;
      for (int64_t g0 = 0; g0 < n; g0 += K) {
        const int64_t g1 = std::min<int64_t>(n, g0 + K);
        std::vector<std::pair<T, int64_t>> members;
        for (int64_t j = g0; j < g1; ++j) members.push_back({v[at(b, src[size_t(j)], c)], j});
        std::sort(members.begin(), members.end(), [](const auto& x, const auto& y) {
          return ref_before(x.first, y.first) || (ref_equiv(x.first, y.first) && x.second < y.second);
        });
        for (int64_t k = 0; k < g1 - g0; ++k) pi[size_t(g0 + k)] = src[size_t(members[size_t(k)].second)];
      }
      std::vector<int64_t> check = pi;
      std::sort(check.begin(), check.end());
      for (int64_t j = 0; j < n; ++j) REQUIRE(check[size_t(j)] == j);  // π is a bijection of [0, n)
      for (int64_t j = 0; j < n; ++j) {
        r.y[at(b, j, c)] = v[at(b, pi[size_t(j)], c)];
        r.dv[at(b, pi[size_t(j)], c)] = dy[at(b, j, c)];
      }
      r.perm.push_back(std::move(pi));
    }
  return r;
}

// ---- helpers ------------------------------------------------------------------------------------------------------

template <class T>
Tensor tensor_of(const std::vector<T>& x, const Shape& s) {
  return from_vector<T>(x, s, TensorOptions(dtype_v<T>));
}
Tensor lengths_tensor(const std::vector<int32_t>& lengths) {
  return lengths.empty() ? Tensor() : from_vector<int32_t>(lengths, {int64_t(lengths.size())}, TensorOptions(DType::i32));
}

// Runs one case through the engine op (forward and autograd backward) and against the brute force.
template <class T>
void check_case(const Case& tc, Fill fill, uint32_t seed) {
  INFO(tc.name << " fill " << int(fill) << " dtype " << dtype_name(dtype_v<T>));
  std::mt19937 gen(seed);
  const Shape shape{tc.B, tc.N, tc.D};
  const size_t n = size_t(tc.B * tc.N * tc.D);
  const auto shifts = testing::csp_shifts_for(tc, gen);
  const auto v = testing::csp_values<T>(n, fill, gen);
  const auto dy = testing::csp_values<T>(n, Fill::normal, gen);
  const auto ref = brute_force(v, dy, shifts, tc.lengths, tc.B, tc.N, tc.D, tc.K);

  Tensor vt = tensor_of(v, shape).requires_grad_();
  Tensor y = csp(vt, shifts, tc.K, lengths_tensor(tc.lengths));
  REQUIRE(y.shape() == shape);
  REQUIRE(y.dtype() == dtype_v<T>);
  REQUIRE_SAME_BITS(y.detach().to_vector<T>(), ref.y);
  y.backward(tensor_of(dy, shape));
  REQUIRE(vt.grad().defined());
  REQUIRE_SAME_BITS(vt.grad().to_vector<T>(), ref.dv);
  // The explicit transpose entry point gives the same.
  Tensor dv2 = csp_backward(tensor_of(dy, shape), vt.detach(), shifts, tc.K, lengths_tensor(tc.lengths));
  REQUIRE_SAME_BITS(dv2.to_vector<T>(), ref.dv);
}

// ---- 1, 3, 10: exactness over the case table ---------------------------------------------------------------------

TEST_CASE("csp: forward and backward equal the brute-force permutation bit for bit", "[csp]") {
  uint32_t seed = 1;
  for (const auto& tc : testing::csp_cases()) {
    check_case<float>(tc, Fill::normal, seed++);
    check_case<double>(tc, Fill::normal, seed++);
  }
}

TEST_CASE("csp: hand-computed example (shift then sort, no inverse shift)", "[csp]") {
  // N = 8, D = 1, K = 2, shift 1: U = roll(V, +1) = [4, 3, 5, 8, 1, 7, 2, 6]; pairs sorted: [3, 4, 5, 8, 1, 7, 2, 6].
  Tensor v = from_vector<float>({3, 5, 8, 1, 7, 2, 6, 4}, {1, 8, 1});
  REQUIRE(csp(v, {1}, 2).to_vector<float>() == std::vector<float>{3, 4, 5, 8, 1, 7, 2, 6});
  // Shift 3 with K = 4: U = [2, 6, 4, 3, 5, 8, 1, 7] → [2, 3, 4, 6, 1, 5, 7, 8]; a shift >= N is used mod N (11 ≡ 3).
  REQUIRE(csp(v, {3}, 4).to_vector<float>() == std::vector<float>{2, 3, 4, 6, 1, 5, 7, 8});
  REQUIRE(csp(v, {11}, 4).to_vector<float>() == std::vector<float>{2, 3, 4, 6, 1, 5, 7, 8});
  // Two channels with different shifts are independent.
  Tensor v2 = from_vector<float>({3, 30, 5, 50, 8, 80, 1, 10}, {1, 4, 2});
  REQUIRE(csp(v2, {0, 1}, 2).to_vector<float>() == std::vector<float>{3, 10, 5, 30, 1, 50, 8, 80});
}

TEST_CASE("csp: Path-X size N = 16384 forward and backward", "[csp]") {
  const Case tc{"Path-X", 2, 16384, 3, 2, "random", {}};
  check_case<float>(tc, Fill::normal, 77);
  const Case px{"Path-X exp K8 lengths", 2, 16384, 2, 8, "exponential", {16384, 12345}};
  check_case<float>(px, Fill::normal, 78);
}

// ---- 2, 3: permutation property, transpose, adjoint identity ------------------------------------------------------

TEST_CASE("csp: outputs permute inputs per channel, groups are sorted, backward is the transpose", "[csp]") {
  std::mt19937 gen(5);
  for (const auto& tc : testing::csp_cases()) {
    INFO(tc.name);
    const Shape shape{tc.B, tc.N, tc.D};
    const size_t n = size_t(tc.B * tc.N * tc.D);
    const auto shifts = testing::csp_shifts_for(tc, gen);
    const auto v = testing::csp_values<double>(n, Fill::normal, gen);
    const auto g = testing::csp_values<double>(n, Fill::normal, gen);
    const auto y = csp(tensor_of(v, shape), shifts, tc.K, lengths_tensor(tc.lengths)).to_vector<double>();
    const auto dv = csp_backward(tensor_of(g, shape), tensor_of(v, shape), shifts, tc.K, lengths_tensor(tc.lengths))
                        .to_vector<double>();
    auto at = [&](int64_t b, int64_t j, int64_t c) { return size_t((b * tc.N + j) * tc.D + c); };
    for (int64_t b = 0; b < tc.B; ++b)
      for (int64_t c = 0; c < tc.D; ++c) {
        const int64_t nb = tc.lengths.empty() ? tc.N : tc.lengths[size_t(b)];
        std::vector<double> ys, vs, dvs, gs;
        for (int64_t j = 0; j < nb; ++j) {
          ys.push_back(y[at(b, j, c)]), vs.push_back(v[at(b, j, c)]);
          dvs.push_back(dv[at(b, j, c)]), gs.push_back(g[at(b, j, c)]);
          if (j % tc.K != 0) REQUIRE_FALSE(ref_before(y[at(b, j, c)], y[at(b, j - 1, c)]));  // non-decreasing group
        }
        for (int64_t j = nb; j < tc.N; ++j) REQUIRE(y[at(b, j, c)] == 0.0);
        for (int64_t j = nb; j < tc.N; ++j) REQUIRE(dv[at(b, j, c)] == 0.0);
        std::sort(ys.begin(), ys.end()), std::sort(vs.begin(), vs.end());
        std::sort(dvs.begin(), dvs.end()), std::sort(gs.begin(), gs.end());
        REQUIRE(ys == vs);
        REQUIRE(dvs == gs);
      }
    // ⟨CSP(V), G⟩ = ⟨V, CSPᵀ(G)⟩ (valid rows of G only: padded outputs are constant 0).
    long double lhs = 0, rhs = 0;
    for (size_t i = 0; i < n; ++i) lhs += (long double)y[i] * g[i], rhs += (long double)v[i] * dv[i];
    REQUIRE(double(std::fabs(lhs - rhs)) <= 1e-12 * (1.0 + double(std::fabs(lhs))));
  }
}

// ---- 4: finite differences -----------------------------------------------------------------------------------------

TEST_CASE("csp: gradient matches central finite differences (float64, well-separated values)", "[csp]") {
  struct Small {
    int64_t B, N, D;
    int K;
    std::vector<int32_t> shifts, lengths;
  };
  const std::vector<Small> smalls = {
      {2, 4, 3, 2, {0, 1, 3}, {}},
      {1, 8, 2, 4, {3, 6}, {}},
      {2, 8, 2, 8, {5, 2}, {}},
      {3, 8, 3, 4, {1, 2, 7}, {8, 5, 2}},
  };
  std::mt19937 gen(11);
  for (const auto& s : smalls) {
    const int64_t n = s.B * s.N * s.D;
    std::vector<double> vals(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) vals[size_t(i)] = 0.05 * double(i) - 1.0;  // gaps 0.05 ≫ eps
    std::shuffle(vals.begin(), vals.end(), gen);
    Tensor x = from_vector<double>(vals, {s.B, s.N, s.D}, TensorOptions(DType::f64, kCPU, true));
    Tensor len = lengths_tensor(s.lengths);
    auto r = testing::gradcheck([&](const std::vector<Tensor>& in) { return csp(in[0], s.shifts, s.K, len); }, {x});
    REQUIRE_CLOSE(r);
  }
}

// ---- 5: ties, NaN, ±inf, ±0 -----------------------------------------------------------------------------------------

TEST_CASE("csp: ties, NaN, ±inf and ±0 follow the total order and are deterministic", "[csp]") {
  uint32_t seed = 100;
  for (Fill fill : {Fill::ties01, Fill::zeros_signed, Fill::specials})
    for (const auto& tc : testing::csp_cases()) {
      check_case<float>(tc, fill, seed);
      check_case<double>(tc, fill, seed++);
    }

  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  SECTION("NaN sorts after +inf, -inf first") {
    Tensor v = from_vector<float>({nan, 1.0f, -inf, inf}, {1, 4, 1});
    const auto y = csp(v, {0}, 4).to_vector<float>();
    REQUIRE(y[0] == -inf);
    REQUIRE(y[1] == 1.0f);
    REQUIRE(y[2] == inf);
    REQUIRE(std::isnan(y[3]));
    // dV[i] = dY[slot of V[i]]: NaN (i = 0) went to slot 3, 1 to slot 1, -inf to slot 0, +inf to slot 2.
    const auto dv = csp_backward(from_vector<float>({10, 11, 12, 13}, {1, 4, 1}), v, {0}, 4).to_vector<float>();
    REQUIRE(dv == std::vector<float>{13, 11, 10, 12});
  }
  SECTION("-0 and +0 are equal: never swapped, gradients follow the stable order") {
    Tensor v = from_vector<float>({0.0f, -0.0f, -0.0f, 0.0f}, {1, 4, 1});
    const auto y = csp(v, {0}, 2).to_vector<float>();
    REQUIRE_FALSE(std::signbit(y[0]));
    REQUIRE(std::signbit(y[1]));
    REQUIRE(std::signbit(y[2]));
    REQUIRE_FALSE(std::signbit(y[3]));
    const auto y4 = csp(v, {0}, 4).to_vector<float>();  // general rank path keeps the same order
    REQUIRE(same_bits(y4, v.to_vector<float>()));
    const auto dv = csp_backward(from_vector<float>({1, 2, 3, 4}, {1, 4, 1}), v, {0}, 4).to_vector<float>();
    REQUIRE(dv == std::vector<float>{1, 2, 3, 4});
  }
  SECTION("two NaNs with different payloads keep their order (bits preserved)") {
    const float nan_a = -std::numeric_limits<float>::quiet_NaN(), nan_b = std::numeric_limits<float>::quiet_NaN();
    Tensor v = from_vector<float>({nan_a, nan_b, 2.0f, 1.0f}, {1, 4, 1});
    const auto y = csp(v, {0}, 4).to_vector<float>();
    REQUIRE(y[0] == 1.0f);
    REQUIRE(y[1] == 2.0f);
    REQUIRE(std::signbit(y[2]));  // nan_a first
    REQUIRE_FALSE(std::signbit(y[3]));
  }
  SECTION("two runs are bitwise identical") {
    std::mt19937 gen(3);
    const auto vals = testing::csp_values<float>(3 * 24 * 40, Fill::specials, gen);
    const auto g = testing::csp_values<float>(3 * 24 * 40, Fill::ties01, gen);
    const auto sh = csp_shifts_exponential(1, 2, 40, 24);
    Tensor len = from_vector<int32_t>({24, 13, 7}, {3});
    for (int k : {2, 4, 8}) {
      Tensor v = from_vector<float>(vals, {3, 24, 40}), dy = from_vector<float>(g, {3, 24, 40});
      REQUIRE(same_bits(csp(v, sh, k, len).to_vector<float>(), csp(v, sh, k, len).to_vector<float>()));
      REQUIRE(same_bits(csp_backward(dy, v, sh, k, len).to_vector<float>(),
                        csp_backward(dy, v, sh, k, len).to_vector<float>()));
    }
  }
}

// ---- 7: sorting-network fast path vs general path ----------------------------------------------------------------

// D = 67: one full 64-channel block plus a partial one; lengths 37 and 1 leave partial last groups for K = 4, 8.
template <class T>
void check_pair_form(Fill fill, uint32_t seed, int K) {
  std::mt19937 gen(seed);
  const int64_t B = 3, N = 56, D = 67;
  const size_t n = size_t(B * N * D);
  const auto v = testing::csp_values<T>(n, fill, gen), dy = testing::csp_values<T>(n, Fill::normal, gen);
  const auto sh = csp_shifts_exponential(1, 2, D, N);
  for (const std::vector<int32_t>& len : {std::vector<int32_t>{}, std::vector<int32_t>{56, 1, 37}}) {
    const int32_t* lp = len.empty() ? nullptr : len.data();
    std::vector<T> a(n, T(7)), b(n, T(-7)), da(n, T(7)), db(n, T(-7));
    kernels::cpu::csp_forward(a.data(), v.data(), sh.data(), lp, B, N, D, K);
    kernels::cpu::csp_forward_general(b.data(), v.data(), sh.data(), lp, B, N, D, K);
    REQUIRE_SAME_BITS(a, b);
    kernels::cpu::csp_backward(da.data(), dy.data(), v.data(), sh.data(), lp, B, N, D, K);
    kernels::cpu::csp_backward_general(db.data(), dy.data(), v.data(), sh.data(), lp, B, N, D, K);
    REQUIRE_SAME_BITS(da, db);
  }
}

TEST_CASE("csp: the sorting-network fast path equals the general rank path for K = 2, 4, 8", "[csp]") {
  for (int K : {2, 4, 8})
    for (Fill f : {Fill::normal, Fill::ties01, Fill::zeros_signed, Fill::specials}) {
      check_pair_form<float>(f, 40 + int(f) + uint32_t(K), K);
      check_pair_form<double>(f, 50 + int(f) + uint32_t(K), K);
    }
}

// Float csp_forward / csp_backward walk blocks of 8-channel lanes through channel-major scratch; the block width
// depends on N.
// Long sequences split the lanes into several blocks (the last one narrower) next to a D mod 8 tail, the ViT size
// takes a whole sample per block; lengths leave rows past the last whole band of 8 and samples shorter than 8.
TEST_CASE("csp: float channel blocks of every width equal the general rank path", "[csp]") {
  struct Shape3 {
    int64_t B, N, D;
    std::vector<int32_t> len;
  };
  const std::vector<Shape3> shapes = {
      {4, 1000, 83, {1000, 999, 7, 1}},  // lanes 80 in several blocks + 3 tail channels
      {1, 4096, 40, {4093}},             // narrowest blocks
      {2, 64, 512, {}},                  // ViT size: one block per sample
      {2, 64, 512, {61, 5}},
  };
  uint32_t seed = 70;
  for (const Shape3& sh : shapes)
    for (int K : {2, 4, 8})
      for (Fill f : {Fill::normal, Fill::ties01, Fill::specials}) {
        INFO("B " << sh.B << " N " << sh.N << " D " << sh.D << " K " << K << " fill " << int(f));
        std::mt19937 gen(seed++);
        const size_t n = size_t(sh.B * sh.N * sh.D);
        const auto v = testing::csp_values<float>(n, f, gen), dy = testing::csp_values<float>(n, Fill::normal, gen);
        const auto shifts = K == 2 ? csp_shifts_constant(sh.D, sh.N, K) : csp_shifts_exponential(1, 2, sh.D, sh.N);
        const int32_t* lp = sh.len.empty() ? nullptr : sh.len.data();
        std::vector<float> a(n, 7.0f), b(n, -7.0f), da(n, 7.0f), db(n, -7.0f);
        kernels::cpu::csp_forward(a.data(), v.data(), shifts.data(), lp, sh.B, sh.N, sh.D, K);
        kernels::cpu::csp_forward_general(b.data(), v.data(), shifts.data(), lp, sh.B, sh.N, sh.D, K);
        REQUIRE_SAME_BITS(a, b);
        kernels::cpu::csp_backward(da.data(), dy.data(), v.data(), shifts.data(), lp, sh.B, sh.N, sh.D, K);
        kernels::cpu::csp_backward_general(db.data(), dy.data(), v.data(), shifts.data(), lp, sh.B, sh.N, sh.D, K);
        REQUIRE_SAME_BITS(da, db);
      }
}

// ---- 8: padding -------------------------------------------------------------------------------------------------

TEST_CASE("csp: padded inputs and padded dY change nothing; padded outputs and gradients are 0", "[csp]") {
  std::mt19937 gen(9);
  const int64_t B = 4, N = 24, D = 37;
  const std::vector<int32_t> len = {1, 24, 7, 13};
  const size_t n = size_t(B * N * D);
  for (int k : {2, 4, 8}) {
    INFO("K = " << k);
    const auto sh = csp_shifts_exponential(0, 1, D, 40);
    auto v = testing::csp_values<float>(n, Fill::normal, gen);
    auto dy = testing::csp_values<float>(n, Fill::normal, gen);
    const auto y0 = csp(from_vector<float>(v, {B, N, D}), sh, k, lengths_tensor(len)).to_vector<float>();
    const auto dv0 = csp_backward(from_vector<float>(dy, {B, N, D}), from_vector<float>(v, {B, N, D}), sh, k,
                                  lengths_tensor(len))
                         .to_vector<float>();
    const auto junk = testing::csp_values<float>(n, Fill::specials, gen);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = len[size_t(b)]; j < N; ++j)
        for (int64_t c = 0; c < D; ++c) {
          const size_t i = size_t((b * N + j) * D + c);
          REQUIRE(y0[i] == 0.0f);
          REQUIRE(dv0[i] == 0.0f);
          v[i] = junk[i], dy[i] = junk[i];
        }
    // int64 lengths are accepted and mean the same.
    Tensor len64 = from_vector<int64_t>({1, 24, 7, 13}, {4}, TensorOptions(DType::i64));
    const auto y1 = csp(from_vector<float>(v, {B, N, D}), sh, k, len64).to_vector<float>();
    const auto dv1 = csp_backward(from_vector<float>(dy, {B, N, D}), from_vector<float>(v, {B, N, D}), sh, k, len64)
                         .to_vector<float>();
    REQUIRE_SAME_BITS(y1, y0);
    REQUIRE_SAME_BITS(dv1, dv0);
  }
  SECTION("n_b = N for every sample equals the unpadded op bit for bit") {
    const auto sh = csp_shifts_exponential(0, 1, D, N);
    const auto v = testing::csp_values<float>(n, Fill::specials, gen);
    Tensor vt = from_vector<float>(v, {B, N, D});
    REQUIRE_SAME_BITS(csp(vt, sh, 4, from_vector<int32_t>({24, 24, 24, 24}, {4})).to_vector<float>(),
                      csp(vt, sh, 4).to_vector<float>());
  }
  SECTION("a sample depends only on its own valid tokens: the rotation happens inside the prefix") {
    // n_b = 5, K = 2, shift 7 ≡ 2 (mod 5): U = [v3, v4, v0, v1, v2]; groups {v3, v4}, {v0, v1}, {v2}.
    Tensor v = from_vector<float>({4, 3, 9, 8, 1, 100, 100, 100}, {1, 8, 1});
    const auto y = csp(v, {7}, 2, from_vector<int32_t>({5}, {1})).to_vector<float>();
    REQUIRE(y == std::vector<float>{1, 8, 3, 4, 9, 0, 0, 0});
  }
}

// ---- 6: schedules -------------------------------------------------------------------------------------------------

TEST_CASE("csp: constant-step schedule (spec §4.1)", "[csp]") {
  REQUIRE(csp_shifts_constant(8, 64, 2) == std::vector<int32_t>{0, 0, 2, 4, 6, 8, 10, 12});
  REQUIRE(csp_shifts("constant", 8, 64, 2) == csp_shifts_constant(8, 64, 2));
  const auto s = csp_shifts_constant(512, 64, 2);
  REQUIRE(std::set<int32_t>(s.begin(), s.end()).size() == 32);
  REQUIRE(s[33] == 0);  // wraps every 32 channels: K·(33 − 1) = 64 ≡ 0
  REQUIRE(csp_shifts_constant(5, 12, 4) == std::vector<int32_t>{0, 0, 4, 8, 0});
}

TEST_CASE("csp: exponential schedule per-layer ranges, distinct counts and checksums (spec §4.2)", "[csp]") {
  struct Row {
    int64_t N, L, D;
    std::vector<std::pair<int32_t, int32_t>> ranges;
    size_t distinct;
    int64_t checksum;
  };
  const std::vector<Row> rows = {
      {1024, 8, 320, {{1, 3}, {3, 6}, {6, 14}, {14, 32}, {32, 76}, {77, 181}, {182, 430}, {431, 1022}}, 745, 378613},
      {1024, 6, 256, {{1, 4}, {4, 11}, {11, 32}, {32, 102}, {102, 322}, {323, 1020}}, 560, 226965},
      {16384, 4, 128, {{1, 12}, {12, 126}, {128, 1421}, {1449, 16077}}, 355, 856483},
  };
  for (const auto& r : rows) {
    INFO("N " << r.N << " L " << r.L << " D " << r.D);
    std::set<int32_t> distinct;
    int64_t sum = 0;
    for (int64_t l = 0; l < r.L; ++l) {
      const auto s = csp_shifts_exponential(l, r.L, r.D, r.N);
      REQUIRE(int64_t(s.size()) == r.D);
      REQUIRE(csp_shifts("exponential", r.D, r.N, 2, l, r.L) == s);
      INFO("layer " << l);
      REQUIRE(*std::min_element(s.begin(), s.end()) == r.ranges[size_t(l)].first);
      REQUIRE(*std::max_element(s.begin(), s.end()) == r.ranges[size_t(l)].second);
      REQUIRE(std::is_sorted(s.begin(), s.end()));
      distinct.insert(s.begin(), s.end());
      sum += std::accumulate(s.begin(), s.end(), int64_t{0});
    }
    REQUIRE(distinct.size() == r.distinct);
    REQUIRE(sum == r.checksum);
  }
}

TEST_CASE("csp: exponential schedule ceil-boundary vectors", "[csp]") {
  auto at = [](int64_t l, int64_t i) { return csp_shifts_exponential(l, 8, 320, 1024)[size_t(i)]; };
  REQUIRE(at(3, 64) == 17);   // just above 16
  REQUIRE(at(6, 128) == 257);  // just above 256
  REQUIRE(at(7, 64) == 513);   // just above 512
  REQUIRE(at(2, 128) == 8);    // just below 8
  REQUIRE(at(4, 0) == 32);     // exactly 32
  REQUIRE(at(0, 0) == 1);      // N^0 = 1
  // A ceil that reaches N itself means the identity (reduced mod N): N_s = 2, exponent 1/2 → ceil(1.414) = 2 ≡ 0.
  REQUIRE(csp_shifts_exponential(0, 1, 2, 2) == std::vector<int32_t>{1, 0});
}

// ---- 9: errors ----------------------------------------------------------------------------------------------------

TEST_CASE("csp: every bad input is a clear error", "[csp]") {
  using Catch::Contains;
  Tensor v = zeros({2, 8, 3});
  const std::vector<int32_t> sh = {0, 1, 2};
  REQUIRE_THROWS_AS(csp(v, sh, 3), Error);
  REQUIRE_THROWS_WITH(csp(v, sh, 3), Contains("K = 3") && Contains("expected 2, 4 or 8"));
  REQUIRE_THROWS_WITH(csp(zeros({2, 10, 3}), sh, 4), Contains("N = 10 is not a multiple of K = 4"));
  REQUIRE_THROWS_WITH(csp(zeros({8, 3}), sh, 2), Contains("3-D") && Contains("[8, 3]"));
  REQUIRE_THROWS_WITH(csp(v, {0, 1}, 2), Contains("shifts has 2 values, expected D = 3"));
  REQUIRE_THROWS_WITH(csp(v, {0, -4, 1}, 2), Contains("shifts[1] = -4 is negative"));
  REQUIRE_THROWS_WITH(csp(v, sh, 2, from_vector<int32_t>({8, 0}, {2})), Contains("lengths[1] = 0 is outside [1, N] = [1, 8]"));
  REQUIRE_THROWS_WITH(csp(v, sh, 2, from_vector<int32_t>({9, 8}, {2})), Contains("lengths[0] = 9 is outside [1, N]"));
  REQUIRE_THROWS_WITH(csp(v, sh, 2, from_vector<int32_t>({8, 8, 8}, {3})), Contains("lengths has shape [3], expected [B] = [2]"));
  REQUIRE_THROWS_WITH(csp(v, sh, 2, from_vector<float>({8, 8}, {2})), Contains("lengths has dtype float32"));
  REQUIRE_THROWS_WITH(csp(zeros({0, 8, 3}), sh, 2), Contains("[0, 8, 3]") && Contains(">= 1"));
  REQUIRE_THROWS_WITH(csp(zeros({2, 0, 3}), sh, 2), Contains("[2, 0, 3]"));
  REQUIRE_THROWS_WITH(csp(zeros({2, 8, 0}), {}, 2), Contains("[2, 8, 0]"));
  REQUIRE_THROWS_WITH(csp(zeros({2, 8, 3}, TensorOptions(DType::i32)), sh, 2), Contains("dtype int32"));
  REQUIRE_THROWS_WITH(csp_backward(zeros({2, 8, 4}), v, sh, 2), Contains("dY has shape [2, 8, 4], expected V's shape [2, 8, 3]"));
  REQUIRE_THROWS_WITH(csp_backward(zeros({2, 8, 3}, TensorOptions(DType::f64)), v, sh, 2), Contains("dY has dtype float64"));
  REQUIRE_THROWS_WITH(csp_shifts_exponential(0, 0, 4, 16), Contains("num_layers L = 0"));
  REQUIRE_THROWS_WITH(csp_shifts_exponential(4, 4, 4, 16), Contains("layer l = 4 is outside [0, L) = [0, 4)"));
  REQUIRE_THROWS_WITH(csp_shifts_exponential(-1, 4, 4, 16), Contains("layer l = -1"));
  REQUIRE_THROWS_WITH(csp_shifts_exponential(0, 4, 4, 0), Contains("schedule length N_s = 0"));
  REQUIRE_THROWS_WITH(csp_shifts_constant(0, 16, 2), Contains("D = 0"));
  REQUIRE_THROWS_WITH(csp_shifts_constant(4, 16, 3), Contains("K = 3"));
  REQUIRE_THROWS_WITH(csp_shifts("cosine", 4, 16, 2), Contains("unknown schedule 'cosine'") && Contains("constant"));
  // The kernel itself refuses a bad K (the op checks first).
  std::vector<float> buf(48);
  REQUIRE_THROWS_AS(kernels::cpu::csp_forward(buf.data(), buf.data(), sh.data(), nullptr, 2, 8, 3, 3),
                    std::invalid_argument);
}

TEST_CASE("csp: only V gets a gradient and the tape is cleared", "[csp]") {
  Tensor v = from_vector<double>({1, 4, 2, 3, 9, 7, 8, 5}, {1, 4, 2}, TensorOptions(DType::f64, kCPU, true));
  Tensor y = csp(v, {1, 2}, 2, from_vector<int32_t>({3}, {1}));
  REQUIRE(y.requires_grad());
  sum(mul(y, y)).backward();
  REQUIRE(autograd::tape_size() == 0);
  // d/dV sum(Y²) = 2·V on valid rows (a permutation), 0 on the padded row.
  REQUIRE(v.grad().to_vector<double>() == std::vector<double>{2, 8, 4, 6, 18, 14, 0, 0});
  {
    NoGradGuard ng;
    REQUIRE_FALSE(csp(v, {1, 2}, 2).requires_grad());
  }
}

TEST_CASE("csp_mask_lengths: prefix masks give lengths, anything else a clear error", "[csp]") {
  std::vector<uint8_t> m{1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1};
  REQUIRE(csp_mask_lengths(from_vector<uint8_t>(m, {3, 4})).to_vector<int32_t>() == std::vector<int32_t>{3, 1, 4});
  m[6] = 1;  // row 1: a valid token after padding
  REQUIRE_THROWS_WITH(csp_mask_lengths(from_vector<uint8_t>(m, {3, 4}), "Mixer"),
                      Catch::Contains("Mixer: key_padding_mask row 1 is not a prefix mask") &&
                          Catch::Contains("position 1 is padding but position 2 is valid"));
  REQUIRE_THROWS_WITH(csp_mask_lengths(zeros({2, 4}, TensorOptions(DType::u8))), Catch::Contains("row 0 has no valid token"));
  REQUIRE_THROWS_WITH(csp_mask_lengths(zeros({2, 4}, TensorOptions(DType::f32))), Catch::Contains("must be uint8 [B, N]"));
}

}  // namespace
