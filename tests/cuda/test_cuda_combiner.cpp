// Combiner attention on CUDA against the CPU reference, by one case table (every variant, causal and not, ragged
// spans, key padding, head dims 1..128, single-token and long sequences): the forward output, its log-sum-exp and the
// span summaries, and the gradients of q, k and v; failures name the case and the worst element. Also: two runs are
// bitwise identical, and an unsupported head dim is a clear error.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/combiner.h"
#include "engine/mixgrad.h"
#include "tests/common/check.h"

using namespace mixgrad;
using Catch::Contains;
using testing::Compare;
using testing::tolerance;

namespace {

const Device kCuda{DeviceType::cuda, 0};

struct Case {
  std::string name;
  CombinerVariant variant;
  bool causal;
  int64_t B, H, L, d, span;
  std::vector<int32_t> lengths;  // empty = every token valid
};

const std::vector<Case>& cases() {
  using V = CombinerVariant;
  static const std::vector<Case> table = {
      {"fixed, one token, d 1", V::fixed, false, 1, 1, 1, 1, 0, {}},
      {"fixed, ragged span, padded", V::fixed, false, 3, 2, 37, 33, 5, {37, 20, 1}},
      {"fixed causal, d 64", V::fixed, true, 2, 3, 64, 64, 0, {64, 13}},
      {"fixed, span > L", V::fixed, false, 2, 1, 9, 8, 50, {9, 2}},
      {"logsparse, padded", V::logsparse, false, 2, 2, 100, 16, 0, {100, 57}},
      {"logsparse causal, d 128", V::logsparse, true, 1, 4, 129, 128, 0, {}},
      {"axial, ragged row, padded", V::axial, false, 3, 2, 50, 24, 7, {50, 30, 3}},
      {"axial causal", V::axial, true, 2, 2, 65, 40, 0, {65, 64}},
      {"mixture, ragged row, padded", V::mixture, false, 2, 2, 47, 31, 6, {47, 12}},
      {"mixture causal, d 2", V::mixture, true, 2, 3, 30, 2, 5, {30, 29}},
      {"mixture, long", V::mixture, false, 2, 4, 1024, 64, 0, {1024, 700}},
      {"fixed causal, long", V::fixed, true, 1, 8, 2048, 32, 0, {}},
  };
  return table;
}

std::vector<float> random_values(size_t n, std::mt19937& gen) {
  std::normal_distribution<float> nd;
  std::vector<float> x(n);
  for (float& e : x) e = nd(gen);
  return x;
}

struct Run {
  CombinerForward f;
  Tensor dq, dk, dv;
};

Run run_on(Device device, const Case& tc, const std::vector<std::vector<float>>& data) {
  const Shape shape{tc.B, tc.H, tc.L, tc.d};
  const CombinerLayout layout{tc.variant, tc.span, tc.causal};
  const Tensor lengths =
      tc.lengths.empty() ? Tensor() : from_vector<int32_t>(tc.lengths, {tc.B}, TensorOptions(DType::i32, device));
  std::vector<Tensor> in;
  for (int t = 0; t < 3; ++t) in.push_back(from_vector<float>(data[size_t(t)], shape).to(device).requires_grad_());
  Run r;
  r.f = combiner_attention_forward(in[0].detach(), in[1].detach(), in[2].detach(), layout, lengths);
  const Tensor o = combiner_attention(in[0], in[1], in[2], layout, lengths);
  o.backward(from_vector<float>(data[3], shape).to(device));
  r.dq = in[0].grad(), r.dk = in[1].grad(), r.dv = in[2].grad();
  return r;
}

std::vector<std::vector<float>> case_data(const Case& tc, uint32_t seed) {
  std::mt19937 gen(seed);
  const size_t n = size_t(tc.B * tc.H * tc.L * tc.d);
  return {random_values(n, gen), random_values(n, gen), random_values(n, gen), random_values(n, gen)};
}

}  // namespace

TEST_CASE("cuda combiner: forward, summaries and gradients match the CPU, case by case", "[cuda][combiner]") {
  uint32_t seed = 1;
  for (const Case& tc : cases()) {
    INFO("case: " << tc.name << " (" << combiner_variant_name(tc.variant) << ", L " << tc.L << ", d " << tc.d << ")");
    const auto data = case_data(tc, seed++);
    const Run cpu = run_on(kCPU, tc, data), gpu = run_on(kCuda, tc, data);
    REQUIRE(gpu.f.o.device() == kCuda);
    const testing::Tolerance tol = tolerance(Compare::cpu_vs_cuda);
    const std::vector<std::pair<const char*, std::pair<Tensor, Tensor>>> compared = {
        {"o", {gpu.f.o, cpu.f.o}},
        {"lse", {gpu.f.lse, cpu.f.lse}},
        {"summary query", {gpu.f.summary_query, cpu.f.summary_query}},
        {"summary key", {gpu.f.summary_key, cpu.f.summary_key}},
        {"summary value", {gpu.f.summary_value, cpu.f.summary_value}},
        {"dq", {gpu.dq, cpu.dq}},
        {"dk", {gpu.dk, cpu.dk}},
        {"dv", {gpu.dv, cpu.dv}},
    };
    for (const auto& [what, pair] : compared) {
      INFO(what);
      REQUIRE_CLOSE(testing::all_close(pair.first, pair.second, tol));
    }
    // The argmax tokens are chosen by comparisons only: the same on both devices.
    REQUIRE_CLOSE(testing::bit_equal(gpu.f.key_arg, cpu.f.key_arg));
    REQUIRE_CLOSE(testing::bit_equal(gpu.f.query_arg, cpu.f.query_arg));
  }
}

TEST_CASE("cuda combiner: two runs are bitwise identical (no atomics)", "[cuda][combiner]") {
  const Case& tc = cases()[10];
  const auto data = case_data(tc, 99);
  const Run a = run_on(kCuda, tc, data), b = run_on(kCuda, tc, data);
  REQUIRE_CLOSE(testing::bit_equal(a.f.o, b.f.o));
  REQUIRE_CLOSE(testing::bit_equal(a.dq, b.dq));
  REQUIRE_CLOSE(testing::bit_equal(a.dk, b.dk));
  REQUIRE_CLOSE(testing::bit_equal(a.dv, b.dv));
}

TEST_CASE("cuda combiner: unsupported head dims, mixed devices and shapes are clear errors", "[cuda][combiner]") {
  const CombinerLayout layout{CombinerVariant::fixed, 0, false};
  const Tensor q = randn({1, 1, 4, 129}).to(kCuda);
  CHECK_THROWS_WITH(combiner_attention(q, q, q, layout), Contains("head dim d = 129 is not supported on CUDA"));
  const Tensor q8 = randn({2, 1, 4, 8}).to(kCuda);
  CHECK_THROWS_WITH(
      combiner_attention(q8, q8, q8, layout, from_vector<int32_t>({4, 4}, {2}, TensorOptions(DType::i32))),
      Contains("lengths is on"));
  CHECK_THROWS_WITH(combiner_attention(q8, randn({2, 1, 5, 8}).to(kCuda), q8, layout), Contains("must have one shape"));
}
