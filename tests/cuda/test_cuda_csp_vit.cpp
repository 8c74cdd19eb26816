// CSP-ViT on CUDA against the CPU: one training step (loss and every parameter gradient, masked mixer included) and
// overfitting one batch on the device.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "models/vit.h"
#include "nn/mixers/csp_mixer.h"
#include "tests/common/check.h"
#include "tests/common/vit_helpers.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

const Device kCuda{DeviceType::cuda, 0};

// The CPU suite's tiny CSP-ViT, one block deeper: img 8, patch 4 -> 4 patches, mean pooling, D 16, depth 2.
models::ViTConfig tiny_csp_config() { return testing::tiny_csp_vit_config(2); }

}  // namespace

TEST_CASE("cuda: one CSP-ViT training step gives the CPU's loss and gradients", "[cuda][csp-vit]") {
  struct Case {
    std::string pool, k;
    int64_t img;
  };
  // avg: 4 patches with K = 2, 16 patches with K = 4; token: 9 patches + class token = 10 tokens with K = 2.
  for (const Case& cs : std::vector<Case>{{"avg", "2", 8}, {"avg", "4", 16}, {"token", "2", 12}}) {
    INFO("pool " << cs.pool << " K " << cs.k << " img " << cs.img);
    models::ViTConfig cfg = tiny_csp_config();
    cfg.pool = cs.pool;
    cfg.img_size = cs.img;
    cfg.csp_layout = cs.pool == "avg";
    cfg.drop_rate = 0.1;
    cfg.mixer_options["csp_k"] = cs.k;
    const testing::TwoDeviceStep st = testing::one_training_step_on_both(cfg, 141, 142, kCuda);
    const Tensor &loss = st.loss_cpu, &loss_c = st.loss_dev;
    REQUIRE(loss_c.device() == kCuda);
    REQUIRE_CLOSE(testing::all_close(loss_c, loss, tolerance(Compare::cpu_vs_cuda)));
    testing::require_same_gradients(st, kCuda);
  }
}

TEST_CASE("cuda: csp mixer with a padding mask matches the CPU, forward and backward", "[cuda][csp-vit]") {
  nn::MixerContext ctx;
  ctx.dim = 12;
  ctx.seq_len = 16;
  ctx.options = {{"csp_k", "4"}, {"csp_schedule", "exponential"}, {"csp_layer", "1"}, {"csp_num_layers", "2"}};
  manual_seed(143);
  nn::CspMixer cpu(ctx);
  nn::CspMixer gpu(ctx);
  gpu.load_state_dict(cpu.state_dict());
  gpu.to(kCuda);
  Tensor x = randn({3, 16, 12});
  x.requires_grad_();
  Tensor xc = x.detach().to(kCuda);
  xc.requires_grad_();
  Tensor mask = ones({3, 16}, TensorOptions(DType::u8));
  for (int64_t j = 11; j < 16; ++j) mask.data<uint8_t>()[16 + j] = 0;  // sample 1: 11 valid tokens
  mask.data<uint8_t>()[2 * 16 + 1] = 0;                                 // sample 2: 1 valid token
  for (int64_t j = 2; j < 16; ++j) mask.data<uint8_t>()[2 * 16 + j] = 0;
  Tensor g = randn({3, 16, 12});
  Tensor y = cpu.forward(x, mask);
  sum(mul(y, g)).backward();
  Tensor yc = gpu.forward(xc, mask.to(kCuda));
  sum(mul(yc, g.to(kCuda))).backward();
  REQUIRE_CLOSE(testing::all_close(yc, y, tolerance(Compare::cpu_vs_cuda)));
  REQUIRE_CLOSE(testing::all_close(xc.grad(), x.grad(), tolerance(Compare::cpu_vs_cuda)));
  REQUIRE_CLOSE(testing::all_close(gpu.v->weight.grad(), cpu.v->weight.grad(), tolerance(Compare::cpu_vs_cuda)));
}

TEST_CASE("cuda: tiny CSP-ViT overfits one batch", "[cuda][csp-vit]") {
  manual_seed(144);
  models::ViTConfig cfg = tiny_csp_config();
  cfg.depth = 1;
  models::VisionTransformer m(cfg);
  m.to(kCuda);
  Tensor images = randn({8, 3, 8, 8}).to(kCuda);
  Tensor labels = from_vector<int64_t>({0, 1, 2, 3, 4, 5, 6, 7}, {8}).to(kCuda);
  const testing::OverfitRun run = testing::overfit_one_batch(m, images, labels);
  const double loss = run.loss;
  const int steps = run.steps;
  INFO("loss " << loss << " after " << steps << " steps");
  REQUIRE(loss < 0.05);
}
