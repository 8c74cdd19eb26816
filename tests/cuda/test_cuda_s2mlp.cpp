// S2-MLPv2 on CUDA against the CPU reference (specs/mixers.md §6 items 1–2), table-driven: the spatial shifts
// (C ∈ {4, 7, 10, 64}, H/W ∈ {1, 2, 5}, forward bit for bit, backward), and the split-attention ops and the whole
// split attention (a, ā, out and the gradients of z, W1, W2) over grids with and without a class token, padded
// lengths, channel counts off the 32-channel tile and a long sequence. Failures name the case and the worst element.
#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "engine/s2mlp.h"
#include "tests/common/check.h"

using namespace mixgrad;
using Catch::Contains;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

const Device kCuda{DeviceType::cuda, 0};

using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs, const Tensor& lengths)>;

// Runs fn on float32 copies of `inputs` on the CPU and on CUDA, then the gradient of Σ_i sum(out_i · w_i) (fixed
// random w_i), and compares every output and every input's gradient.
void compare_devices(const Fn& fn, const std::vector<Tensor>& inputs, const std::vector<int32_t>& lengths) {
  const Tensor len = lengths.empty() ? Tensor() : from_vector<int32_t>(lengths, {int64_t(lengths.size())});
  std::vector<Tensor> xc, xg;
  for (const Tensor& t : inputs) {
    xc.push_back(t.detach().clone().requires_grad_());
    xg.push_back(t.detach().to(kCuda).requires_grad_());
  }
  const std::vector<Tensor> yc = fn(xc, len), yg = fn(xg, len.defined() ? len.to(kCuda) : Tensor());
  REQUIRE(yc.size() == yg.size());
  Tensor lc, lg;
  for (size_t i = 0; i < yc.size(); ++i) {
    INFO("output " << i);
    REQUIRE(yg[i].device() == kCuda);
    REQUIRE_CLOSE(testing::all_close(yg[i], yc[i], tolerance(Compare::cpu_vs_cuda)));
    const Tensor w = randn(yc[i].shape());
    const Tensor tc = sum(mul(yc[i], w)), tg = sum(mul(yg[i], w.to(kCuda)));
    lc = lc.defined() ? add(lc, tc) : tc;
    lg = lg.defined() ? add(lg, tg) : tg;
  }
  lc.backward();
  lg.backward();
  for (size_t i = 0; i < inputs.size(); ++i) {
    INFO("gradient of input " << i);
    REQUIRE(xg[i].grad().defined());
    REQUIRE_CLOSE(testing::all_close(xg[i].grad(), xc[i].grad(), tolerance(Compare::cpu_vs_cuda)));
  }
}

struct TokenCase {
  const char* name;
  int64_t B, N, C, H, W;
  bool cls;
  std::vector<int32_t> lengths;  // empty: full
};

const std::vector<TokenCase> kTokenCases = {
    {"2x4, lengths 8/5/3", 3, 8, 12, 2, 4, false, {8, 5, 3}},
    {"3x3 + class token", 2, 10, 7, 3, 3, true, {}},
    {"3x3 + class token, lengths 10/6/1", 3, 10, 16, 3, 3, true, {10, 6, 1}},
    {"5x2, N 7 < grid", 2, 7, 4, 5, 2, false, {7, 4}},
    {"1x5 and C 1", 2, 5, 1, 1, 5, false, {}},
    {"7x7 + class token, C 70 (tile tail)", 4, 50, 70, 7, 7, true, {50, 33, 17, 2}},
    {"8x8, C 192, B 16", 16, 64, 192, 8, 8, false, {}},
    {"32x32 + class token, C 40 (long)", 2, 1025, 40, 32, 32, true, {1025, 600}},
};

}  // namespace

TEST_CASE("cuda: spatial_shift1/2 equal the CPU, forward bit for bit and backward", "[cuda][s2mlp]") {
  for (int64_t C : {4, 7, 10, 64})
    for (int64_t H : {1, 2, 5})
      for (int64_t W : {1, 2, 5})
        for (int variant : {1, 2}) {
          INFO("C " << C << ", H " << H << ", W " << W << ", shift" << variant);
          manual_seed(uint64_t(C * 100 + H * 10 + W + variant));
          const Tensor x = randn({3, H, W, C});
          REQUIRE_CLOSE(testing::bit_equal(spatial_shift(x.to(kCuda), variant), spatial_shift(x, variant)));
          compare_devices([variant](const std::vector<Tensor>& in,
                                    const Tensor&) { return std::vector<Tensor>{spatial_shift(in[0], variant)}; },
                          {x}, {});
        }
}

TEST_CASE("cuda: s2_branch_sum and s2_split_combine equal the CPU, forward and backward", "[cuda][s2mlp]") {
  uint64_t seed = 700;
  for (const TokenCase& tc : kTokenCases) {
    INFO(tc.name);
    manual_seed(seed++);
    const S2Grid grid{tc.H, tc.W, tc.cls};
    const Tensor z = randn({tc.B, tc.N, 3 * tc.C}), abar = softmax(randn({tc.B, 3, tc.C}), 1);
    compare_devices([&](const std::vector<Tensor>& in,
                        const Tensor& len) { return std::vector<Tensor>{s2_branch_sum(in[0], grid, len)}; },
                    {z}, tc.lengths);
    compare_devices([&](const std::vector<Tensor>& in,
                        const Tensor& len) { return std::vector<Tensor>{s2_split_combine(in[0], in[1], grid, len)}; },
                    {z, abar}, tc.lengths);
  }
}

TEST_CASE("cuda: the whole split attention equals the CPU (a, abar, out; gradients of z, W1, W2)", "[cuda][s2mlp]") {
  uint64_t seed = 800;
  for (const TokenCase& tc : kTokenCases) {
    INFO(tc.name);
    manual_seed(seed++);
    const S2Grid grid{tc.H, tc.W, tc.cls};
    const Tensor z = mul_scalar(randn({tc.B, tc.N, 3 * tc.C}), 0.1);
    const Tensor w1 = mul_scalar(randn({tc.C, tc.C}), 0.2), w2 = mul_scalar(randn({3 * tc.C, tc.C}), 0.2);
    compare_devices(
        [&](const std::vector<Tensor>& in, const Tensor& len) {
          const S2SplitAttention r = s2_split_attention(in[0], in[1], in[2], grid, len);
          return std::vector<Tensor>{r.a, r.abar, r.out};
        },
        {z, w1, w2}, tc.lengths);
  }
}

TEST_CASE("cuda: the split attention is deterministic (two runs bitwise identical, forward and backward)",
          "[cuda][s2mlp]") {
  const TokenCase& tc = kTokenCases[7];  // the long sequence: many token rows per reduction thread
  manual_seed(900);
  const S2Grid grid{tc.H, tc.W, tc.cls};
  const Tensor z = mul_scalar(randn({tc.B, tc.N, 3 * tc.C}), 0.1).to(kCuda);
  const Tensor w1 = mul_scalar(randn({tc.C, tc.C}), 0.2).to(kCuda),
               w2 = mul_scalar(randn({3 * tc.C, tc.C}), 0.2).to(kCuda);
  const Tensor len = from_vector<int32_t>(tc.lengths, {tc.B}).to(kCuda), dout = randn({tc.B, tc.N, tc.C}).to(kCuda);
  std::vector<Tensor> first;
  for (int run = 0; run < 2; ++run) {
    INFO("run " << run);
    Tensor zr = z.detach().clone().requires_grad_(), w1r = w1.detach().clone().requires_grad_();
    Tensor w2r = w2.detach().clone().requires_grad_();
    const S2SplitAttention r = s2_split_attention(zr, w1r, w2r, grid, len);
    sum(mul(r.out, dout)).backward();
    const std::vector<Tensor> got = {r.a.detach(), r.abar.detach(), r.out.detach(), zr.grad(), w1r.grad(), w2r.grad()};
    if (run == 0) first = got;
    for (size_t i = 0; i < got.size() && run == 1; ++i) {
      INFO("tensor " << i);
      REQUIRE_CLOSE(testing::bit_equal(got[i], first[i]));
    }
  }
}

TEST_CASE("cuda: S2-MLPv2 ops reject float64 and lengths on another device", "[cuda][s2mlp]") {
  const Tensor x = zeros({2, 3, 3, 4}, TensorOptions(DType::f64, kCuda));  // storage only: kernels are float32
  CHECK_THROWS_WITH(spatial_shift1(x), Contains("spatial_shift1"));
  const Tensor z = randn({2, 8, 6}, TensorOptions(DType::f32, kCuda));
  CHECK_THROWS_WITH(s2_branch_sum(z, S2Grid{2, 4, false}, from_vector<int32_t>({8, 5}, {2})),
                    Contains("s2_branch_sum") && Contains("lengths is on"));
}
