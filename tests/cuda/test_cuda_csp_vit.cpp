// The CSP mixer on CUDA against the CPU with options the table-driven test (test_cuda_mixers.cpp) does not reach:
// K = 4, the exponential schedule and padded lengths.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "nn/mixers/csp_mixer.h"
#include "tests/common/check.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {
const Device kCuda{DeviceType::cuda, 0};
}  // namespace

TEST_CASE("cuda: csp mixer, K = 4, exponential schedule, padded lengths: matches the CPU forward and backward",
          "[cuda][csp-vit]") {
  nn::MixerContext ctx;
  ctx.dim = 12;
  ctx.seq_len = 16;
  ctx.layer_index = 1;
  ctx.num_layers = 2;
  ctx.options = nn::resolve_mixer_options("csp", {{"csp_k", "4"}, {"csp_schedule", "exponential"}});
  manual_seed(143);
  nn::CspMixer cpu(ctx);
  nn::CspMixer gpu(ctx);
  gpu.load_state_dict(cpu.state_dict());
  gpu.to(kCuda);
  Tensor x = randn({3, 16, 12});
  x.requires_grad_();
  Tensor xc = x.detach().to(kCuda);
  xc.requires_grad_();
  const Tensor lengths = from_vector<int32_t>({16, 11, 1}, {3});  // full, 11 valid tokens, 1 valid token
  Tensor g = randn({3, 16, 12});
  Tensor y = cpu.forward(x, lengths);
  sum(mul(y, g)).backward();
  Tensor yc = gpu.forward(xc, lengths.to(kCuda));
  sum(mul(yc, g.to(kCuda))).backward();
  REQUIRE_CLOSE(testing::all_close(yc, y, tolerance(Compare::cpu_vs_cuda)));
  REQUIRE_CLOSE(testing::all_close(xc.grad(), x.grad(), tolerance(Compare::cpu_vs_cuda)));
  REQUIRE_CLOSE(testing::all_close(gpu.v->weight.grad(), cpu.v->weight.grad(), tolerance(Compare::cpu_vs_cuda)));
}
