// CPU flash attention kernels (kernels/cpu/flash_attention.h) against a naive float64 attention that
// materialises the T×Tk scores: O, LSE and dQ/dK/dV with causal and key-padding masks, fully masked rows,
// dropout (same keep-mask), strided qkv views, block-boundary sizes, finite differences and determinism.
#include <catch2/catch.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/flash_attention.h"
#include "kernels/flash_params.h"

namespace {

namespace kc = mixgrad::kernels::cpu;
using mixgrad::kernels::FlashParams;
using mixgrad::kernels::flash_params_contiguous;
using Vec = std::vector<double>;

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Inputs {
  Vec q, k, v, dout;  // logical contiguous [B,H,T,d] / [B,H,Tk,d]
};

Inputs random_inputs(const FlashParams& p, uint32_t seed, double amp = 1.5) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-amp, amp), g(-1.0, 1.0);
  Inputs in;
  const auto fill = [&](Vec& x, int64_t n, auto& dist) {
    x.resize(static_cast<size_t>(n));
    for (auto& e : x) e = dist(gen);
  };
  fill(in.q, p.B * p.H * p.T * p.d, u);
  fill(in.k, p.B * p.H * p.Tk * p.d, u);
  fill(in.v, p.B * p.H * p.Tk * p.d, g);
  fill(in.dout, p.B * p.H * p.T * p.d, g);
  return in;
}

struct Result {
  Vec o, lse, dq, dk, dv, D;
};

// Materialised softmax attention in double with the spec's masks and the kernels' dropout mask.
Result reference(const FlashParams& p, const Inputs& in) {
  const int64_t B = p.B, H = p.H, T = p.T, Tk = p.Tk, d = p.d;
  Result r;
  r.o.assign(in.q.size(), 0.0), r.dq.assign(in.q.size(), 0.0);
  r.dk.assign(in.k.size(), 0.0), r.dv.assign(in.v.size(), 0.0);
  r.lse.assign(static_cast<size_t>(B * H * T), 0.0), r.D.assign(r.lse.size(), 0.0);
  const double scale = p.scale, keep_scale = 1.0 / (1.0 - static_cast<double>(p.dropout_p));
  Vec P(static_cast<size_t>(Tk)), Z(static_cast<size_t>(Tk)), dP(static_cast<size_t>(Tk));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t kvl = p.kv_len ? std::clamp<int64_t>(p.kv_len[b], 0, Tk) : Tk;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t qo = (b * H + h) * T * d, ko = (b * H + h) * Tk * d;
      for (int64_t i = 0; i < T; ++i) {
        const size_t row = static_cast<size_t>((b * H + h) * T + i);
        int64_t lim = kvl;
        if (p.causal) lim = std::min(lim, i + Tk - T + 1);
        lim = std::max<int64_t>(lim, 0);
        if (lim == 0) {
          r.lse[row] = kInf;
          continue;
        }
        double m = -kInf;
        for (int64_t j = 0; j < lim; ++j) {
          double s = 0;
          for (int64_t x = 0; x < d; ++x) s += in.q[qo + i * d + x] * in.k[ko + j * d + x];
          P[j] = s * scale;
          m = std::max(m, P[j]);
        }
        double l = 0;
        for (int64_t j = 0; j < lim; ++j) l += P[j] = std::exp(P[j] - m);
        r.lse[row] = m + std::log(l);
        for (int64_t j = 0; j < lim; ++j) {
          P[j] /= l;
          Z[j] = mixgrad::kernels::flash_dropout_keep(p.seed, p.offset, b, h, i, j, p.dropout_p) ? keep_scale : 0.0;
          for (int64_t x = 0; x < d; ++x) r.o[qo + i * d + x] += P[j] * Z[j] * in.v[ko + j * d + x];
        }
        double Dsum = 0;
        for (int64_t j = 0; j < lim; ++j) {
          double g = 0;
          for (int64_t x = 0; x < d; ++x) g += in.dout[qo + i * d + x] * in.v[ko + j * d + x];
          dP[j] = g * Z[j];
          Dsum += P[j] * dP[j];
        }
        for (int64_t x = 0; x < d; ++x) r.D[row] += in.dout[qo + i * d + x] * r.o[qo + i * d + x];
        for (int64_t j = 0; j < lim; ++j) {
          const double ds = P[j] * (dP[j] - Dsum);
          for (int64_t x = 0; x < d; ++x) {
            r.dq[qo + i * d + x] += scale * ds * in.k[ko + j * d + x];
            r.dk[ko + j * d + x] += scale * ds * in.q[qo + i * d + x];
            r.dv[ko + j * d + x] += P[j] * Z[j] * in.dout[qo + i * d + x];
          }
        }
      }
    }
  }
  return r;
}

template <class T>
std::vector<T> cast(const Vec& x) {
  return std::vector<T>(x.begin(), x.end());
}

// Runs forward and backward with contiguous operands (p's strides must be contiguous).
template <class T>
Result run_kernels(const FlashParams& p, const Inputs& in) {
  const auto q = cast<T>(in.q), k = cast<T>(in.k), v = cast<T>(in.v), g = cast<T>(in.dout);
  // Outputs start as NaN so any element the kernels fail to write is caught.
  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> o(q.size(), nan), dq(q.size(), nan), dk(k.size(), nan), dv(v.size(), nan);
  std::vector<float> lse(static_cast<size_t>(p.B * p.H * p.T), std::nanf(""));
  kc::flash_attention_forward(o.data(), lse.data(), q.data(), k.data(), v.data(), p);
  std::vector<double> ws(kc::flash_attention_backward_workspace_bytes(p) / sizeof(double) + 1);
  kc::flash_attention_backward(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(), o.data(),
                               lse.data(), p, ws.data());
  Result r{Vec(o.begin(), o.end()),   Vec(lse.begin(), lse.end()), Vec(dq.begin(), dq.end()),
           Vec(dk.begin(), dk.end()), Vec(dv.begin(), dv.end()),   Vec(ws.begin(), ws.begin() + lse.size())};
  return r;
}

// |got − want| <= abs + rel·|want| everywhere; inf must match exactly; NaN in `got` always fails.
void check_close(const Vec& got, const Vec& want, double abs_tol, double rel_tol, const std::string& what) {
  REQUIRE(got.size() == want.size());
  size_t bad = 0, worst = 0;
  double worst_excess = -kInf, max_abs = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    double excess;
    if (std::isinf(w) || std::isinf(g) || std::isnan(g)) {
      excess = (g == w) ? -1.0 : kInf;
    } else {
      const double err = std::abs(g - w);
      max_abs = std::max(max_abs, err);
      excess = err - (abs_tol + rel_tol * std::abs(w));
    }
    if (excess > 0) ++bad;
    if (excess > worst_excess) worst_excess = excess, worst = i;
  }
  INFO(what << ": " << bad << " of " << got.size() << " out of tolerance; max abs err " << max_abs
            << "; worst at flat index " << worst << " got " << (got.empty() ? 0.0 : got[worst]) << " want "
            << (want.empty() ? 0.0 : want[worst]));
  CHECK(bad == 0);
}

struct Tol {
  double o_abs, o_rel, lse_abs, lse_rel, g_abs, g_rel;
};
template <class T>
constexpr Tol kTol = {2e-5, 2e-4, 1e-5, 1e-5, 5e-5, 5e-4};  // float kernels (fp32 accumulation)
// double kernels: forward exact to rounding; LSE is stored as float, so the backward's recomputed P carries
// float rounding (relative ~1e-7).
template <>
constexpr Tol kTol<double> = {1e-12, 1e-10, 1e-6, 1e-7, 1e-6, 1e-5};

template <class T>
void compare_with_reference(const FlashParams& p, const Inputs& in, const std::string& what) {
  const Result want = reference(p, in);
  const Result got = run_kernels<T>(p, in);
  const Tol t = kTol<T>;
  check_close(got.o, want.o, t.o_abs, t.o_rel, what + " O");
  check_close(got.lse, want.lse, t.lse_abs, t.lse_rel, what + " LSE");
  check_close(got.D, want.D, t.o_abs, t.o_rel, what + " D = rowsum(dO*O)");
  check_close(got.dq, want.dq, t.g_abs, t.g_rel, what + " dQ");
  check_close(got.dk, want.dk, t.g_abs, t.g_rel, what + " dK");
  check_close(got.dv, want.dv, t.g_abs, t.g_rel, what + " dV");
}

std::string describe(const FlashParams& p) {
  return "B=" + std::to_string(p.B) + " H=" + std::to_string(p.H) + " T=" + std::to_string(p.T) +
         " Tk=" + std::to_string(p.Tk) + " d=" + std::to_string(p.d) + (p.causal ? " causal" : "") +
         (p.kv_len ? " kv_len" : "") + (p.dropout_p > 0 ? " dropout=" + std::to_string(p.dropout_p) : "");
}

}  // namespace

TEST_CASE("flash attention: forward and backward match float64 attention over head dims and lengths",
          "[flash][kernels]") {
  // 50 and d 16: the fmnist-tiny ViT's attention (every register-tile row count, 6 rows then a tail of 2).
  const int64_t sizes[] = {1, 7, 50, 64, 65, 200};
  for (int64_t d : {1, 16, 32, 64, 128})
    for (int64_t T : sizes)
      for (int64_t Tk : sizes) {
        FlashParams p = flash_params_contiguous(1, 2, T, Tk, d);
        const Inputs in = random_inputs(p, static_cast<uint32_t>(d * 1000 + T * 10 + Tk));
        compare_with_reference<float>(p, in, "float " + describe(p));
      }
  for (int64_t d : {1, 64})
    for (auto [T, Tk] : {std::pair<int64_t, int64_t>{65, 200}, {200, 7}, {1, 64}}) {
      FlashParams p = flash_params_contiguous(2, 1, T, Tk, d);
      compare_with_reference<double>(p, random_inputs(p, 7), "double " + describe(p));
    }
}

TEST_CASE("flash attention: long sequences (T, Tk = 1000)", "[flash][kernels]") {
  for (auto [T, Tk, d] : {std::tuple<int64_t, int64_t, int64_t>{1000, 1000, 64}, {1000, 65, 128}, {7, 1000, 32},
                          {1000, 1, 1}}) {
    FlashParams p = flash_params_contiguous(1, 1, T, Tk, d);
    compare_with_reference<float>(p, random_inputs(p, 11), "float " + describe(p));
    p.causal = true;
    compare_with_reference<float>(p, random_inputs(p, 12), "float " + describe(p));
  }
}

TEST_CASE("flash attention: causal mask is bottom-right aligned, T == Tk and T != Tk", "[flash][kernels]") {
  for (int64_t d : {1, 32, 128})
    for (auto [T, Tk] : {std::pair<int64_t, int64_t>{65, 65}, {200, 200}, {7, 200}, {65, 130}, {200, 65}, {64, 7},
                         {1, 1}, {1, 65}}) {
      FlashParams p = flash_params_contiguous(2, 2, T, Tk, d);
      p.causal = true;
      compare_with_reference<float>(p, random_inputs(p, static_cast<uint32_t>(T + Tk + d)), "float " + describe(p));
    }
  FlashParams p = flash_params_contiguous(1, 2, 70, 130, 16);
  p.causal = true;
  compare_with_reference<double>(p, random_inputs(p, 5), "double " + describe(p));

  // The mask itself: with T = 3, Tk = 5 query 0 sees keys 0..2 only, so changing key 3 changes nothing in row 0.
  FlashParams s = flash_params_contiguous(1, 1, 3, 5, 4);
  s.causal = true;
  Inputs in = random_inputs(s, 9);
  const Result a = run_kernels<double>(s, in);
  for (int x = 0; x < 4; ++x) in.k[3 * 4 + x] += 5.0, in.v[3 * 4 + x] -= 3.0;
  const Result b = run_kernels<double>(s, in);
  for (int x = 0; x < 4; ++x) CHECK(a.o[x] == b.o[x]);
  CHECK(a.lse[0] == b.lse[0]);
  CHECK(a.o[4] != b.o[4]);  // row 1 sees key 3
}

TEST_CASE("flash attention: key padding (kv_len), alone and with causal", "[flash][kernels]") {
  for (bool causal : {false, true})
    for (auto [T, Tk] : {std::pair<int64_t, int64_t>{65, 200}, {200, 65}, {7, 7}}) {
      FlashParams p = flash_params_contiguous(4, 2, T, Tk, 32);
      p.causal = causal;
      // 0 (all keys padded), a short prefix, a block boundary, more than Tk (clamped).
      const std::vector<int32_t> kv_len = {static_cast<int32_t>(Tk) - 1, 5, 64, static_cast<int32_t>(Tk) + 3};
      p.kv_len = kv_len.data();
      compare_with_reference<float>(p, random_inputs(p, static_cast<uint32_t>(T * 3 + Tk)), "float " + describe(p));
      compare_with_reference<double>(p, random_inputs(p, 4), "double " + describe(p));
    }
}

TEST_CASE("flash attention: fully masked rows give O = 0, LSE = +inf, zero gradients and no NaN",
          "[flash][kernels]") {
  // Batch 0: kv_len 0 masks every row. Batch 1: causal with T > Tk masks the first T − Tk rows.
  FlashParams p = flash_params_contiguous(2, 2, 100, 30, 64);
  p.causal = true;
  const std::vector<int32_t> kv_len = {0, 30};
  p.kv_len = kv_len.data();
  const Inputs in = random_inputs(p, 21);
  const Result r = run_kernels<float>(p, in);
  compare_with_reference<float>(p, in, describe(p));
  for (const Vec* x : {&r.o, &r.dq, &r.dk, &r.dv})
    for (double e : *x) REQUIRE(!std::isnan(e));
  const int64_t T = p.T, Tk = p.Tk, d = p.d;
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < T; ++i) {
      const bool masked0 = true, masked1 = i < T - Tk;
      for (auto [b, masked] : {std::pair<int64_t, bool>{0, masked0}, {1, masked1}}) {
        const int64_t row = (b * 2 + h) * T + i;
        if (!masked) continue;
        REQUIRE(std::isinf(r.lse[row]));
        REQUIRE(r.lse[row] > 0);
        for (int64_t x = 0; x < d; ++x) {
          REQUIRE(r.o[row * d + x] == 0.0);
          REQUIRE(r.dq[row * d + x] == 0.0);
        }
      }
    }
    for (int64_t j = 0; j < Tk * d; ++j) {  // batch 0: no query sees any key
      REQUIRE(r.dk[(0 * 2 + h) * Tk * d + j] == 0.0);
      REQUIRE(r.dv[(0 * 2 + h) * Tk * d + j] == 0.0);
    }
  }
  // Tk = 0: every row is fully masked.
  FlashParams e = flash_params_contiguous(1, 1, 5, 0, 8);
  const Result z = run_kernels<float>(e, random_inputs(e, 3));
  for (double x : z.lse) CHECK(x == kInf);
  for (double x : z.o) CHECK(x == 0.0);
  for (double x : z.dq) CHECK(x == 0.0);
}

TEST_CASE("flash attention: dropout mask is shared by forward and backward", "[flash][kernels]") {
  using mixgrad::kernels::flash_dropout_keep;
  // The mask keeps about 1 − p of the weights and depends on seed, offset and every index.
  for (float pd : {0.1f, 0.5f}) {
    int64_t kept = 0, n = 0, differ_seed = 0, differ_offset = 0, differ_h = 0;
    for (int64_t i = 0; i < 200; ++i)
      for (int64_t j = 0; j < 200; ++j, ++n) {
        const bool k0 = flash_dropout_keep(42, 7, 1, 2, i, j, pd);
        kept += k0;
        differ_seed += k0 != flash_dropout_keep(43, 7, 1, 2, i, j, pd);
        differ_offset += k0 != flash_dropout_keep(42, 8, 1, 2, i, j, pd);
        differ_h += k0 != flash_dropout_keep(42, 7, 1, 3, i, j, pd);
        REQUIRE(k0 == flash_dropout_keep(42, 7, 1, 2, i, j, pd));
      }
    const double frac = static_cast<double>(kept) / static_cast<double>(n);
    CHECK(std::abs(frac - (1.0 - pd)) < 0.01);
    const double expect_differ = 2.0 * pd * (1.0 - pd) * static_cast<double>(n);
    for (int64_t dcount : {differ_seed, differ_offset, differ_h})
      CHECK(std::abs(static_cast<double>(dcount) - expect_differ) < 0.1 * expect_differ);
  }
  CHECK(flash_dropout_keep(1, 2, 3, 4, 5, 6, 0.0f));

  for (float pd : {0.1f, 0.5f})
    for (bool causal : {false, true}) {
      FlashParams p = flash_params_contiguous(2, 2, 65, 130, 32);
      p.dropout_p = pd, p.seed = 1234, p.offset = 99, p.causal = causal;
      const std::vector<int32_t> kv_len = {130, 70};
      p.kv_len = kv_len.data();
      compare_with_reference<float>(p, random_inputs(p, 31), "float " + describe(p));
      compare_with_reference<double>(p, random_inputs(p, 32), "double " + describe(p));
    }
  // A different offset gives a different output.
  FlashParams p = flash_params_contiguous(1, 1, 64, 64, 16);
  p.dropout_p = 0.3f, p.seed = 5;
  const Inputs in = random_inputs(p, 1);
  const Result a = run_kernels<float>(p, in);
  p.offset = 1;
  const Result b = run_kernels<float>(p, in);
  CHECK(a.o != b.o);
  CHECK(a.lse == b.lse);  // LSE is unaffected by dropout
}

TEST_CASE("flash attention: strided [B,T,3,H,d] qkv view and its gradient", "[flash][kernels]") {
  const int64_t B = 2, T = 70, H = 3, d = 32;
  for (bool causal : {false, true}) {
    FlashParams p = flash_params_contiguous(B, H, T, T, d);
    p.causal = causal;
    const Inputs in = random_inputs(p, 77);
    // Pack logical [B,H,T,d] q, k, v into one [B,T,3,H,d] buffer.
    std::vector<float> qkv(static_cast<size_t>(B * T * 3 * H * d));
    const auto at = [&](int64_t b, int64_t t, int64_t w, int64_t h) { return ((b * T + t) * 3 + w) * H * d + h * d; };
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t x = 0; x < d; ++x) {
            const int64_t src = ((b * H + h) * T + t) * d + x;
            qkv[at(b, t, 0, h) + x] = static_cast<float>(in.q[src]);
            qkv[at(b, t, 1, h) + x] = static_cast<float>(in.k[src]);
            qkv[at(b, t, 2, h) + x] = static_cast<float>(in.v[src]);
          }
    FlashParams s = p;
    const mixgrad::kernels::FlashStrides view{T * 3 * H * d, d, 3 * H * d};
    s.q = s.k = s.v = s.dq = s.dk = s.dv = view;
    // O and dO in [B,T,H,d] (the layout the output projection wants).
    s.o = s.dout = mixgrad::kernels::FlashStrides{T * H * d, d, H * d};
    std::vector<float> o(static_cast<size_t>(B * T * H * d)), g(o.size()), lse(static_cast<size_t>(B * H * T));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t x = 0; x < d; ++x)
            g[((b * T + t) * H + h) * d + x] = static_cast<float>(in.dout[((b * H + h) * T + t) * d + x]);
    std::vector<float> dqkv(qkv.size(), std::nanf(""));
    std::vector<double> ws(kc::flash_attention_backward_workspace_bytes(s) / sizeof(double) + 1);
    kc::flash_attention_forward(o.data(), lse.data(), qkv.data(), qkv.data() + H * d, qkv.data() + 2 * H * d, s);
    kc::flash_attention_backward(dqkv.data(), dqkv.data() + H * d, dqkv.data() + 2 * H * d, g.data(), qkv.data(),
                                 qkv.data() + H * d, qkv.data() + 2 * H * d, o.data(), lse.data(), s, ws.data());
    // Same arithmetic as the contiguous run, so the results agree bit for bit.
    const Result c = run_kernels<float>(p, in);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t) {
          const int64_t row = (b * H + h) * T + t;
          REQUIRE(static_cast<double>(lse[row]) == c.lse[row]);
          for (int64_t x = 0; x < d; ++x) {
            REQUIRE(static_cast<double>(o[((b * T + t) * H + h) * d + x]) == c.o[row * d + x]);
            REQUIRE(static_cast<double>(dqkv[at(b, t, 0, h) + x]) == c.dq[row * d + x]);
            REQUIRE(static_cast<double>(dqkv[at(b, t, 1, h) + x]) == c.dk[row * d + x]);
            REQUIRE(static_cast<double>(dqkv[at(b, t, 2, h) + x]) == c.dv[row * d + x]);
          }
        }
    compare_with_reference<float>(p, in, "contiguous twin " + describe(p));
  }
}

TEST_CASE("flash attention: gradients match central finite differences (double)", "[flash][kernels]") {
  FlashParams p = flash_params_contiguous(2, 2, 5, 7, 3);
  p.causal = true;
  p.scale = 0.8f;
  const std::vector<int32_t> kv_len = {7, 4};
  p.kv_len = kv_len.data();
  Inputs in = random_inputs(p, 55);
  const Result an = run_kernels<double>(p, in);
  // L = Σ O ⊙ dout, so dL/dX is the backward's output for incoming gradient dout.
  const auto loss = [&](const Inputs& x) {
    std::vector<double> o(x.q.size()), lse(static_cast<size_t>(p.B * p.H * p.T));
    std::vector<float> lsef(lse.size());
    kc::flash_attention_forward(o.data(), lsef.data(), x.q.data(), x.k.data(), x.v.data(), p);
    double l = 0;
    for (size_t i = 0; i < o.size(); ++i) l += o[i] * x.dout[i];
    return l;
  };
  const double eps = 1e-6;
  for (auto [member, grad, name] : {std::tuple<Vec Inputs::*, const Vec*, const char*>{&Inputs::q, &an.dq, "dQ"},
                                    {&Inputs::k, &an.dk, "dK"},
                                    {&Inputs::v, &an.dv, "dV"}}) {
    Vec fd((in.*member).size());
    for (size_t i = 0; i < fd.size(); ++i) {
      const double x0 = (in.*member)[i];
      (in.*member)[i] = x0 + eps;
      const double lp = loss(in);
      (in.*member)[i] = x0 - eps;
      const double lm = loss(in);
      (in.*member)[i] = x0;
      fd[i] = (lp - lm) / (2 * eps);
    }
    check_close(*grad, fd, 2e-6, 1e-5, name);
  }
}

TEST_CASE("flash attention: results are bitwise reproducible across runs and thread counts", "[flash][kernels]") {
  FlashParams p = flash_params_contiguous(2, 3, 200, 130, 64);
  p.causal = true;
  p.dropout_p = 0.1f, p.seed = 3;
  const Inputs in = random_inputs(p, 8);
  const Result a = run_kernels<float>(p, in);
  const Result b = run_kernels<float>(p, in);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Result c = run_kernels<float>(p, in);
  omp_set_num_threads(threads);
  for (const Result* r : {&b, &c}) {
    CHECK(r->o == a.o);
    CHECK(r->lse == a.lse);
    CHECK(r->dq == a.dq);
    CHECK(r->dk == a.dk);
    CHECK(r->dv == a.dv);
  }
}

TEST_CASE("flash attention: the per-head and the per-block backward schedules give the same bits",
          "[flash][kernels]") {
  // B·H = 16 heads: one thread runs the per-head schedule (P and dS once), 16 threads the per-block one.
  for (bool causal : {false, true}) {
    for (int64_t d : {16, 24}) {
      FlashParams p = flash_params_contiguous(4, 4, 130, 70, d);
      p.causal = causal;
      const std::vector<int32_t> lens{70, 1, 0, 33};
      p.kv_len = lens.data();
      const Inputs in = random_inputs(p, 11);
      const int threads = omp_get_max_threads();
      omp_set_num_threads(1);
      const Result a = run_kernels<float>(p, in);
      omp_set_num_threads(16);
      const Result b = run_kernels<float>(p, in);
      omp_set_num_threads(threads);
      CHECK(b.o == a.o);
      CHECK(b.dq == a.dq);
      CHECK(b.dk == a.dk);
      CHECK(b.dv == a.dv);
    }
  }
}

TEST_CASE("flash attention: invalid parameters throw", "[flash][kernels]") {
  float x = 0, l = 0;
  FlashParams p = flash_params_contiguous(1, 1, 1, 1, 1);
  p.dropout_p = 1.0f;
  CHECK_THROWS_AS(kc::flash_attention_forward(&x, &l, &x, &x, &x, p), std::invalid_argument);
  p.dropout_p = -0.1f;
  CHECK_THROWS_AS(kc::flash_attention_forward(&x, &l, &x, &x, &x, p), std::invalid_argument);
  p = flash_params_contiguous(1, 1, -1, 1, 1);
  CHECK_THROWS_AS(kc::flash_attention_backward(&x, &x, &x, &x, &x, &x, &x, &x, &l, p, nullptr), std::invalid_argument);
  p = flash_params_contiguous(1, 1, 1, 1, 1);
  p.scale = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(kc::flash_attention_forward(&x, &l, &x, &x, &x, p), std::invalid_argument);
}

TEST_CASE("flash attention: NaN in Q, K or V gives NaN out on the rows that see it, as softmax(QK^T)V does",
          "[flash][kernels]") {
  // Causal, T = Tk = 80: query i sees keys 0..i. Batch 0 carries the NaN (element 3 of one row); batch 1 (kv_len 0)
  // is fully masked and keeps O = 0, LSE = +inf even with NaN in its K and V.
  FlashParams p = flash_params_contiguous(2, 1, 80, 80, 32);
  p.causal = true;
  const std::vector<int32_t> kv_len = {80, 0};
  p.kv_len = kv_len.data();
  const int64_t T = p.T, d = p.d;
  const Inputs clean = random_inputs(p, 31);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    const char* what;
    Vec Inputs::*tensor;
    int64_t row;          // the poisoned row of batch 0 (a query for Q, a key for K and V)
    int64_t first, last;  // batch-0 query rows that must come out NaN: [first, last]
    bool whole_row;       // a NaN score poisons the row's O and LSE; a NaN value only its column of O
  };
  for (const Case& c : {Case{"Q row 10", &Inputs::q, 10, 10, 10, true}, Case{"K row 40", &Inputs::k, 40, 40, 79, true},
                        Case{"V row 60", &Inputs::v, 60, 60, 79, false}}) {
    INFO(c.what);
    Inputs in = clean;
    (in.*c.tensor)[static_cast<size_t>(c.row * d + 3)] = nan;
    in.k[static_cast<size_t>(T * d + 5)] = nan;  // batch 1's keys and values: never seen
    in.v[static_cast<size_t>(T * d + 7)] = nan;
    const auto check = [&](const Result& got, const Result& ref) {
      for (int64_t i = 0; i < T; ++i) {
        const bool poisoned = i >= c.first && i <= c.last;
        const size_t row = static_cast<size_t>(i);
        if (c.whole_row)
          CHECK(std::isnan(got.lse[row]) == poisoned);
        else
          CHECK(got.lse[row] == ref.lse[row]);
        for (int64_t x = 0; x < d; ++x) {
          const size_t e = static_cast<size_t>(i * d + x);
          if (poisoned && (c.whole_row || x == 3))
            CHECK(std::isnan(got.o[e]));
          else if (c.whole_row)           // a V NaN may reach rows of its block through 0 · NaN, as in P·V
            CHECK(got.o[e] == ref.o[e]);  // the rows that never see the NaN are unchanged
        }
        CHECK(got.lse[static_cast<size_t>(T + i)] == kInf);
        for (int64_t x = 0; x < d; ++x) CHECK(got.o[static_cast<size_t>((T + i) * d + x)] == 0.0);
      }
      if (c.tensor == &Inputs::q)  // the NaN row's gradient is NaN too
        for (int64_t x = 0; x < d; ++x) CHECK(std::isnan(got.dq[static_cast<size_t>(c.row * d + x)]));
    };
    check(run_kernels<float>(p, in), run_kernels<float>(p, clean));
    check(run_kernels<double>(p, in), run_kernels<double>(p, clean));
  }
}
