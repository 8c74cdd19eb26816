// Gated-attention scores on CUDA against the CPU op on the same inputs, forward and backward (q, k, v, rel_bias), in
// one table over awkward sizes: single tokens, sizes off the 32-row tile and the 64-column slice, Z and E above one
// slice, chunks that do not divide L, chunks larger than L, padded samples (a whole chunk of padding), lengths on
// either device, every attention function, with and without the bias; failures name the worst element. Also: the
// device-side length check, and bitwise determinism.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/gated_attention.h"
#include "engine/mixgrad.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using namespace mixgrad::testing;
using Catch::Contains;

Device gpu() { return Device("cuda"); }

struct GattCudaCase {
  std::string name;
  int64_t B, L, Z, E;
  GatedAttentionFn fn;
  int64_t chunk;
  std::vector<int32_t> lengths;  // empty: full length
  int64_t bias_half;             // 0: no bias
  Tolerance tol = tolerance(Compare::cpu_vs_cuda);
  bool lengths_on_cpu = false;  // CPU lengths with CUDA q, k, v
};

// Long sums (drel_bias over B·L·span terms, rows over thousands of keys) are added in a different order on each
// device: a looser float32 tolerance for those.
const Tolerance kLong{1e-3, 2e-4};

std::vector<GattCudaCase> cuda_cases() {
  using F = GatedAttentionFn;
  return {
      {"one token, softmax", 1, 1, 1, 1, F::softmax, -1, {}, 1},
      {"one token, relu2", 1, 1, 1, 1, F::relu2, -1, {}, 0},
      {"softmax full, padded, bias", 3, 37, 5, 7, F::softmax, -1, {37, 1, 20}, 40},
      {"laplace full, padded, bias", 3, 37, 5, 7, F::laplace, -1, {37, 1, 20}, 37},
      {"relu2 full, padded, no bias", 3, 37, 5, 7, F::relu2, -1, {37, 1, 20}, 0},
      {"softmax chunk 10 of L 33, bias", 2, 33, 16, 9, F::softmax, 10, {}, 10},
      {"laplace chunk 10 of L 33, padded (last chunks all padding)", 2, 33, 16, 9, F::laplace, 10, {33, 12}, 12},
      {"relu2 chunk 10 of L 33, padded, CPU lengths",
       2,
       33,
       16,
       9,
       F::relu2,
       10,
       {33, 12},
       10,
       tolerance(Compare::cpu_vs_cuda),
       true},
      {"softmax Z 130 E 200 (several slices), chunk 45", 2, 100, 130, 200, F::softmax, 45, {100, 61}, 45, kLong},
      {"relu2 Z 64 E 128 (whole slices), full", 2, 96, 64, 128, F::relu2, -1, {96, 64}, 96, kLong},
      {"laplace chunk > L: full", 2, 50, 8, 8, F::laplace, 128, {50, 49}, 128},
      {"softmax chunk 1", 2, 9, 3, 2, F::softmax, 1, {9, 4}, 1},
      {"softmax long full", 1, 1500, 32, 48, F::softmax, -1, {}, 1500, kLong},
      {"relu2 long chunk 256, padded", 2, 1100, 32, 64, F::relu2, 256, {1100, 700}, 256, kLong},
      {"laplace many samples", 40, 20, 4, 6, F::laplace, 8, {}, 9},
  };
}

struct Host {
  std::vector<float> q, k, v, bias, w;
};

std::vector<float> uniform(size_t n, float lo, float hi, std::mt19937& gen) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> x(n);
  for (float& e : x) e = u(gen);
  return x;
}

Host make_host(const GattCudaCase& c, uint32_t seed) {
  std::mt19937 gen(seed);
  const int64_t span = c.chunk > 0 && c.chunk < c.L ? c.chunk : c.L;
  const float a = c.fn == GatedAttentionFn::softmax ? 1.5f : 2.f * std::sqrt(float(span) / float(c.Z));
  Host h;
  h.q = uniform(size_t(c.B * c.L * c.Z), -a, a, gen);
  h.k = uniform(size_t(c.B * c.L * c.Z), -a, a, gen);
  h.v = uniform(size_t(c.B * c.L * c.E), -1.f, 1.f, gen);
  if (c.bias_half > 0) h.bias = uniform(size_t(2 * c.bias_half - 1), -0.5f, 0.5f, gen);
  h.w = uniform(size_t(c.B * c.L * c.E), 0.5f, 1.5f, gen);
  return h;
}

// Output and the gradients {q, k, v, rel_bias} of sum(out · w) on one device.
std::vector<Tensor> run_on(const GattCudaCase& c, const Host& h, Device device) {
  auto leaf = [&](const std::vector<float>& x, Shape s) {
    return from_vector<float>(x, std::move(s)).to(device).detach().requires_grad_();
  };
  Tensor q = leaf(h.q, {c.B, c.L, c.Z}), k = leaf(h.k, {c.B, c.L, c.Z}), v = leaf(h.v, {c.B, c.L, c.E});
  Tensor bias = c.bias_half > 0 ? leaf(h.bias, {2 * c.bias_half - 1}) : Tensor();
  Tensor lengths;
  if (!c.lengths.empty()) {
    lengths = from_vector<int32_t>(c.lengths, {c.B}, TensorOptions(DType::i32));
    if (!c.lengths_on_cpu) lengths = lengths.to(device);
  }
  Tensor out = gated_attention(q, k, v, bias, lengths, {c.fn, c.chunk});
  REQUIRE(out.device() == device);
  sum(mul(out, from_vector<float>(h.w, {c.B, c.L, c.E}).to(device))).backward();
  std::vector<Tensor> r{out.detach().to(kCPU), q.grad().to(kCPU), k.grad().to(kCPU), v.grad().to(kCPU)};
  if (bias.defined()) r.push_back(bias.grad().to(kCPU));
  return r;
}

}  // namespace

TEST_CASE("CUDA gated_attention: forward and every gradient match the CPU op", "[cuda][gated_attention]") {
  const std::vector<GattCudaCase> cases = cuda_cases();
  const char* names[] = {"out", "dq", "dk", "dv", "drel_bias"};
  for (size_t n = 0; n < cases.size(); ++n) {
    const GattCudaCase& c = cases[n];
    DYNAMIC_SECTION("#" << n << " " << c.name) {
      INFO("B " << c.B << " L " << c.L << " Z " << c.Z << " E " << c.E << " fn " << gated_attention_fn_name(c.fn)
                << " chunk " << c.chunk << " P " << c.bias_half);
      const Host h = make_host(c, 700 + uint32_t(n));
      const std::vector<Tensor> ref = run_on(c, h, kCPU), dev = run_on(c, h, gpu());
      REQUIRE(ref.size() == dev.size());
      for (size_t i = 0; i < ref.size(); ++i) {
        INFO(names[i] << " of shape " << shape_str(ref[i].shape()));
        REQUIRE_CLOSE(all_close(dev[i], ref[i], c.tol));
      }
    }
  }
}

TEST_CASE("CUDA gated_attention: two runs are bitwise identical (no atomics)", "[cuda][gated_attention]") {
  const GattCudaCase full{"softmax full", 2, 300, 24, 40, GatedAttentionFn::softmax, -1, {300, 123}, 300};
  const GattCudaCase chunked{"laplace chunked", 2, 300, 24, 40, GatedAttentionFn::laplace, 70, {300, 123}, 70};
  for (const GattCudaCase& c : {full, chunked}) {
    INFO(c.name);
    const Host h = make_host(c, 77);
    const std::vector<Tensor> a = run_on(c, h, gpu()), b = run_on(c, h, gpu());
    for (size_t i = 0; i < a.size(); ++i) REQUIRE_CLOSE(bit_equal(a[i], b[i]));
  }
}

TEST_CASE("CUDA gated_attention: lengths on the GPU are validated on the device", "[cuda][gated_attention]") {
  const GattCudaCase c{"lengths", 2, 16, 3, 4, GatedAttentionFn::relu2, 5, {}, 0};
  const Host h = make_host(c, 9);
  const Tensor q = from_vector<float>(h.q, {2, 16, 3}).to(gpu()), k = from_vector<float>(h.k, {2, 16, 3}).to(gpu()),
               v = from_vector<float>(h.v, {2, 16, 4}).to(gpu());
  const GatedAttentionOptions opt{GatedAttentionFn::relu2, 5};
  for (const std::vector<int32_t>& bad : {std::vector<int32_t>{16, 0}, std::vector<int32_t>{17, 5}}) {
    const Tensor y = gated_attention(q, k, v, Tensor(), from_vector<int32_t>(bad, {2}).to(gpu()), opt);
    REQUIRE_THROWS_WITH(y.to(kCPU), Contains("gated_attention: a length is outside [1, L] = [1, 16]"));
  }
  REQUIRE_NOTHROW(gated_attention(q, k, v, Tensor(), from_vector<int32_t>({16, 1}, {2}).to(gpu()), opt).to(kCPU));
  REQUIRE_THROWS_WITH(gated_attention(q.to(kCPU), k, v),
                      Contains("gated_attention: expected all tensors on the same device"));
  REQUIRE_THROWS_WITH(
      gated_attention(q.to(DType::f64), k.to(DType::f64), v.to(DType::f64)),
      Contains("gated_attention: float64 tensors are supported on the CPU only; CUDA kernels take float32"));
}
