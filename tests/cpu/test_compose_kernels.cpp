// The CPU Compose and masked-softmax kernels (kernels/cpu/compose.cpp) on chunks wider than their key blocks, against
// a direct per-(b, t, s) evaluation of the shared formulas of kernels/compose_math.h (compose_point,
// compose_point_backward, compose_point_weight_grads, compose_visible) in float64; the visible-key interval against
// compose_visible; float results independent of the thread count.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/compose_math.h"
#include "kernels/cpu/compose.h"

namespace {

using mixgrad::kernels::ComposeChunk;
using mixgrad::kernels::ComposeStage;
namespace k = mixgrad::kernels;
namespace kc = mixgrad::kernels::cpu;

template <class T>
std::vector<T> random_vec(size_t n, uint32_t seed, double std) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, std);
  std::vector<T> v(n);
  for (T& x : v) x = T(dist(gen));
  return v;
}

// The chunk of query rows [t0, t0 + tc) with the keys its rows can see (the engine's chunking rule).
ComposeChunk make_chunk(int64_t B, int64_t H, int64_t N, int64_t R, int64_t t0, int64_t tc, bool causal,
                        int64_t window, const int32_t* lengths) {
  ComposeChunk c;
  c.B = B, c.H = H, c.N = N, c.R = R, c.t0 = t0, c.tc = tc, c.causal = causal, c.window = window, c.lengths = lengths;
  int64_t lo = 0, hi = causal ? t0 + tc : N;
  if (window > 0) {
    lo = std::max<int64_t>(0, t0 - window + 1);
    if (!causal) hi = std::min(N, t0 + tc + window - 1);
  }
  c.s0 = lo, c.sc = hi - lo;
  return c;
}

int64_t q_slot(ComposeStage s) { return 2 * int64_t(s); }
int64_t k_slot(ComposeStage s) { return 2 * int64_t(s) + 1; }

// Visits every visible point (b, i, j) of the chunk with its head-0 score offset and the offsets of its query-side
// and key-side weights.
template <class F>
void for_visible(const ComposeChunk& c, ComposeStage stage, F&& f) {
  const int64_t plane = c.tc * c.sc;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t i = 0; i < c.tc; ++i)
      for (int64_t j = 0; j < c.sc; ++j) {
        const int64_t t = c.t0 + i, s = c.s0 + j;
        if (!k::compose_visible(c, k::compose_key_length(c, b), t, s)) continue;
        f(b * c.H * plane + i * c.sc + j, k::compose_dyn_offset(c, q_slot(stage), b, t),
          k::compose_dyn_offset(c, k_slot(stage), b, s));
      }
}

struct Grads {
  std::vector<double> out, da, ddyn, dws;
};

// The per-point reference: compose_point and compose_point_backward at every visible point, 0 elsewhere.
Grads reference(const ComposeChunk& c, ComposeStage stage, const std::vector<double>& a, const std::vector<double>& g,
                const std::vector<double>& dyn, const double* ws, const std::vector<double>& ddyn0) {
  const int H = int(c.H), R = int(c.R);
  const int64_t plane = c.tc * c.sc;
  Grads r{std::vector<double>(a.size(), 0.0), std::vector<double>(a.size(), 0.0), ddyn0,
          std::vector<double>(size_t(H * H), 0.0)};
  for_visible(c, stage, [&](int64_t base, int64_t qo, int64_t ko) {
    double av[k::kComposeMaxHeads] = {}, gv[k::kComposeMaxHeads] = {}, ov[k::kComposeMaxHeads] = {},
           dv[k::kComposeMaxHeads] = {};
    double hq[k::kComposeMaxRank] = {}, hk[k::kComposeMaxRank] = {}, uq[k::kComposeMaxRank] = {},
           uk[k::kComposeMaxRank] = {};
    for (int n = 0; n < H; ++n) av[n] = a[size_t(base + n * plane)], gv[n] = g[size_t(base + n * plane)];
    k::compose_point(ov, av, dyn.data() + qo, dyn.data() + ko, ws, H, R);
    k::compose_point_backward(dv, hq, hk, uq, uk, av, gv, dyn.data() + qo, dyn.data() + ko, ws, H, R);
    for (int n = 0; n < H; ++n) r.out[size_t(base + n * plane)] = ov[n], r.da[size_t(base + n * plane)] = dv[n];
    k::compose_point_weight_grads(r.ddyn.data() + qo, av, gv, hq, uq, H, R);
    k::compose_point_weight_grads(r.ddyn.data() + ko, av, gv, hk, uk, H, R);
    for (int m = 0; m < H; ++m)
      for (int n = 0; n < H; ++n) r.dws[size_t(m * H + n)] += av[m] * gv[n];
  });
  return r;
}

// Largest |got − want| / (1 + |want|), with the index where it occurs in `where`.
double worst(const std::vector<double>& got, const std::vector<double>& want, size_t& where) {
  double w = 0;
  where = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(got[i] - want[i]) / (1.0 + std::fabs(want[i]));
    if (!(e <= w)) w = e, where = i;
  }
  return w;
}

#define CHECK_NEAR_VEC(got, want, tol)                                                         \
  do {                                                                                         \
    size_t at_ = 0;                                                                            \
    const double e_ = worst(got, want, at_);                                                   \
    INFO(#got << ": worst relative error " << e_ << " at element " << at_ << " (got "         \
              << (got)[at_] << ", want " << (want)[at_] << ")");                               \
    CHECK(e_ <= (tol));                                                                        \
  } while (0)

struct Config {
  std::string name;
  bool causal;
  int64_t window;
  bool with_static;
  int64_t R, t0, tc;
};

}  // namespace

TEST_CASE("compose kernels: the visible keys of a row are the interval compose_visible_keys", "[dcmha][kernels]") {
  const int64_t N = 12;
  for (bool causal : {false, true})
    for (int64_t window : {0, 1, 2, 3, 5, 20})
      for (int32_t len : {0, 1, 5, 12}) {
        ComposeChunk c;
        c.N = N, c.causal = causal, c.window = window;
        for (int64_t t = 0; t < N; ++t) {
          const k::ComposeKeyRange r = k::compose_visible_keys(c, len, t);
          INFO("causal " << causal << " window " << window << " len " << len << " t " << t);
          REQUIRE(r.lo <= r.hi);
          for (int64_t s = 0; s < N; ++s) REQUIRE((s >= r.lo && s < r.hi) == k::compose_visible(c, len, t, s));
        }
      }
}

TEST_CASE("compose kernels: forward, backward and masked softmax on wide chunks equal the per-point formulas (f64)",
          "[dcmha][kernels]") {
  const int64_t B = 3, H = 5, N = 150;
  const std::vector<int32_t> lengths = {150, 97, 3};
  const std::vector<Config> configs = {
      {"global", false, 0, false, 2, 40, 37},      {"causal + static", true, 0, true, 2, 100, 50},
      {"causal window 70", true, 70, false, 3, 90, 60}, {"window 70 + static", false, 70, true, 2, 30, 45},
      {"window 20, R 1", false, 20, false, 1, 0, 150},
  };
  for (const Config& cfg : configs)
    for (ComposeStage stage : {ComposeStage::pre, ComposeStage::post}) {
      INFO(cfg.name << ", stage " << int(stage));
      const ComposeChunk c = make_chunk(B, H, N, cfg.R, cfg.t0, cfg.tc, cfg.causal, cfg.window, lengths.data());
      REQUIRE(c.sc > 64);  // several key blocks per row
      const size_t npts = size_t(B * H * c.tc * c.sc);
      const std::vector<double> a = random_vec<double>(npts, 1, 1.0), g = random_vec<double>(npts, 2, 1.0);
      const std::vector<double> dyn = random_vec<double>(size_t(4 * B * N * (2 * cfg.R + 1) * H), 3, 0.5);
      const std::vector<double> ddyn0 = random_vec<double>(dyn.size(), 4, 1.0), ws = random_vec<double>(25, 5, 0.3);
      const double* wsp = cfg.with_static ? ws.data() : nullptr;
      const Grads want = reference(c, stage, a, g, dyn, wsp, ddyn0);
      Grads got{std::vector<double>(npts, 7.0), std::vector<double>(npts, 7.0), ddyn0, std::vector<double>(25, 0.0)};
      kc::compose_forward(got.out.data(), a.data(), dyn.data(), wsp, c, stage);
      kc::compose_backward(got.da.data(), got.ddyn.data(), wsp ? got.dws.data() : nullptr, g.data(), a.data(),
                           dyn.data(), wsp, c, stage, nullptr);
      CHECK_NEAR_VEC(got.out, want.out, 1e-13);
      CHECK_NEAR_VEC(got.da, want.da, 1e-13);
      CHECK_NEAR_VEC(got.ddyn, want.ddyn, 1e-12);
      if (wsp) CHECK_NEAR_VEC(got.dws, want.dws, 1e-12);
      // The masked softmax: p = e^(x − max) / Σ over the visible keys, dx = p ⊙ (dp − Σ p·dp); 0 elsewhere.
      std::vector<double> p_want(npts, 0.0), dx_want(npts, 0.0), p(npts, 7.0), dx(npts, 7.0);
      std::vector<char> vis(npts, 0);
      const int64_t plane = c.tc * c.sc;
      for_visible(c, stage, [&](int64_t base, int64_t, int64_t) {
        for (int64_t h = 0; h < H; ++h) vis[size_t(base + h * plane)] = 1;
      });
      for (int64_t row = 0; row < B * H * c.tc; ++row) {
        const size_t r0 = size_t(row * c.sc);
        double mx = -INFINITY, sum = 0, D = 0;
        for (size_t j = r0; j < r0 + size_t(c.sc); ++j)
          if (vis[j]) mx = std::max(mx, a[j]);
        for (size_t j = r0; j < r0 + size_t(c.sc); ++j)
          if (vis[j]) sum += std::exp(a[j] - mx);
        for (size_t j = r0; j < r0 + size_t(c.sc); ++j)
          if (vis[j]) p_want[j] = std::exp(a[j] - mx) / sum, D += p_want[j] * g[j];
        for (size_t j = r0; j < r0 + size_t(c.sc); ++j) dx_want[j] = vis[j] ? p_want[j] * (g[j] - D) : 0.0;
      }
      kc::masked_softmax_forward(p.data(), a.data(), c);
      kc::masked_softmax_backward(dx.data(), p_want.data(), g.data(), c);
      CHECK_NEAR_VEC(p, p_want, 1e-14);
      CHECK_NEAR_VEC(dx, dx_want, 1e-14);
    }
}

TEST_CASE("compose kernels: float results do not depend on the thread count", "[dcmha][kernels]") {
  const int64_t H = 4, N = 200;
  for (int64_t B : {1, 2, 32}) {
    INFO("B " << B);
    std::vector<int32_t> lengths(static_cast<size_t>(B), static_cast<int32_t>(N));
    lengths[0] = 131;
    const ComposeChunk c = make_chunk(B, H, N, 2, 64, 100, true, 0, lengths.data());
    const size_t npts = size_t(B * H * c.tc * c.sc);
    const std::vector<float> a = random_vec<float>(npts, 6, 1.0), g = random_vec<float>(npts, 7, 1.0);
    const std::vector<float> dyn = random_vec<float>(size_t(4 * B * N * 5 * H), 8, 0.5);
    const std::vector<float> ws = random_vec<float>(size_t(H * H), 9, 0.3);
    struct Out {
      std::vector<float> out, p, da, dx, ddyn, dws;
    };
    auto run = [&] {
      Out o{std::vector<float>(npts), std::vector<float>(npts), std::vector<float>(npts), std::vector<float>(npts),
            std::vector<float>(dyn.size(), 0.f), std::vector<float>(size_t(H * H), 0.f)};
      kc::compose_forward(o.out.data(), a.data(), dyn.data(), ws.data(), c, ComposeStage::post);
      kc::masked_softmax_forward(o.p.data(), a.data(), c);
      kc::compose_backward(o.da.data(), o.ddyn.data(), o.dws.data(), g.data(), a.data(), dyn.data(), ws.data(), c,
                           ComposeStage::pre, nullptr);
      kc::masked_softmax_backward(o.dx.data(), o.p.data(), g.data(), c);
      return o;
    };
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const Out one = run();
    omp_set_num_threads(5);
    const Out five = run();
    omp_set_num_threads(threads);
    CHECK(one.out == five.out);
    CHECK(one.p == five.p);
    CHECK(one.da == five.da);
    CHECK(one.dx == five.dx);
    CHECK(one.ddyn == five.ddyn);
    CHECK(one.dws == five.dws);
  }
}
