// CPU kernels: GEMM against a naive triple loop, layout copies against index arithmetic, optimizer steps against
// scalar reference loops.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/common.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layout.h"
#include "kernels/cpu/optim.h"

namespace cpu = mixgrad::kernels::cpu;
using mixgrad::kernels::StridedShape;

namespace {

// Deterministic pseudo-random values in [-1, 1).
template <class T>
std::vector<T> random_values(int64_t n, uint32_t seed) {
  std::vector<T> v(static_cast<size_t>(n));
  uint32_t s = seed * 2654435761u + 1u;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<T>(static_cast<double>(s >> 8) / double(1 << 23) - 1.0);
  }
  return v;
}

template <class T>
void check_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t batch, bool bcast_a, bool bcast_b,
                int64_t pad, T alpha, T beta) {
  const int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
  const int64_t a_rows = ta ? k : m, b_rows = tb ? n : k;
  const int64_t stride_a = bcast_a ? 0 : a_rows * lda, stride_b = bcast_b ? 0 : b_rows * ldb, stride_c = m * ldc;
  const auto A = random_values<T>(std::max<int64_t>(1, bcast_a ? a_rows * lda : batch * a_rows * lda), 1);
  const auto B = random_values<T>(std::max<int64_t>(1, bcast_b ? b_rows * ldb : batch * b_rows * ldb), 2);
  auto C = random_values<T>(batch * stride_c, 3);
  if (beta == T(0)) std::fill(C.begin(), C.end(), std::numeric_limits<T>::quiet_NaN());  // must not be read
  const auto C0 = C;
  cpu::gemm_strided_batched<T>(ta, tb, m, n, k, alpha, A.data(), lda, stride_a, B.data(), ldb, stride_b, beta,
                               C.data(), ldc, stride_c, batch);
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  double max_err = 0.0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0.0, mag = 0.0;
        for (int64_t p = 0; p < k; ++p) {
          const double a = A[b * stride_a + (ta ? p * lda + i : i * lda + p)];
          const double bv = B[b * stride_b + (tb ? j * ldb + p : p * ldb + j)];
          acc += a * bv;
          mag += std::abs(a * bv);
        }
        const int64_t c = b * stride_c + i * ldc + j;
        const double ref = double(alpha) * acc + (beta == T(0) ? 0.0 : double(beta) * double(C0[c]));
        max_err = std::max(max_err, std::abs(double(C[c]) - ref) / (1.0 + std::abs(double(alpha)) * mag));
      }
  INFO("trans_a=" << ta << " trans_b=" << tb << " m=" << m << " n=" << n << " k=" << k << " batch=" << batch
                  << " bcast_a=" << bcast_a << " bcast_b=" << bcast_b << " pad=" << pad << " max_err=" << max_err);
  CHECK(max_err <= tol);
  // Padding columns of C are untouched.
  if (pad > 0 && beta != T(0))
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = n; j < ldc; ++j) REQUIRE(C[b * stride_c + i * ldc + j] == C0[b * stride_c + i * ldc + j]);
}

// Row-major multi-index walk: reference for copy_strided, independent of strided_offset.
template <class T>
std::vector<T> gather_reference(const std::vector<T>& src, const StridedShape& shape, const StridedShape& st) {
  int64_t n = 1;
  for (int d = 0; d < shape.ndim; ++d) n *= shape.size[d];
  std::vector<T> out(static_cast<size_t>(n));
  std::array<int64_t, mixgrad::kernels::kMaxDims> idx{};
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = 0;
    for (int d = 0; d < shape.ndim; ++d) off += idx[d] * st.stride[d];
    out[static_cast<size_t>(i)] = src[static_cast<size_t>(off)];
    for (int d = shape.ndim - 1; d >= 0; --d) {
      if (++idx[d] < shape.size[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

template <class T>
void check_permutations_4d(std::array<int64_t, 4> sizes) {
  const int64_t n = sizes[0] * sizes[1] * sizes[2] * sizes[3];
  std::vector<T> src(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) src[i] = static_cast<T>(i % 251);
  const std::array<int64_t, 4> strides = {sizes[1] * sizes[2] * sizes[3], sizes[2] * sizes[3], sizes[3], 1};
  std::array<int, 4> perm = {0, 1, 2, 3};
  do {
    StridedShape shape, st;
    shape.ndim = st.ndim = 4;
    for (int d = 0; d < 4; ++d) {
      shape.size[d] = st.size[d] = sizes[perm[d]];
      st.stride[d] = strides[perm[d]];
    }
    std::vector<T> dst(static_cast<size_t>(n), T(0));
    cpu::copy_strided<T>(dst.data(), src.data(), n, shape, st);
    INFO("perm " << perm[0] << perm[1] << perm[2] << perm[3]);
    REQUIRE(dst == gather_reference(src, shape, st));
  } while (std::next_permutation(perm.begin(), perm.end()));
}

}  // namespace

TEST_CASE("cpu gemm_strided_batched matches a naive triple loop", "[cpu][kernels][gemm]") {
  const int64_t dims[] = {1, 17, 65};
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t m : dims)
        for (int64_t n : dims)
          for (int64_t k : dims) {
            check_gemm<float>(ta, tb, m, n, k, 2, false, false, 0, 1.0f, 0.0f);
            check_gemm<double>(ta, tb, m, n, k, 2, false, false, 0, 1.0, 0.0);
          }
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check_gemm<float>(ta, tb, 17, 65, 33, 3, true, false, 3, 1.5f, 0.5f);   // broadcast A, padded lds
      check_gemm<double>(ta, tb, 65, 17, 33, 3, false, true, 2, -0.5, 2.0);   // broadcast B
      check_gemm<float>(ta, tb, 64, 64, 64, 64, false, false, 0, 1.0f, 1.0f); // batch spread over threads
      check_gemm<double>(ta, tb, 40, 36, 48, 16, true, true, 1, 1.0, 0.0);
      // Single large products split over OpenMP threads: by rows (m large, uneven blocks), by columns (m small).
      check_gemm<float>(ta, tb, 301, 40, 50, 2, false, false, 3, 1.0f, 0.5f);
      check_gemm<float>(ta, tb, 8, 300, 200, 2, false, true, 1, -1.0f, 1.0f);
      check_gemm<double>(ta, tb, 9, 301, 123, 1, false, false, 0, 1.0, 0.0);
    }
}

TEST_CASE("cpu gemm_strided_batched edge cases", "[cpu][kernels][gemm]") {
  SECTION("k == 0 scales C by beta, beta == 0 writes zeros") {
    std::vector<float> C = {1, 2, 3, 4, 5, 6};
    cpu::gemm_strided_batched<float>(false, false, 1, 3, 0, 1.f, nullptr, 1, 0, nullptr, 3, 0, 2.f, C.data(), 3, 3, 2);
    CHECK(C == std::vector<float>{2, 4, 6, 8, 10, 12});
    std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
    cpu::gemm_strided_batched<float>(false, false, 2, 3, 0, 1.f, nullptr, 1, 0, nullptr, 3, 0, 0.f, C.data(), 3, 6, 1);
    CHECK(C == std::vector<float>(6, 0.f));
  }
  SECTION("zero-size problems do nothing") {
    std::vector<double> C = {7};
    cpu::gemm_strided_batched<double>(false, false, 0, 1, 5, 1.0, nullptr, 5, 0, nullptr, 1, 0, 0.0, C.data(), 1, 1, 3);
    cpu::gemm_strided_batched<double>(false, false, 1, 1, 5, 1.0, nullptr, 5, 0, nullptr, 1, 0, 0.0, C.data(), 1, 1, 0);
    CHECK(C[0] == 7.0);
  }
  SECTION("aliased outputs (stride_c == 0) accumulate in batch order") {
    const std::vector<float> A = {1, 2}, B = {3, 4};  // batch of two 1x1 products, both into one C
    std::vector<float> C = {10};
    cpu::gemm_strided_batched<float>(false, false, 1, 1, 1, 1.f, A.data(), 1, 1, B.data(), 1, 1, 1.f, C.data(), 1, 0, 2);
    CHECK(C[0] == 10.f + 3.f + 8.f);
  }
}

TEST_CASE("cpu copy_strided covers permutes, broadcasts and strided views", "[cpu][kernels][layout]") {
  check_permutations_4d<float>({2, 3, 4, 5});
  check_permutations_4d<double>({3, 1, 4, 2});
  check_permutations_4d<int32_t>({2, 33, 3, 40});  // big enough for the blocked transpose and OpenMP
  check_permutations_4d<int64_t>({5, 4, 3, 2});
  check_permutations_4d<uint8_t>({2, 3, 4, 5});

  SECTION("broadcast [3, 1, 5] -> [2, 3, 4, 5]") {
    const auto src = random_values<float>(15, 7);
    StridedShape shape, st;
    shape.ndim = st.ndim = 4;
    const int64_t sz[4] = {2, 3, 4, 5}, str[4] = {0, 5, 0, 1};
    for (int d = 0; d < 4; ++d) {
      shape.size[d] = st.size[d] = sz[d];
      st.stride[d] = str[d];
    }
    std::vector<float> dst(120);
    cpu::copy_strided<float>(dst.data(), src.data(), 120, shape, st);
    CHECK(dst == gather_reference(src, shape, st));
  }
  SECTION("scalar expanded to a vector, scalar copy, and a strided slice") {
    const std::vector<int64_t> one = {42};
    StridedShape shape, st;
    shape.ndim = st.ndim = 1;
    shape.size[0] = st.size[0] = 50000;
    st.stride[0] = 0;
    std::vector<int64_t> dst(50000);
    cpu::copy_strided<int64_t>(dst.data(), one.data(), 50000, shape, st);
    CHECK(std::all_of(dst.begin(), dst.end(), [](int64_t v) { return v == 42; }));
    StridedShape scalar;
    int64_t out = 0;
    cpu::copy_strided<int64_t>(&out, one.data(), 1, scalar, scalar);
    CHECK(out == 42);
    // Every other column of a [6, 10] matrix, then rows 1..4: shape [4, 5], strides [10, 2], offset 10.
    const auto src = random_values<double>(60, 9);
    StridedShape vs, vst;
    vs.ndim = vst.ndim = 2;
    vs.size[0] = vst.size[0] = 4;
    vs.size[1] = vst.size[1] = 5;
    vst.stride[0] = 10;
    vst.stride[1] = 2;
    std::vector<double> view(20);
    cpu::copy_strided<double>(view.data(), src.data() + 10, 20, vs, vst);
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 5; ++j) REQUIRE(view[i * 5 + j] == src[10 + i * 10 + j * 2]);
  }
}

TEST_CASE("cpu slice_copy implements cat and narrow", "[cpu][kernels][layout]") {
  // cat([2, 3, 4], [2, 5, 4], dim=1) -> [2, 8, 4], then narrow it back (cat backward).
  const auto a = random_values<float>(24, 11), b = random_values<float>(40, 12);
  std::vector<float> out(64, -100.f);
  cpu::slice_copy<float>(out.data(), a.data(), 2, 3, 8, 4, 0, 0, 3);
  cpu::slice_copy<float>(out.data(), b.data(), 2, 5, 8, 4, 0, 3, 5);
  for (int64_t o = 0; o < 2; ++o)
    for (int64_t j = 0; j < 8; ++j)
      for (int64_t i = 0; i < 4; ++i)
        REQUIRE(out[(o * 8 + j) * 4 + i] == (j < 3 ? a[(o * 3 + j) * 4 + i] : b[(o * 5 + j - 3) * 4 + i]));
  std::vector<float> ga(24), gb(40);
  cpu::slice_copy<float>(ga.data(), out.data(), 2, 8, 3, 4, 0, 0, 3);
  cpu::slice_copy<float>(gb.data(), out.data(), 2, 8, 5, 4, 3, 0, 5);
  CHECK(ga == a);
  CHECK(gb == b);
  // narrow(dim=1, start=2, length=3) of [3, 7] uint8 and its backward into zeros; large int64 for OpenMP.
  std::vector<uint8_t> x(21);
  std::iota(x.begin(), x.end(), uint8_t{0});
  std::vector<uint8_t> y(9), back(21, 0);
  cpu::slice_copy<uint8_t>(y.data(), x.data(), 3, 7, 3, 1, 2, 0, 3);
  CHECK(y == std::vector<uint8_t>{2, 3, 4, 9, 10, 11, 16, 17, 18});
  cpu::slice_copy<uint8_t>(back.data(), y.data(), 3, 3, 7, 1, 0, 2, 3);
  CHECK(back == std::vector<uint8_t>{0, 0, 2, 3, 4, 0, 0, 0, 0, 9, 10, 11, 0, 0, 0, 0, 16, 17, 18, 0, 0});
  std::vector<int64_t> big(1000 * 64), part(1000 * 16);
  std::iota(big.begin(), big.end(), int64_t{0});
  cpu::slice_copy<int64_t>(part.data(), big.data(), 1000, 16, 4, 4, 5, 0, 4);
  for (int64_t o = 0; o < 1000; ++o)
    for (int64_t j = 0; j < 16; ++j) REQUIRE(part[o * 16 + j] == big[o * 64 + 20 + j]);
}

namespace {

struct MultiTensor {
  std::vector<int64_t> sizes, starts;
  int64_t total = 0;
  explicit MultiTensor(std::vector<int64_t> s) : sizes(std::move(s)) {
    for (int64_t n : sizes) {
      starts.push_back(total);
      total += n;
    }
  }
};

template <class T>
void check_adamw() {
  const MultiTensor mt({5, 0, 70001, 7, 3});
  const int nt = static_cast<int>(mt.sizes.size());
  std::vector<std::vector<T>> p, g, m, v, rp, rm, rv;
  for (int t = 0; t < nt; ++t) {
    p.push_back(random_values<T>(mt.sizes[t], 100 + t));
    m.push_back(std::vector<T>(mt.sizes[t], T(0)));
    v.push_back(std::vector<T>(mt.sizes[t], T(0)));
  }
  rp = p, rm = m, rv = v;
  const T lr = T(1e-2), b1 = T(0.9), b2 = T(0.999), eps = T(1e-8), wd = T(0.05);
  for (int step = 1; step <= 4; ++step) {
    g.clear();
    for (int t = 0; t < nt; ++t) g.push_back(random_values<T>(mt.sizes[t], 1000 * step + t));
    std::vector<T*> pp, mp, vp;
    std::vector<const T*> gp;
    for (int t = 0; t < nt; ++t) {
      pp.push_back(p[t].data());
      mp.push_back(m[t].data());
      vp.push_back(v[t].data());
      gp.push_back(t == 3 ? nullptr : g[t].data());  // tensor 3 has no gradient
    }
    const T bc1 = T(1) - std::pow(b1, T(step)), bc2 = T(1) - std::pow(b2, T(step));
    cpu::adamw_step<T>(pp.data(), gp.data(), mp.data(), vp.data(), mt.sizes.data(), mt.starts.data(), nt, mt.total,
                       lr, b1, b2, eps, wd, bc1, bc2);
    for (int t = 0; t < nt; ++t) {
      if (t == 3) continue;
      for (int64_t i = 0; i < mt.sizes[t]; ++i) {
        T& x = rp[t][i];
        const T gi = g[t][i];
        x = x - lr * wd * x;
        rm[t][i] = b1 * rm[t][i] + (T(1) - b1) * gi;
        rv[t][i] = b2 * rv[t][i] + (T(1) - b2) * gi * gi;
        x = x - lr * (rm[t][i] / bc1) / (std::sqrt(rv[t][i] / bc2) + eps);
      }
    }
  }
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  double max_err = 0.0;
  for (int t = 0; t < nt; ++t)
    for (int64_t i = 0; i < mt.sizes[t]; ++i) {
      max_err = std::max(max_err, std::abs(double(p[t][i]) - double(rp[t][i])));
      max_err = std::max(max_err, std::abs(double(m[t][i]) - double(rm[t][i])));
      max_err = std::max(max_err, std::abs(double(v[t][i]) - double(rv[t][i])));
    }
  INFO("max abs error " << max_err);
  CHECK(max_err <= tol);
  CHECK(p[3] == random_values<T>(7, 103));  // no gradient: untouched, no weight decay
}

template <class T>
void check_sgd(T momentum, T dampening, T wd, bool nesterov) {
  const int64_t n = 40003;
  auto p = random_values<T>(n, 5), rp = p;
  std::vector<T> buf(n, T(123)), rbuf(n);
  const T lr = T(0.1);
  for (int step = 0; step < 4; ++step) {
    const auto g = random_values<T>(n, 50 + step);
    cpu::sgd_step<T>(p.data(), g.data(), momentum == T(0) ? nullptr : buf.data(), n, lr, momentum, dampening, wd,
                     nesterov, step == 0);
    for (int64_t i = 0; i < n; ++i) {
      T d = g[i] + wd * rp[i];
      if (momentum != T(0)) {
        rbuf[i] = step == 0 ? d : momentum * rbuf[i] + (T(1) - dampening) * d;
        d = nesterov ? d + momentum * rbuf[i] : rbuf[i];
      }
      rp[i] = rp[i] - lr * d;
    }
  }
  double max_err = 0.0;
  for (int64_t i = 0; i < n; ++i) max_err = std::max(max_err, std::abs(double(p[i]) - double(rp[i])));
  INFO("momentum=" << momentum << " dampening=" << dampening << " wd=" << wd << " nesterov=" << nesterov
                   << " max abs error " << max_err);
  CHECK(max_err <= (std::is_same_v<T, float> ? 1e-6 : 1e-14));
}

}  // namespace

TEST_CASE("cpu adamw_step matches a scalar reference over several steps", "[cpu][kernels][optim]") {
  check_adamw<float>();
  check_adamw<double>();
}

TEST_CASE("cpu sgd_step matches a scalar reference over several steps", "[cpu][kernels][optim]") {
  check_sgd<float>(0.f, 0.f, 0.f, false);
  check_sgd<float>(0.9f, 0.1f, 0.01f, false);
  check_sgd<float>(0.9f, 0.f, 0.01f, true);
  check_sgd<double>(0.0, 0.0, 1e-3, false);
  check_sgd<double>(0.8, 0.0, 0.0, true);
}

TEST_CASE("cpu sum_squares_multi, clip_coef and scale_multi", "[cpu][kernels][optim]") {
  const MultiTensor mt({3, 0, 100000, 4, 1});
  std::vector<std::vector<float>> x;
  for (size_t t = 0; t < mt.sizes.size(); ++t) x.push_back(random_values<float>(mt.sizes[t], 70 + uint32_t(t)));
  std::vector<float*> ptrs;
  for (auto& v : x) ptrs.push_back(v.data());
  ptrs[3] = nullptr;  // a parameter without gradient counts as zeros and is not scaled
  std::vector<const float*> cptrs(ptrs.begin(), ptrs.end());
  const int nt = static_cast<int>(ptrs.size());
  double ref = 0.0;
  for (int t = 0; t < nt; ++t)
    if (t != 3)
      for (float v : x[t]) ref += double(v) * double(v);
  CHECK(cpu::sum_squares_multi_workspace_bytes(mt.total) == 0);
  float sq = 0.f;
  cpu::sum_squares_multi<float>(nullptr, &sq, cptrs.data(), mt.sizes.data(), mt.starts.data(), nt, mt.total);
  CHECK(double(sq) == Approx(ref).epsilon(1e-7));
  float sq_empty = -1.f;
  cpu::sum_squares_multi<float>(nullptr, &sq_empty, cptrs.data(), mt.sizes.data(), mt.starts.data(), nt, 0);
  CHECK(sq_empty == 0.f);

  float coef = 0.f;
  const float max_norm = 10.f;
  cpu::clip_coef<float>(&coef, &sq, max_norm);
  CHECK(coef == Approx(max_norm / (std::sqrt(ref) + 1e-6)).epsilon(1e-6));
  const float tiny = 1e-4f;
  float one = 0.f;
  cpu::clip_coef<float>(&one, &tiny, max_norm);
  CHECK(one == 1.f);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double dcoef = 0.0;
  cpu::clip_coef<double>(&dcoef, &nan, 1.0);
  CHECK(std::isnan(dcoef));

  const auto before = x;
  cpu::scale_multi<float>(ptrs.data(), mt.sizes.data(), mt.starts.data(), nt, mt.total, coef);
  for (int t = 0; t < nt; ++t)
    for (int64_t i = 0; i < mt.sizes[t]; ++i) REQUIRE(x[t][i] == (t == 3 ? before[t][i] : before[t][i] * coef));
  float sq_after = 0.f;
  cpu::sum_squares_multi<float>(nullptr, &sq_after, cptrs.data(), mt.sizes.data(), mt.starts.data(), nt, mt.total);
  CHECK(std::sqrt(double(sq_after)) == Approx(max_norm).epsilon(1e-5));

  std::vector<double> d = {1, 2, 3};
  double* dp = d.data();
  const int64_t dsz = 3, dst = 0;
  double dsq = 0.0;
  const double* cdp = dp;
  cpu::sum_squares_multi<double>(nullptr, &dsq, &cdp, &dsz, &dst, 1, 3);
  CHECK(dsq == 14.0);
  cpu::scale_multi<double>(&dp, &dsz, &dst, 1, 3, 0.5);
  CHECK(d == std::vector<double>{0.5, 1.0, 1.5});
}
