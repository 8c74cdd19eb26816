// MEGA's damped multi-dimensional EMA on CUDA against the CPU op on the same inputs, forward and backward (x and all
// five parameters), in one table over awkward sizes (single elements, sizes off the block width, ndim at every
// register budget, padded samples, truncated and full kernels, both paths, lengths on either device); failures name
// the worst element. Also: the device-side length check, and determinism.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/ema.h"
#include "engine/mixgrad.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using namespace mixgrad::testing;
using Catch::Contains;

Device gpu() { return Device("cuda"); }

struct EmaCudaCase {
  std::string name;
  int64_t B, L, D, H;
  bool bidirectional;
  int64_t truncation;
  std::vector<int32_t> lengths;  // empty: full length
  EmaPath path = EmaPath::automatic;
  Tolerance tol = tolerance(Compare::cpu_vs_cuda);
  bool lengths_on_cpu = false;  // CPU lengths with CUDA x
};

// Long sums (parameter gradients over B·L terms, taps over thousands of positions) are accumulated in a different
// order on each device: a looser float32 tolerance for those.
const Tolerance kLong{1e-3, 2e-4};

std::vector<EmaCudaCase> cuda_cases() {
  return {
      {"one element", 1, 1, 1, 1, true, 0, {}},
      {"scan bidirectional padded, ndim 16", 3, 37, 5, 16, true, 0, {37, 1, 20}},
      {"scan causal, ndim 3 (register budget 4)", 2, 257, 7, 3, false, 0, {}},
      {"scan ndim 5 (budget 8), CPU lengths",
       2,
       40,
       3,
       5,
       false,
       0,
       {40, 17},
       EmaPath::automatic,
       tolerance(Compare::cpu_vs_cuda),
       true},
      {"scan ndim 20 (budget 32)", 2, 70, 4, 20, true, 0, {70, 33}},
      {"scan ndim 64 (budget 64)", 2, 64, 5, 64, true, 0, {}},
      {"convolution truncation 50, padded", 2, 129, 33, 16, true, 50, {129, 64}},
      {"convolution forced, full kernel", 2, 100, 6, 16, true, 0, {100, 3}, EmaPath::convolution},
      {"convolution causal truncation 1", 3, 19, 2, 2, false, 1, {19, 5, 1}},
      {"convolution long, truncation 300", 1, 1500, 3, 16, true, 300, {}, EmaPath::automatic, kLong},
      {"scan long, padded", 2, 2048, 4, 16, true, 0, {2048, 999}, EmaPath::automatic, kLong},
      {"scan 260 channels (grid of many blocks)", 3, 33, 260, 16, true, 0, {33, 2, 31}},
  };
}

struct Host {
  std::vector<float> x, delta, alpha, beta, gamma, omega, w;
};

std::vector<float> uniform(size_t n, float lo, float hi, std::mt19937& gen) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& e : v) e = u(gen);
  return v;
}

Host make_host(const EmaCudaCase& c, uint32_t seed) {
  std::mt19937 gen(seed);
  const size_t p = size_t((c.bidirectional ? 2 : 1) * c.D * c.H), n = size_t(c.B * c.L * c.D);
  Host h;
  h.x = uniform(n, -1.f, 1.f, gen);
  h.delta = uniform(p, -4.f, 1.5f, gen);
  h.alpha = uniform(p, -1.5f, 1.5f, gen);
  h.beta = uniform(p, -1.f, 1.f, gen);
  h.gamma = uniform(p, -1.f, 1.f, gen);
  h.omega = uniform(size_t(c.D), -1.f, 1.f, gen);
  h.w = uniform(n, 0.5f, 1.5f, gen);
  return h;
}

// Output and the gradients {x, delta, alpha, beta, gamma, omega} of sum(out · w) on one device.
std::vector<Tensor> run_on(const EmaCudaCase& c, const Host& h, Device device) {
  const int64_t rows = (c.bidirectional ? 2 : 1) * c.D;
  auto leaf = [&](const std::vector<float>& v, Shape s) {
    return from_vector<float>(v, std::move(s)).to(device).detach().requires_grad_();
  };
  Tensor x = leaf(h.x, {c.B, c.L, c.D}), delta = leaf(h.delta, {rows, c.H}), alpha = leaf(h.alpha, {rows, c.H}),
         beta = leaf(h.beta, {rows, c.H}), gamma = leaf(h.gamma, {rows, c.H}), omega = leaf(h.omega, {c.D});
  Tensor lengths;
  if (!c.lengths.empty()) {
    lengths = from_vector<int32_t>(c.lengths, {c.B}, TensorOptions(DType::i32));
    if (!c.lengths_on_cpu) lengths = lengths.to(device);
  }
  Tensor out = multihead_ema(x, delta, alpha, beta, gamma, omega, lengths, {c.bidirectional, c.truncation, c.path});
  REQUIRE(out.device() == device);
  sum(mul(out, from_vector<float>(h.w, {c.B, c.L, c.D}).to(device))).backward();
  std::vector<Tensor> r{out.detach().to(kCPU)};
  for (const Tensor* t : {&x, &delta, &alpha, &beta, &gamma, &omega}) r.push_back(t->grad().to(kCPU));
  return r;
}

}  // namespace

TEST_CASE("CUDA ema: forward and every gradient match the CPU op", "[cuda][ema]") {
  const std::vector<EmaCudaCase> cases = cuda_cases();
  const char* names[] = {"out", "dx", "ddelta", "dalpha", "dbeta", "dgamma", "domega"};
  for (size_t k = 0; k < cases.size(); ++k) {
    const EmaCudaCase& c = cases[k];
    DYNAMIC_SECTION("#" << k << " " << c.name) {
      INFO("B " << c.B << " L " << c.L << " D " << c.D << " ndim " << c.H << " path "
                << ema_path_name(ema_resolve_path(c.L, {c.bidirectional, c.truncation, c.path})));
      const Host h = make_host(c, 500 + uint32_t(k));
      const std::vector<Tensor> ref = run_on(c, h, kCPU), dev = run_on(c, h, gpu());
      for (size_t i = 0; i < ref.size(); ++i) {
        INFO(names[i] << " of shape " << shape_str(ref[i].shape()));
        REQUIRE_CLOSE(all_close(dev[i], ref[i], c.tol));
      }
    }
  }
}

TEST_CASE("CUDA ema: two runs are bitwise identical (no atomics)", "[cuda][ema]") {
  const EmaCudaCase scan{"scan", 2, 300, 8, 16, true, 0, {300, 123}};
  const EmaCudaCase conv{"conv", 2, 300, 8, 16, true, 40, {300, 123}};
  for (const EmaCudaCase& c : {scan, conv}) {
    INFO(c.name);
    const Host h = make_host(c, 77);
    const std::vector<Tensor> a = run_on(c, h, gpu()), b = run_on(c, h, gpu());
    for (size_t i = 0; i < a.size(); ++i) REQUIRE_CLOSE(bit_equal(a[i], b[i]));
  }
}

TEST_CASE("CUDA ema: lengths on the GPU are validated on the device", "[cuda][ema]") {
  const EmaCudaCase c{"lengths", 2, 16, 3, 4, true, 0, {}};
  const Host h = make_host(c, 9);
  const Tensor x = from_vector<float>(h.x, {2, 16, 3}).to(gpu());
  auto p = [&](const std::vector<float>& v) { return from_vector<float>(v, {6, 4}).to(gpu()); };
  const Tensor omega = from_vector<float>(h.omega, {3}).to(gpu());
  for (const std::vector<int32_t>& bad : {std::vector<int32_t>{16, 0}, std::vector<int32_t>{17, 5}}) {
    const Tensor y = multihead_ema(x, p(h.delta), p(h.alpha), p(h.beta), p(h.gamma), omega,
                                   from_vector<int32_t>(bad, {2}).to(gpu()));
    REQUIRE_THROWS_WITH(y.to(kCPU), Contains("multihead_ema: a length is outside [1, L] = [1, 16]"));
  }
  REQUIRE_NOTHROW(multihead_ema(x, p(h.delta), p(h.alpha), p(h.beta), p(h.gamma), omega,
                                from_vector<int32_t>({16, 1}, {2}).to(gpu()))
                      .to(kCPU));
}

TEST_CASE("CUDA ema: ema_kernel taps match the CPU", "[cuda][ema]") {
  const EmaCudaCase c{"taps", 1, 1, 5, 16, true, 0, {}};
  const Host h = make_host(c, 13);
  auto p = [&](const std::vector<float>& v, Device d) { return from_vector<float>(v, {10, 16}).to(d); };
  for (int64_t k : {int64_t(1), int64_t(257), int64_t(4096)}) {
    INFO("k " << k);
    const Tensor want = ema_kernel(p(h.delta, kCPU), p(h.alpha, kCPU), p(h.beta, kCPU), p(h.gamma, kCPU), k);
    const Tensor got = ema_kernel(p(h.delta, gpu()), p(h.alpha, gpu()), p(h.beta, gpu()), p(h.gamma, gpu()), k);
    REQUIRE(got.device() == gpu());
    REQUIRE_CLOSE(all_close(got.to(kCPU), want, tolerance(Compare::cpu_vs_cuda)));
  }
}
