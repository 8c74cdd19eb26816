// Key padding as lengths on CUDA against the CPU: sequence masks, shifted lengths, masked mean and zeroed padding
// (values and gradients), all computed from lengths that stay on the device.
#include <catch2/catch.hpp>
#include <vector>

#include "engine/mixgrad.h"
#include "engine/sequence.h"
#include "tests/common/check.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {
const Device kCuda{DeviceType::cuda, 0};
}  // namespace

TEST_CASE("cuda: sequence_mask and add_to_lengths equal the CPU's", "[cuda][sequence]") {
  // 1,000 samples: more than one block of the kernels; lengths 0..N and past N.
  std::vector<int32_t> n(1000);
  for (size_t i = 0; i < n.size(); ++i) n[i] = int32_t((i * 7) % 40);
  const Tensor len = from_vector<int32_t>(n, {1000});
  for (const DType dt : {DType::u8, DType::f32}) {
    INFO("dtype " << dtype_name(dt));
    REQUIRE_CLOSE(testing::bit_equal(sequence_mask(len.to(kCuda), 33, dt).to(kCPU), sequence_mask(len, 33, dt)));
  }
  REQUIRE_CLOSE(testing::bit_equal(add_to_lengths(len.to(kCuda), 1).to(kCPU), add_to_lengths(len, 1)));
}

TEST_CASE("cuda: masked_mean and zero_padding match the CPU, forward and backward", "[cuda][sequence]") {
  const Tensor len = from_vector<int32_t>({17, 1, 0, 9}, {4});
  const Tensor x0 = randn({4, 17, 33}), g = randn({4, 33}), gz = randn({4, 17, 33});
  Tensor x = x0.detach().clone(), xc = x0.to(kCuda);
  x.requires_grad_();
  xc.requires_grad_();
  const Tensor y = masked_mean(x, len), yc = masked_mean(xc, len.to(kCuda));
  const Tensor z = zero_padding(x, len), zc = zero_padding(xc, len.to(kCuda));
  (sum(mul(y, g)) + sum(mul(z, gz))).backward();
  (sum(mul(yc, g.to(kCuda))) + sum(mul(zc, gz.to(kCuda)))).backward();
  REQUIRE_CLOSE(testing::all_close(yc, y, tolerance(Compare::cpu_vs_cuda)));
  REQUIRE_CLOSE(testing::all_close(zc, z, tolerance(Compare::cpu_vs_cuda)));
  REQUIRE_CLOSE(testing::all_close(xc.grad(), x.grad(), tolerance(Compare::cpu_vs_cuda)));
}
