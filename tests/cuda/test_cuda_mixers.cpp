// Every registered token mixer on CUDA against the CPU, by one table: the mixer alone with padded lengths (forward,
// input and parameter gradients, dropout on), one training step of a tiny ViT (loss and every gradient), and
// overfitting one batch on the device. A newly registered mixer is tested here without a line added.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "models/vit.h"
#include "nn/mixer.h"
#include "tests/common/check.h"
#include "tests/common/mixer_harness.h"
#include "tests/common/vit_helpers.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {
const Device kCuda{DeviceType::cuda, 0};
}  // namespace

TEST_CASE("cuda: every mixer with padded lengths matches the CPU, forward and backward", "[cuda][mixers]") {
  const Shape shape{testing::kMixerTestBatch, testing::kMixerTestTokens, testing::kMixerTestDim};
  for (const std::string& name : nn::mixer_names()) {
    INFO("mixer " << name);
    manual_seed(600);
    auto cpu = nn::make_mixer(name, testing::mixer_test_context(name));
    manual_seed(601);
    auto gpu = nn::make_mixer(name, testing::mixer_test_context(name));
    gpu->load_state_dict(cpu->state_dict());
    gpu->to(kCuda);
    Tensor x = randn(shape);
    x.requires_grad_();
    Tensor xc = x.detach().to(kCuda);
    xc.requires_grad_();
    const Tensor g = randn(shape);
    manual_seed(602);  // the same dropout masks on both devices (Philox)
    sum(mul(cpu->forward(x, testing::mixer_test_lengths()), g)).backward();
    manual_seed(602);
    const Tensor yc = gpu->forward(xc, testing::mixer_test_lengths(kCuda));
    REQUIRE(yc.device() == kCuda);
    sum(mul(yc, g.to(kCuda))).backward();
    manual_seed(602);
    NoGradGuard ng;
    REQUIRE_CLOSE(testing::all_close(yc, cpu->forward(x.detach(), testing::mixer_test_lengths()),
                                     tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(testing::all_close(xc.grad(), x.grad(), tolerance(Compare::cpu_vs_cuda)));
    const auto pc = cpu->named_parameters(), pg = gpu->named_parameters();
    REQUIRE(pc.size() == pg.size());
    for (size_t i = 0; i < pc.size(); ++i) {
      INFO("parameter " << pc[i].first);
      REQUIRE_CLOSE(testing::all_close(pg[i].second.grad(), pc[i].second.grad(), tolerance(Compare::cpu_vs_cuda)));
    }
  }
}

TEST_CASE("cuda: every mixer's tiny ViT: one training step gives the CPU's loss and gradients", "[cuda][mixers]") {
  for (const std::string& name : nn::mixer_names())
    for (const std::string pool : {"token", "avg"}) {
      INFO("mixer " << name << ", pool " << pool);
      models::ViTConfig cfg = testing::tiny_vit_with(name, pool);
      cfg.drop_rate = 0.1;
      cfg.attn_drop_rate = 0.1;
      const testing::TwoDeviceStep st = testing::one_training_step_on_both(cfg, 41, 42, kCuda);
      REQUIRE(st.loss_dev.device() == kCuda);
      REQUIRE_CLOSE(testing::all_close(st.loss_dev, st.loss_cpu, tolerance(Compare::cpu_vs_cuda)));
      testing::require_same_gradients(st, kCuda);
    }
}

TEST_CASE("cuda: every mixer's tiny ViT overfits one batch on the device", "[cuda][mixers]") {
  for (const std::string& name : nn::mixer_names()) {
    INFO("mixer " << name);
    manual_seed(43);
    models::VisionTransformer m(testing::tiny_vit_with(name, "avg"));
    m.to(kCuda);
    testing::require_overfits_one_batch(m, kCuda);
  }
}
