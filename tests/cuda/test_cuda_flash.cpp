// scaled_dot_product_attention's fused CUDA path: against the fused CPU path and the composite CUDA path (forward
// and backward) over head dims and lengths with causal, key padding and fully masked rows; the dropout mask shared
// with the CPU; bitwise determinism; peak device memory linear in N.
#include <algorithm>
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "engine/attention.h"
#include "engine/mixgrad.h"
#include "kernels/precision.h"
#include "tests/common/check.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

const Device kCuda{DeviceType::cuda, 0};

struct Run {
  Tensor o, dq, dk, dv;
  std::string node;
};

Run run_sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& mask, bool causal,
             AttentionBackend backend, Device device, double dropout = 0.0) {
  autograd::clear_tape();
  Tensor ql = q.to(device).detach(), kl = k.to(device).detach(), vl = v.to(device).detach();
  for (Tensor* t : {&ql, &kl, &vl}) t->requires_grad_();
  Run r;
  r.o = scaled_dot_product_attention(ql, kl, vl, mask.defined() ? mask.to(device) : Tensor(), causal, dropout, -1.0,
                                     backend);
  const auto node = r.o.impl().grad_fn.lock();
  r.node = node ? node->name() : "";
  autograd::backward(r.o, g.to(device));
  r.o = r.o.detach().to(kCPU), r.dq = ql.grad().to(kCPU), r.dk = kl.grad().to(kCPU), r.dv = vl.grad().to(kCPU);
  return r;
}

void require_close(const Run& got, const Run& want, testing::Tolerance tol) {
  REQUIRE_CLOSE(testing::all_close(got.o, want.o, tol));
  REQUIRE_CLOSE(testing::all_close(got.dq, want.dq, tol));
  REQUIRE_CLOSE(testing::all_close(got.dk, want.dk, tol));
  REQUIRE_CLOSE(testing::all_close(got.dv, want.dv, tol));
}

// O at one tolerance, the three gradients at another (the tensor-core paths round P and dS too).
void require_close(const Run& got, const Run& want, testing::Tolerance fwd, testing::Tolerance grads) {
  REQUIRE_CLOSE(testing::all_close(got.o, want.o, fwd));
  REQUIRE_CLOSE(testing::all_close(got.dq, want.dq, grads));
  REQUIRE_CLOSE(testing::all_close(got.dk, want.dk, grads));
  REQUIRE_CLOSE(testing::all_close(got.dv, want.dv, grads));
}

void require_bitwise(const Run& a, const Run& b) {
  REQUIRE_CLOSE(testing::bit_equal(a.o, b.o));
  REQUIRE_CLOSE(testing::bit_equal(a.dq, b.dq));
  REQUIRE_CLOSE(testing::bit_equal(a.dk, b.dk));
  REQUIRE_CLOSE(testing::bit_equal(a.dv, b.dv));
}

Tensor key_padding(const std::vector<int64_t>& lens, int64_t tk) {
  Tensor m = zeros({int64_t(lens.size()), 1, 1, tk}, TensorOptions(DType::u8));
  for (size_t b = 0; b < lens.size(); ++b)
    for (int64_t j = 0; j < std::min(lens[b], tk); ++j) m.data<uint8_t>()[int64_t(b) * tk + j] = 1;
  return m;
}

bool finite_all(const Tensor& t) {
  for (double x : t.to(DType::f64).to_vector<double>())
    if (!std::isfinite(x)) return false;
  return true;
}

// A matmul precision for one scope (tf32 / bf16: the fused CUDA attention runs on tensor cores).
struct PrecisionScope {
  explicit PrecisionScope(MatmulPrecision p = MatmulPrecision::tf32) { set_matmul_precision(p); }
  ~PrecisionScope() { set_matmul_precision(MatmulPrecision::fp32); }
};

// x with every element rounded to TF32 as cvt.rna does, or to bf16 (kernels/precision.h).
Tensor round_to(const Tensor& x, MatmulPrecision p = MatmulPrecision::tf32) {
  std::vector<float> v = x.to_vector<float>();
  for (float& e : v) {
    const uint32_t b = std::bit_cast<uint32_t>(e);
    e = std::bit_cast<float>(p == MatmulPrecision::bf16 ? kernels::bf16_round_bits(b) : kernels::tf32_round_bits(b));
  }
  return from_vector(v, x.shape());
}
Tensor round_tf32(const Tensor& x) { return round_to(x); }

}  // namespace

TEST_CASE("cuda: TF32 tensor-core forward and backward match the CPU kernels on TF32 inputs; bitwise determinism",
          "[cuda][flash][tc]") {
  // Against the fused CPU path on the same q, k, v and dO rounded to TF32, so only the rounding of P and dS and fp32
  // sums separate them. The CPU block emulator (tests/cpu/test_flash_attention_tc.cpp) runs these kernels' source
  // and sees up to ~3e-4 on O and ~1.4e-3 on the gradients (1e-3 at N = 1000).
  const testing::Tolerance fwd{1e-3, 1e-3}, grads{2e-3, 5e-3};
  manual_seed(206);
  for (int64_t d : {32, 64, 128})
    for (int64_t n : {1, 63, 65, 1000})
      for (bool causal : {false, true}) {
        const bool masked = n > 1 && !causal;
        INFO("d " << d << " N " << n << " causal " << causal << " key padding " << masked);
        const int64_t b = n >= 1000 ? 1 : 2, h = 2;
        const Shape s{b, h, n, d};
        Tensor q = round_tf32(randn(s)), k = round_tf32(randn(s)), v = round_tf32(randn(s)), g = round_tf32(randn(s));
        const Tensor mask = masked ? key_padding(b == 1 ? std::vector<int64_t>{n / 2 + 3}
                                                        : std::vector<int64_t>{n, n / 3 + 1},
                                                 n)
                                   : Tensor();
        Run tc, tc2;
        {
          PrecisionScope tf32;
          tc = run_sdpa(q, k, v, g, mask, causal, AttentionBackend::automatic, kCuda);
          tc2 = run_sdpa(q, k, v, g, mask, causal, AttentionBackend::automatic, kCuda);
        }
        CHECK(tc.node == "flash_attention");
        const Run cpu = run_sdpa(q, k, v, g, mask, causal, AttentionBackend::fused, kCPU);
        require_close(tc, cpu, fwd, grads);
        require_bitwise(tc, tc2);
      }
}

TEST_CASE("cuda: TF32 tensor-core attention, causal with T > Tk (the first rows see no key)", "[cuda][flash][tc]") {
  manual_seed(209);
  const testing::Tolerance fwd{1e-3, 1e-3}, grads{2e-3, 5e-3};
  for (int64_t d : {64, 128}) {
    INFO("d " << d);
    Tensor q = round_tf32(randn({2, 2, 130, d})), k = round_tf32(randn({2, 2, 70, d}));
    Tensor v = round_tf32(randn({2, 2, 70, d})), g = round_tf32(randn({2, 2, 130, d}));
    Run tc;
    {
      PrecisionScope tf32;
      tc = run_sdpa(q, k, v, g, Tensor(), true, AttentionBackend::automatic, kCuda);
    }
    CHECK(tc.node == "flash_attention");
    const Run cpu = run_sdpa(q, k, v, g, Tensor(), true, AttentionBackend::fused, kCPU);
    require_close(tc, cpu, fwd, grads);
  }
}

TEST_CASE("cuda: bf16 tensor-core attention matches the CPU kernels on bf16-rounded inputs", "[cuda][flash][tc]") {
  // The bf16 rows of the CPU block emulator see up to 4.7e-3 on O and 1.3e-2 on gradients (P and dS rounded to bf16;
  // D from the unrounded dO): the same tolerances here.
  const testing::Tolerance fwd{5e-3, 1e-2}, grads{1e-2, 3e-2};
  manual_seed(208);
  for (int64_t d : {64, 128})
    for (bool causal : {false, true}) {
      INFO("d " << d << " causal " << causal);
      const Shape s{2, 2, 200, d};
      const auto bf = [](const Tensor& x) { return round_to(x, MatmulPrecision::bf16); };
      Tensor q = bf(randn(s)), k = bf(randn(s)), v = bf(randn(s)), g = bf(randn(s));
      Run tc;
      {
        PrecisionScope bf16(MatmulPrecision::bf16);
        tc = run_sdpa(q, k, v, g, Tensor(), causal, AttentionBackend::automatic, kCuda);
      }
      CHECK(tc.node == "flash_attention");
      const Run cpu = run_sdpa(q, k, v, g, Tensor(), causal, AttentionBackend::fused, kCPU);
      require_close(tc, cpu, fwd, grads);
    }
}

TEST_CASE("cuda: TF32 tensor-core attention keeps the dropout mask, empty rows and NaN rows of the fp32 path",
          "[cuda][flash][tc]") {
  manual_seed(207);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t t = 130, d = 64;
  Tensor q = round_tf32(randn({2, 3, t, d})), k = round_tf32(randn({2, 3, t, d})), v = round_tf32(randn({2, 3, t, d}));
  const Tensor g = randn({2, 3, t, d});
  q.data<float>()[5 * d + 2] = nan;  // batch 0, head 0, query 5
  const Tensor mask = key_padding({t, 0}, t);  // batch 1 sees no key: O = 0
  const GeneratorState st = generator_state();
  Run tc;
  {
    PrecisionScope tf32;
    tc = run_sdpa(q, k, v, g, mask, false, AttentionBackend::automatic, kCuda, 0.25);
  }
  set_generator_state(st);
  const Run cpu = run_sdpa(q, k, v, g, mask, false, AttentionBackend::fused, kCPU, 0.25);
  const std::vector<float> ot = tc.o.to_vector<float>(), oc = cpu.o.to_vector<float>();
  int64_t wrong = 0, first_wrong = -1;
  double worst = 0;
  for (int64_t i = 0; i < int64_t(ot.size()); ++i) {
    const bool want_nan = std::isnan(oc[size_t(i)]);
    const bool ok = want_nan ? std::isnan(ot[size_t(i)])
                             : std::fabs(ot[size_t(i)] - oc[size_t(i)]) <= 1e-3 + 1e-3 * std::fabs(oc[size_t(i)]);
    if (!want_nan) worst = std::max(worst, double(std::fabs(ot[size_t(i)] - oc[size_t(i)])));
    if (!ok && wrong++ == 0) first_wrong = i;
  }
  INFO(wrong << " wrong elements, first at flat index " << first_wrong << "; worst finite difference " << worst);
  CHECK(wrong == 0);
  int64_t nonzero_empty = 0;  // batch 1 sees no key: its O is exactly 0
  for (int64_t x = 0; x < 3 * t * d; ++x) nonzero_empty += ot[size_t(3 * t * d + x)] != 0.0f;
  CHECK(nonzero_empty == 0);
  CHECK(std::isnan(oc[size_t(5 * d)]));  // the NaN query's row is NaN on the CPU, and so on the GPU (checked above)
}

TEST_CASE("cuda: fused sdpa matches fused CPU and composite CUDA, forward and backward", "[cuda][flash]") {
  // Sums over up to 2048 keys in float32 on both sides: the CPU-vs-CUDA tolerance, loosened for the longest rows.
  const testing::Tolerance tol{2e-4, 2e-5};
  manual_seed(201);
  for (int64_t d : {32, 64, 128})
    for (int64_t n : {1, 63, 64, 65, 1000, 2048})
      for (bool causal : {false, true}) {
        const bool masked = n > 1 && !causal;  // key padding on the non-causal runs
        INFO("d " << d << " N " << n << " causal " << causal << " key padding " << masked);
        const int64_t b = n >= 1000 ? 1 : 2, h = 2;
        const Shape s{b, h, n, d};
        Tensor q = randn(s), k = randn(s), v = randn(s), g = randn(s);
        const Tensor mask = masked ? key_padding(b == 1 ? std::vector<int64_t>{n / 2 + 3}
                                                        : std::vector<int64_t>{n, n / 3 + 1},
                                                 n)
                                   : Tensor();
        const Run gpu = run_sdpa(q, k, v, g, mask, causal, AttentionBackend::automatic, kCuda);
        CHECK(gpu.node == "flash_attention");
        const Run cpu = run_sdpa(q, k, v, g, mask, causal, AttentionBackend::fused, kCPU);
        require_close(gpu, cpu, tol);
        if (n <= 1000) {
          const Run comp = run_sdpa(q, k, v, g, mask, causal, AttentionBackend::composite, kCuda);
          CHECK(comp.node != "flash_attention");
          require_close(gpu, comp, tol);
        }
      }
}

TEST_CASE("cuda: fused sdpa fully masked rows, head dims above 128 fall back", "[cuda][flash]") {
  manual_seed(202);
  const int64_t t = 70, tk = 66, d = 64;
  Tensor q = randn({2, 2, t, d}), k = randn({2, 2, tk, d}), v = randn({2, 2, tk, d}), g = randn({2, 2, t, d});
  Tensor mask = key_padding({tk, 0}, tk);  // batch 1: no key; causal T > Tk: first rows of batch 0 see none
  const Run gpu = run_sdpa(q, k, v, g, mask, true, AttentionBackend::automatic, kCuda);
  REQUIRE(gpu.node == "flash_attention");
  for (const Tensor* x : {&gpu.o, &gpu.dq, &gpu.dk, &gpu.dv}) REQUIRE(finite_all(*x));
  const std::vector<float> o = gpu.o.to_vector<float>(), dk = gpu.dk.to_vector<float>();
  for (int64_t x = 0; x < 2 * t * d; ++x) CHECK(o[size_t(2 * t * d + x)] == 0.0f);
  for (int64_t x = 0; x < 2 * tk * d; ++x) CHECK(dk[size_t(2 * tk * d + x)] == 0.0f);
  require_close(gpu, run_sdpa(q, k, v, g, mask, true, AttentionBackend::fused, kCPU), tolerance(Compare::cpu_vs_cuda));

  Tensor q2 = randn({1, 1, 20, 160}), k2 = randn({1, 1, 20, 160}), v2 = randn({1, 1, 20, 160});
  const Run wide = run_sdpa(q2, k2, v2, randn({1, 1, 20, 160}), Tensor(), false, AttentionBackend::automatic, kCuda);
  CHECK(wide.node != "flash_attention");
  CHECK_THROWS_WITH(scaled_dot_product_attention(q2.to(kCuda), k2.to(kCuda), v2.to(kCuda), Tensor(), false, 0.0,
                                                 -1.0, AttentionBackend::fused),
                    Catch::Contains("head dim"));
}

TEST_CASE("cuda: fused sdpa dropout mask equals the CPU's; runs are bitwise deterministic", "[cuda][flash]") {
  manual_seed(203);
  for (int64_t d : {32, 128}) {
    INFO("d " << d);
    const Shape s{2, 3, 130, d};
    Tensor q = randn(s), k = randn(s), v = randn(s), g = randn(s);
    Tensor mask = key_padding({130, 77}, 130);
    const GeneratorState st = generator_state();
    const Run cpu = run_sdpa(q, k, v, g, mask, false, AttentionBackend::fused, kCPU, 0.25);
    set_generator_state(st);
    const Run gpu = run_sdpa(q, k, v, g, mask, false, AttentionBackend::automatic, kCuda, 0.25);
    set_generator_state(st);
    const Run gpu2 = run_sdpa(q, k, v, g, mask, false, AttentionBackend::automatic, kCuda, 0.25);
    // Same mask: a value dropped on one device is dropped on the other, so the outputs agree within rounding.
    require_close(gpu, cpu, tolerance(Compare::cpu_vs_cuda));
    require_bitwise(gpu, gpu2);
    // Without dropout, too.
    const Run a = run_sdpa(q, k, v, g, Tensor(), true, AttentionBackend::automatic, kCuda);
    const Run b = run_sdpa(q, k, v, g, Tensor(), true, AttentionBackend::automatic, kCuda);
    require_bitwise(a, b);
  }
}

TEST_CASE("cuda: fused sdpa gives NaN out for NaN in on the rows that see it; fully masked rows stay 0",
          "[cuda][flash]") {
  // Causal, T = Tk = 80 (query i sees keys 0..i). Batch 0: NaN in query 10 and in key 40, so rows 10 and 40..79 come
  // out NaN and the others finite, on the GPU as on the CPU (PyTorch's softmax(QK^T)V does the same). Batch 1 sees
  // no key (key padding 0): O = 0 despite a NaN in its keys.
  manual_seed(205);
  const int64_t t = 80, d = 64;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor q = randn({2, 1, t, d}), k = randn({2, 1, t, d}), v = randn({2, 1, t, d}), g = randn({2, 1, t, d});
  q.data<float>()[10 * d + 1] = nan;
  k.data<float>()[40 * d + 3] = nan;
  k.data<float>()[t * d + 5] = nan;
  const Tensor mask = key_padding({t, 0}, t);
  const Run gpu = run_sdpa(q, k, v, g, mask, true, AttentionBackend::automatic, kCuda);
  REQUIRE(gpu.node == "flash_attention");
  const Run cpu = run_sdpa(q, k, v, g, mask, true, AttentionBackend::fused, kCPU);
  for (const Run* r : {&gpu, &cpu}) {
    INFO((r == &gpu ? "cuda" : "cpu"));
    const std::vector<float> o = r->o.to_vector<float>();
    int64_t wrong = 0, first_wrong = -1;
    for (int64_t i = 0; i < t; ++i) {
      const bool poisoned = i == 10 || i >= 40;
      for (int64_t x = 0; x < d; ++x) {
        const bool ok = std::isnan(o[size_t(i * d + x)]) == poisoned && o[size_t((t + i) * d + x)] == 0.0f;
        if (!ok && wrong++ == 0) first_wrong = i;
      }
    }
    INFO(wrong << " wrong elements; first in row " << first_wrong);
    CHECK(wrong == 0);
  }
  // The finite rows agree between the devices.
  const std::vector<float> og = gpu.o.to_vector<float>(), oc = cpu.o.to_vector<float>();
  double worst = 0;
  for (int64_t i = 0; i < 40; ++i)
    for (int64_t x = 0; x < d; ++x)
      if (i != 10) worst = std::max(worst, double(std::fabs(og[size_t(i * d + x)] - oc[size_t(i * d + x)])));
  CHECK(worst < 1e-4);
}

TEST_CASE("cuda: fused sdpa peak device memory grows linearly with N", "[cuda][flash]") {
  const auto peak_of = [](int64_t n, AttentionBackend backend) {
    manual_seed(204);
    const TensorOptions opt(DType::f32, kCuda, true);
    Tensor q = randn({1, 1, n, 64}, opt), k = randn({1, 1, n, 64}, opt), v = randn({1, 1, n, 64}, opt);
    Tensor g = randn({1, 1, n, 64}, TensorOptions(DType::f32, kCuda));
    autograd::clear_tape();
    synchronize(kCuda);
    const int64_t base = memory_stats(kCuda).bytes_in_use;
    reset_peak_memory(kCuda);
    {
      Tensor o = scaled_dot_product_attention(q, k, v, Tensor(), false, 0.0, -1.0, backend);
      autograd::backward(o, g);
      synchronize(kCuda);
    }
    return double(memory_stats(kCuda).peak_bytes - base);
  };
  const double f1 = peak_of(1024, AttentionBackend::fused), f4 = peak_of(4096, AttentionBackend::fused);
  const double c1 = peak_of(1024, AttentionBackend::composite), c4 = peak_of(4096, AttentionBackend::composite);
  INFO("fused peak " << f1 << " -> " << f4 << " bytes; composite " << c1 << " -> " << c4);
  CHECK(f4 / f1 < 4.0 * 1.5);
  CHECK(c4 / c1 > 8.0);
}
