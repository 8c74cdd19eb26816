#include "tests/common/vit_helpers.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <random>

#include "nn/optim/optimizer.h"
#include "tests/common/check.h"

namespace mixgrad::testing {

models::ViTConfig tiny_vit_config() {
  models::ViTConfig c;
  c.img_size = 8;
  c.in_chans = 3;
  c.patch_size = 4;
  c.embed_dim = 16;
  c.depth = 1;
  c.num_heads = 2;
  c.mlp_hidden = 32;
  c.num_classes = 10;
  return c;
}

std::vector<double> host_values(const Tensor& t) { return t.detach().to(kCPU).to(DType::f64).to_vector<double>(); }

Tensor find_param(const nn::Module& m, const std::string& name) {
  for (const auto& [n, t] : m.state_dict())
    if (n == name) return t;
  return Tensor();
}

Tensor u8_mask(const std::vector<int>& v, const Shape& shape) {
  Tensor m = empty(shape, TensorOptions(DType::u8));
  for (size_t i = 0; i < v.size(); ++i) m.data<uint8_t>()[i] = uint8_t(v[i]);
  return m;
}

OverfitRun overfit_one_batch(models::VisionTransformer& m, const Tensor& images, const Tensor& labels,
                             const std::function<void()>& after_first_backward) {
  nn::AdamW opt(m.parameters(), AdamWHyper{3e-3, 0.9, 0.999, 1e-8, 0.0});
  OverfitRun r;
  for (; r.steps < 300 && r.loss >= 0.05; ++r.steps) {
    opt.zero_grad();
    Tensor l = cross_entropy(m.forward(images), labels);
    l.backward();
    if (r.steps == 0) {
      r.first_loss = l.item();
      if (after_first_backward) after_first_backward();
    }
    opt.step();
    r.loss = l.item();
  }
  return r;
}

void require_overfits_one_batch(models::VisionTransformer& m, Device dev) {
  const models::ViTConfig& c = m.config();
  Tensor images = randn({8, c.in_chans, c.img_size, c.img_size}).to(dev);
  Tensor labels = from_vector<int64_t>({0, 1, 2, 3, 4, 5, 6, 7}, {8}).to(dev);
  const OverfitRun run = overfit_one_batch(m, images, labels, [&] {
    for (const auto& [n, t] : m.named_parameters()) {
      INFO("parameter " << n);
      REQUIRE(t.grad().defined());
      REQUIRE(t.grad().shape() == t.shape());
    }
  });
  INFO("initial loss " << run.first_loss << ", loss " << run.loss << " after " << run.steps << " steps");
  CHECK(run.first_loss > 1.5);
  REQUIRE(run.loss < 0.05);
  REQUIRE(autograd::tape_size() == 0);
}

void require_same_gradients(const TwoDeviceStep& st, Device dev) {
  const auto pc = st.cpu->named_parameters(), pg = st.dev->named_parameters();
  REQUIRE(pc.size() == pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    INFO("gradient of " << pc[i].first);
    REQUIRE(pg[i].first == pc[i].first);
    REQUIRE(pg[i].second.device() == dev);
    // The CSP layout keeps the reference repository's unused cls_token (avg pooling): no gradient on either device.
    const bool unused = pc[i].first == "cls_token" && st.cpu->config().csp_layout;
    REQUIRE(pc[i].second.grad().defined() == !unused);
    REQUIRE(pg[i].second.grad().defined() == !unused);
    if (unused) continue;
    REQUIRE_CLOSE(all_close(pg[i].second.grad(), pc[i].second.grad(), tolerance(Compare::cpu_vs_cuda)));
  }
}

void train_a_few_steps(models::VisionTransformer& m, const Tensor& images) {
  nn::AdamW opt(m.parameters(), AdamWHyper{1e-2});
  for (int i = 0; i < 3; ++i) {
    opt.zero_grad();
    cross_entropy(m.forward(images), from_vector<int64_t>({1, 2, 3, 4}, {4})).backward();
    opt.step();
  }
}

ReloadedCheckpoint checkpoint_round_trip(const models::VisionTransformer& m, const models::ViTConfig& cfg,
                                         const std::string& stem, uint64_t init_seed) {
  const auto path =
      std::filesystem::temp_directory_path() / fmt::format("{}_{}.safetensors", stem, std::random_device{}());
  nn::save_state_dict(m, path, cfg.to_metadata());
  ReloadedCheckpoint r;
  r.loaded = nn::load_tensors(path, &r.meta);
  manual_seed(init_seed);
  r.model = std::make_unique<models::VisionTransformer>(models::ViTConfig::from_metadata(r.meta));
  nn::load_state_dict(*r.model, path);
  std::filesystem::remove(path);
  return r;
}

TwoDeviceStep one_training_step_on_both(const models::ViTConfig& cfg, uint64_t cpu_seed, uint64_t dev_seed,
                                        const Device& dev) {
  TwoDeviceStep s;
  manual_seed(cpu_seed);
  s.cpu = std::make_unique<models::VisionTransformer>(cfg);
  manual_seed(dev_seed);  // different init, then the same weights through load_state_dict
  s.dev = std::make_unique<models::VisionTransformer>(cfg);
  s.dev->load_state_dict(s.cpu->state_dict());
  s.dev->to(dev);
  Tensor images = randn({4, cfg.in_chans, cfg.img_size, cfg.img_size});
  Tensor labels = from_vector<int64_t>({3, 1, 4, 1}, {4});
  manual_seed(5);  // the same dropout masks on both devices (Philox)
  s.loss_cpu = cross_entropy(s.cpu->forward(images), labels);
  s.loss_cpu.backward();
  manual_seed(5);
  s.loss_dev = cross_entropy(s.dev->forward(images.to(dev)), labels.to(dev));
  s.loss_dev.backward();
  return s;
}

}  // namespace mixgrad::testing
