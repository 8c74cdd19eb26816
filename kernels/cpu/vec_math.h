// Branch-free float math for CPU kernels' inner loops: written so GCC vectorises a loop that calls them (no libm
// calls, selects instead of branches). Accuracy is stated per function; the float64 paths keep using <cmath>.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace mixgrad::kernels::cpu::vec {

// e^x for x <= 88: x = n·ln2 + r with |r| <= ln2/2, e^r by its degree-7 Taylor polynomial (truncation error
// < 1e-8 relative), 2^n assembled in the exponent bits. Within 2 ulp of std::exp for x in [-87, 88]; returns 0
// below -87 (where e^x < 1.7e-38, the flush the kernels want for masked or far-below-maximum scores); NaN stays NaN.
inline float exp(float x) {
  const bool nan = x != x, tiny = x < -87.0f;
  const float xc = std::min(std::max(-87.0f, x), 88.0f);  // NaN -> -87 (keeps the int conversion defined)
  // Round to nearest by adding and removing 1.5·2^23 (no libm call); the integer is then the low bits of t.
  constexpr float kMagic = 12582912.0f;
  const float t = xc * 1.44269504088896341f + kMagic;
  const float n = t - kMagic;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kMagic);
  const float r = (xc - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  float e = 1.0f / 5040.0f;
  e = e * r + 1.0f / 720.0f;
  e = e * r + 1.0f / 120.0f;
  e = e * r + 1.0f / 24.0f;
  e = e * r + 1.0f / 6.0f;
  e = e * r + 0.5f;
  e = e * r + 1.0f;
  e = e * r + 1.0f;
  const float two_n = std::bit_cast<float>((ni + 127) << 23);
  return nan ? x : tiny ? 0.0f : e * two_n;
}

// erf(x) by Abramowitz & Stegun, Handbook of Mathematical Functions (1964), formula 7.1.26: for x >= 0,
// erf(x) = 1 − (a1·t + a2·t² + a3·t³ + a4·t⁴ + a5·t⁵)·e^(−x²) with t = 1/(1 + p·x), |error| <= 1.5e-7; odd
// extension for x < 0. Evaluated in float the absolute error is below 5e-7 (tests/cpu/test_kernels_elementwise.cpp),
// so 1 + erf(x) (what GELU needs) is accurate to ~5e-7 relative near
// x = 0 and stays >= 0; NaN stays NaN, ±inf give ±1. gauss receives the e^(−x²) it computed on the way (the GELU
// backward's density needs exactly that factor at x/√2).
inline float erf(float x, float& gauss) {
  const float ax = std::fabs(x);
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  p = p * t;
  const float x2 = ax * ax;
  const float e = vec::exp(x2 == x2 ? -x2 : x2);  // -inf for |x| = inf (-> 0); NaN passes through
  gauss = e;
  const float y = 1.0f - p * e;
  return x < 0.0f ? -y : y;
}

inline float erf(float x) {
  float gauss;
  return erf(x, gauss);
}

// Four float64 lanes (GCC's vector extension; two SSE registers without AVX) for reductions that accumulate in
// double: lane-wise partial sums, then hsum combines the lanes in a fixed order, so results do not depend on the
// thread count. Loads and stores go through references (a by-value 32-byte vector's ABI differs between ISA levels).
typedef double D4 __attribute__((vector_size(32)));

// v = p[0..3] converted to double.
template <class T>
inline void load_d4(D4& v, const T* p) {
  if constexpr (std::is_same_v<T, double>) {
    std::memcpy(&v, p, sizeof(D4));
  } else {
    typedef float F4 __attribute__((vector_size(16)));
    F4 f;
    std::memcpy(&f, p, sizeof(F4));
    v = __builtin_convertvector(f, D4);
  }
}

// p[0..3] = v converted to T.
template <class T>
inline void store_d4(T* p, const D4& v) {
  if constexpr (std::is_same_v<T, double>) {
    std::memcpy(p, &v, sizeof(D4));
  } else {
    typedef float F4 __attribute__((vector_size(16)));
    const F4 f = __builtin_convertvector(v, F4);
    std::memcpy(p, &f, sizeof(F4));
  }
}

inline double hsum(const D4& v) { return (v[0] + v[1]) + (v[2] + v[3]); }

// 32-byte vectors (8 floats or 4 doubles) through GCC's vector extension: the same source builds for any x86-64
// level (two SSE registers per vector without AVX). Loads and stores go through references, never by-value vector
// arguments, whose ABI would differ between those levels.
template <class T>
struct Simd {
  static constexpr int64_t L = 32 / static_cast<int64_t>(sizeof(T));
  typedef T V __attribute__((vector_size(32)));
  static void load(V& v, const T* p) { std::memcpy(&v, p, sizeof(V)); }
  static void store(T* p, const V& v) { std::memcpy(p, &v, sizeof(V)); }
};

// Largest of s[0, n) (n >= 1): whole vectors lane-wise, then the lanes and the tail in a fixed order. -inf when every
// entry is -inf; with a NaN among them the result is either NaN or the largest other entry (callers whose sums a NaN
// then poisons do not care which).
template <class T>
T max_of(const T* s, int64_t n) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int64_t L = S::L;
  T mx = s[0];
  int64_t c = 0;
  if (n >= L) {
    V m;
    S::load(m, s);
    for (c = L; c + L <= n; c += L) {
      V x;
      S::load(x, s + c);
      m = m > x ? m : x;
    }
    for (int64_t q = 0; q < L; ++q) mx = std::max(mx, m[q]);
  }
  for (; c < n; ++c) mx = std::max(mx, s[c]);
  return mx;
}

// Σ_x a[x]·b[x] in float64 (D4 lanes, then a fixed order).
template <class T>
double dot_f64(const T* a, const T* b, int64_t n) {
  D4 acc = {};
  const int64_t n4 = n / 4 * 4;
  for (int64_t x = 0; x < n4; x += 4) {
    D4 va, vb;
    load_d4(va, a + x);
    load_d4(vb, b + x);
    acc += va * vb;
  }
  double s = hsum(acc);
  for (int64_t t = 0; t < n % 4; ++t) s += static_cast<double>(a[n4 + t]) * static_cast<double>(b[n4 + t]);
  return s;
}

// Σ_c e^(x[c] − shift) in float64 over c < n, the exponentials by vec::exp (vectorised, through a 64-entry block on
// the stack), the sum in D4 lanes then a fixed order: the same bits for any thread count. When out is not null it
// also receives the exponentials (out may equal x).
inline double exp_sum_f64(const float* x, int64_t n, float shift, float* out = nullptr) {
  constexpr int64_t kBlock = 64;
  alignas(32) float buf[kBlock];
  D4 acc = {};
  double tail = 0;
  for (int64_t c0 = 0; c0 < n; c0 += kBlock) {
    const int64_t nb = std::min(kBlock, n - c0);
    float* e = out != nullptr ? out + c0 : buf;
    const float* xs = x + c0;
#pragma omp simd
    for (int64_t i = 0; i < nb; ++i) e[i] = vec::exp(xs[i] - shift);
    const int64_t n4 = nb / 4 * 4;
    for (int64_t i = 0; i < n4; i += 4) {
      D4 v;
      load_d4(v, e + i);
      acc += v;
    }
    for (int64_t i = n4; i < nb; ++i) tail += static_cast<double>(e[i]);
  }
  return hsum(acc) + tail;
}

// The float64 rows' counterpart: std::exp and one running sum in order (float64 gains nothing from vec::exp).
inline double exp_sum_f64(const double* x, int64_t n, double shift, double* out = nullptr) {
  double sum = 0;
  for (int64_t c = 0; c < n; ++c) {
    const double e = std::exp(x[c] - shift);
    if (out != nullptr) out[c] = e;
    sum += e;
  }
  return sum;
}

}  // namespace mixgrad::kernels::cpu::vec
