// Shared by the CPU and CUDA ViT / CSP-ViT suites: the tiny model configs, state-dict lookup, host copies of tensor
// values, padding masks, the overfit-one-batch loop, checkpoint round trips through safetensors, and one training
// step of the same model on the CPU and on a device.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "models/vit.h"
#include "nn/serialize.h"

namespace mixgrad::testing {

// img 8, patch 4 -> 4 patches, 3 channels, D 16, depth 1, 2 heads, MLP 32, 10 classes, token pooling.
models::ViTConfig tiny_vit_config();

// The tensor's values (detached, on the CPU) as doubles.
std::vector<double> host_values(const Tensor& t);

// The state-dict entry `name` of m, or an undefined tensor.
Tensor find_param(const nn::Module& m, const std::string& name);

// CPU uint8 tensor of `shape` holding v.
Tensor u8_mask(const std::vector<int>& v, const Shape& shape);

struct OverfitRun {
  double first_loss = 0;  // loss of step 0
  double loss = 1e9;      // loss of the last step
  int steps = 0;
};
// AdamW(3e-3, betas 0.9/0.999, eps 1e-8, no weight decay) on cross-entropy over one batch until the loss is below
// 0.05 or 300 steps; after_first_backward runs once, after step 0's backward and before its update.
OverfitRun overfit_one_batch(models::VisionTransformer& m, const Tensor& images, const Tensor& labels,
                             const std::function<void()>& after_first_backward = {});

// The tiny presets' overfitting check on `dev`: randn images [8, C, H, W] (the model's) with labels 0..7, every parameter has a
// gradient of its own shape after the first backward, the first loss is above 1.5, the final one below 0.05 and
// the tape is empty afterwards (Catch assertions).
void require_overfits_one_batch(models::VisionTransformer& m, Device dev);

// Three AdamW(1e-2) steps on `images` with labels {1, 2, 3, 4}, so the weights differ from a fresh init.
void train_a_few_steps(models::VisionTransformer& m, const Tensor& images);

struct ReloadedCheckpoint {
  nn::Metadata meta;        // as read back
  nn::NamedTensors loaded;  // every tensor in the file
  std::unique_ptr<models::VisionTransformer> model;  // built from meta after manual_seed(init_seed), then loaded
};
// Saves m with cfg's metadata to a fresh <temp>/<stem>_<random>.safetensors, reads it back and removes it.
ReloadedCheckpoint checkpoint_round_trip(const models::VisionTransformer& m, const models::ViTConfig& cfg,
                                         const std::string& stem, uint64_t init_seed);

struct TwoDeviceStep {
  std::unique_ptr<models::VisionTransformer> cpu, dev;
  Tensor loss_cpu, loss_dev;
};
// One forward and backward of cfg on the CPU and on `dev` from the same weights (cpu built after
// manual_seed(cpu_seed), dev after manual_seed(dev_seed) and then given cpu's state dict) and the same dropout
// masks (manual_seed(5) before each), on randn images [4, C, H, W] with labels {3, 1, 4, 1}.
// Catch assertions: st.dev's parameters match st.cpu's by name, live on `dev`, and every gradient is defined and
// within the cpu_vs_cuda tolerance of the CPU one.
void require_same_gradients(const TwoDeviceStep& st, Device dev);
TwoDeviceStep one_training_step_on_both(const models::ViTConfig& cfg, uint64_t cpu_seed, uint64_t dev_seed,
                                        const Device& dev);

}  // namespace mixgrad::testing
