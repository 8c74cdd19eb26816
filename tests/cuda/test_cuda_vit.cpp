// CPU vs CUDA for the ViT stack: scaled_dot_product_attention forward/backward (masks, causal, dropout), one ViT
// training step (loss and every parameter gradient), and overfitting one batch on the device.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/attention.h"
#include "engine/mixgrad.h"
#include "models/vit.h"
#include "tests/common/check.h"
#include "tests/common/vit_helpers.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

const Device kCuda{DeviceType::cuda, 0};

Tensor leaf(const Tensor& t) {
  Tensor l = t.detach();
  l.requires_grad_();
  return l;
}

using testing::u8_mask;

}  // namespace

TEST_CASE("cuda: sdpa forward and backward match the CPU", "[cuda][vit][attention]") {
  struct Case {
    int64_t b, h, t, tk, d;
    bool mask, causal;
    double dropout;
  };
  const std::vector<Case> cases = {{2, 3, 5, 7, 4, false, false, 0.0},
                                   {1, 2, 33, 17, 16, true, false, 0.0},
                                   {2, 2, 9, 9, 8, true, true, 0.0},
                                   {2, 1, 7, 4, 5, false, true, 0.0},
                                   {2, 4, 16, 16, 32, true, false, 0.3}};
  for (const Case& c : cases) {
    INFO("B" << c.b << " H" << c.h << " T" << c.t << " Tk" << c.tk << " d" << c.d << " mask " << c.mask << " causal "
             << c.causal << " dropout " << c.dropout);
    manual_seed(40);
    Tensor q = leaf(randn({c.b, c.h, c.t, c.d})), k = leaf(randn({c.b, c.h, c.tk, c.d})),
           v = leaf(randn({c.b, c.h, c.tk, c.d}));
    Tensor gout = randn({c.b, c.h, c.t, c.d});
    Tensor mask;
    if (c.mask) {
      std::vector<int> m(size_t(c.b * c.tk), 1);
      for (int64_t j = 0; j < c.tk; j += 3) m[size_t(j)] = 0;  // batch 0: some keys padded
      for (int64_t j = 0; j < c.tk; ++j) m[size_t((c.b - 1) * c.tk + j)] = c.b > 1 ? 0 : m[size_t(j)];  // last: all
      mask = u8_mask(m, {c.b, 1, 1, c.tk});
    }
    Tensor qc = leaf(q.to(kCuda)), kc = leaf(k.to(kCuda)), vc = leaf(v.to(kCuda));
    manual_seed(77);
    Tensor out = scaled_dot_product_attention(q, k, v, mask, c.causal, c.dropout);
    sum(mul(out, gout)).backward();
    manual_seed(77);
    Tensor outc =
        scaled_dot_product_attention(qc, kc, vc, mask.defined() ? mask.to(kCuda) : Tensor(), c.causal, c.dropout);
    sum(mul(outc, gout.to(kCuda))).backward();
    REQUIRE(outc.device() == kCuda);
    REQUIRE_CLOSE(testing::all_close(outc, out, tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(testing::all_close(qc.grad(), q.grad(), tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(testing::all_close(kc.grad(), k.grad(), tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(testing::all_close(vc.grad(), v.grad(), tolerance(Compare::cpu_vs_cuda)));
  }
}

TEST_CASE("cuda: one ViT training step gives the CPU's loss and gradients", "[cuda][vit]") {
  for (const std::string pool : {"token", "avg"}) {
    INFO("pool " << pool);
    models::ViTConfig cfg = testing::tiny_vit_config();
    cfg.pool = pool;
    cfg.csp_layout = pool == "avg";
    cfg.drop_rate = 0.1;
    cfg.attn_drop_rate = 0.1;
    const testing::TwoDeviceStep st = testing::one_training_step_on_both(cfg, 41, 42, kCuda);
    const Tensor &loss = st.loss_cpu, &loss_c = st.loss_dev;
    REQUIRE_CLOSE(testing::all_close(loss_c, loss, tolerance(Compare::cpu_vs_cuda)));
    testing::require_same_gradients(st, kCuda);
  }
}

TEST_CASE("cuda: tiny ViT overfits one batch", "[cuda][vit]") {
  manual_seed(43);
  models::VisionTransformer m(testing::tiny_vit_config());
  m.to(kCuda);
  Tensor images = randn({8, 3, 8, 8}).to(kCuda);
  Tensor labels = from_vector<int64_t>({0, 1, 2, 3, 4, 5, 6, 7}, {8}).to(kCuda);
  const testing::OverfitRun run = testing::overfit_one_batch(m, images, labels);
  const double loss = run.loss;
  const int steps = run.steps;
  INFO("loss " << loss << " after " << steps << " steps");
  REQUIRE(loss < 0.05);
}
