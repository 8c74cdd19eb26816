#include "tests/common/mixer_harness.h"

#include "engine/sequence.h"
#include "tests/common/vit_helpers.h"

namespace mixgrad::testing {

nn::MixerContext mixer_test_context(const std::string& mixer) {
  nn::MixerContext c;
  c.dim = kMixerTestDim;
  c.num_heads = 2;
  c.inner_dim = 12;  // a mixing width other than D: mixers must not assume they are equal
  c.seq_len = kMixerTestTokens;
  c.grid_h = 2, c.grid_w = 4;
  c.layer_index = 1, c.num_layers = 2;
  c.attn_drop = c.proj_drop = 0.1;
  c.options = nn::resolve_mixer_options(mixer, {});
  return c;
}

Tensor mixer_test_lengths(Device device) {
  return from_vector<int32_t>({8, 5, 3}, {kMixerTestBatch}, TensorOptions(DType::i32, device));
}

MixerProbe::MixerProbe(const std::string& name, int64_t classes) : Module("MixerProbe") {
  mixer = register_module("mixer", nn::make_mixer(name, mixer_test_context(name)));
  head = register_module("head", std::make_shared<nn::Linear>(kMixerTestDim, classes));
}

Tensor MixerProbe::forward(const Tensor& x, const Tensor& lengths) {
  return head->forward(masked_mean(mixer->forward(x, lengths), lengths));
}

models::ViTConfig tiny_vit_with(const std::string& mixer, const std::string& pool) {
  models::ViTConfig c = tiny_vit_config();
  c.mixer = mixer;
  c.pool = pool;
  c.img_size = pool == "token" ? 12 : 8;
  return c;
}

}  // namespace mixgrad::testing
