// What the table-driven mixer tests (tests/cpu/test_mixers.cpp, tests/cuda/test_cuda_mixers.cpp) share: the one
// context every registered mixer is built in, the padded batch it is fed, and a tiny classifier around a mixer.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "models/vit.h"
#include "nn/layers.h"
#include "nn/mixer.h"

namespace mixgrad::testing {

// D 8, inner (mixing) width 12, 2 heads, N 8 tokens that also form a 2×4 patch grid (no class token), layer 1 of 2, dropout 0.1 in training,
// every option at its default.
nn::MixerContext mixer_test_context(const std::string& mixer);
constexpr int64_t kMixerTestBatch = 3, kMixerTestTokens = 8, kMixerTestDim = 8;
// Valid lengths of the padded test batch: {8, 5, 3} (a full sample, and two whose lengths are not multiples of 2).
Tensor mixer_test_lengths(Device device = kCPU);

// mixer -> masked mean over the valid tokens -> Linear(D, classes): a model small enough to overfit any batch.
class MixerProbe : public nn::Module {
 public:
  MixerProbe(const std::string& mixer, int64_t classes);
  Tensor forward(const Tensor& x, const Tensor& lengths);
  std::shared_ptr<nn::TokenMixer> mixer;
  std::shared_ptr<nn::Linear> head;
};

// The tiny ViT every mixer is trained in: img 12, patch 4 -> 9 patches + class token = 10 tokens (token pooling), or
// img 8 -> 4 patches with mean pooling; D 16, 2 heads, 1 block, 10 classes.
models::ViTConfig tiny_vit_with(const std::string& mixer, const std::string& pool);

}  // namespace mixgrad::testing
