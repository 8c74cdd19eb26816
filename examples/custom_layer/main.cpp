// examples/custom_layer: mixgrad used from another project through its installed CMake package. It defines an op
// with the custom-op API (token_shift.cpp), checks its gradient with mixgrad's gradcheck, registers it as a token
// mixer at run time, and trains a small ViT with that mixer on synthetic images. Exits 0 only when every check passes
// and the training loss falls. README "Extend mixgrad" walks through it.
#include <cstdio>
#include <exception>
#include <memory>
#include <random>
#include <vector>

#include "engine/mixgrad.h"
#include "models/vit.h"
#include "nn/mixer.h"
#include "nn/optim/optimizer.h"
#include "token_shift.h"
#include "token_shift_mixer.h"

namespace {

using namespace mixgrad;

// 1. The op's analytic gradient against central finite differences, in float64, for x and both gates.
bool check_op_gradient() {
  const std::vector<Tensor> inputs = {rand_f64({2, 5, 3}), rand_f64({3}), rand_f64({3})};
  const CloseResult r =
      gradcheck([](const std::vector<Tensor>& in) { return custom_layer::token_shift(in[0], in[1], in[2]); }, inputs);
  std::printf("gradcheck token_shift: %s\n", r.message.c_str());
  return r.ok;
}

// 2. Registration: the mixer joins the registry; a second registration of the name is refused.
bool register_token_shift() {
  nn::register_mixer(custom_layer::token_shift_mixer_info());
  try {
    nn::register_mixer(custom_layer::token_shift_mixer_info());
    std::printf("register_mixer accepted a duplicate name\n");
    return false;
  } catch (const Error& e) {
    std::printf("registered token_shift; a second registration is refused: %s\n", e.what());
  }
  return nn::mixer_info("token_shift").name == "token_shift";
}

// 3. The whole mixer built from the registry (float64), gradient with respect to its input, with padding.
bool check_mixer_gradient() {
  nn::MixerContext ctx;
  ctx.dim = 4;
  ctx.options = nn::resolve_mixer_options("token_shift", {{"shift_steps", "3"}});
  std::shared_ptr<nn::TokenMixer> mixer = nn::make_mixer("token_shift", ctx);
  mixer->to(DType::f64);
  const Tensor lengths = from_vector<int32_t>({6, 4}, {2}, TensorOptions(DType::i32));
  const CloseResult r =
      gradcheck([&](const std::vector<Tensor>& in) { return mixer->forward(in[0], lengths); }, {rand_f64({2, 6, 4})});
  std::printf("gradcheck token_shift mixer (3 steps, lengths 6 and 4): %s\n", r.message.c_str());
  return r.ok;
}

// Images [B, 1, 8, 8] of `classes` noisy fixed templates, labels int64 [B].
struct Batch {
  Tensor images, labels;
};
class SyntheticImages {
 public:
  SyntheticImages(int64_t classes, uint64_t seed) : classes_(classes), rng_(seed), templates_(size_t(classes * 64)) {
    std::normal_distribution<float> n(0.f, 1.f);
    for (float& v : templates_) v = n(rng_);
  }
  Batch next(int64_t batch) {
    std::uniform_int_distribution<int64_t> label(0, classes_ - 1);
    std::normal_distribution<float> noise(0.f, 0.5f);
    std::vector<float> x(static_cast<size_t>(batch * 64));
    std::vector<int64_t> y(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
      y[size_t(b)] = label(rng_);
      for (int64_t i = 0; i < 64; ++i) x[size_t(b * 64 + i)] = templates_[size_t(y[size_t(b)] * 64 + i)] + noise(rng_);
    }
    return {from_vector(x, {batch, 1, 8, 8}), from_vector(y, {batch}, TensorOptions(DType::i64))};
  }

 private:
  int64_t classes_;
  std::mt19937_64 rng_;
  std::vector<float> templates_;
};

// 4. A small ViT whose every block mixes tokens with token_shift, trained with AdamW; true when the mean loss of the
// last five steps is below half that of the first five.
bool train_vit() {
  manual_seed(0);
  models::ViTConfig c;
  c.img_size = 8;
  c.in_chans = 1;
  c.patch_size = 2;
  c.embed_dim = 32;
  c.depth = 2;
  c.num_heads = 2;
  c.mlp_hidden = 64;
  c.num_classes = 4;
  c.pool = "avg";
  c.mixer = "token_shift";
  c.mixer_options = {{"shift_steps", "2"}};
  models::VisionTransformer model(c);
  std::printf("ViT with the token_shift mixer: %lld parameters\n", static_cast<long long>(model.num_parameters()));
  nn::AdamW opt(model.parameters(), {3e-3, 0.9, 0.999, 1e-8, 0.0});
  SyntheticImages data(c.num_classes, 1);
  constexpr int kSteps = 40;
  std::vector<double> losses;
  for (int step = 1; step <= kSteps; ++step) {
    const Batch b = data.next(32);
    Tensor loss = cross_entropy(model.forward(b.images), b.labels);
    opt.zero_grad();
    loss.backward();
    opt.step();
    losses.push_back(loss.item());
    if (step == 1 || step % 5 == 0) std::printf("step %2d  loss %.4f\n", step, losses.back());
  }
  const auto mean5 = [&](size_t from) {
    return (losses[from] + losses[from + 1] + losses[from + 2] + losses[from + 3] + losses[from + 4]) / 5;
  };
  const double first = mean5(0), last = mean5(losses.size() - 5);
  std::printf("mean loss of the first 5 steps %.4f, of the last 5 steps %.4f\n", first, last);
  return last < 0.5 * first;
}

}  // namespace

int main() {
  try {
    const bool ok = check_op_gradient() && register_token_shift() && check_mixer_gradient() && train_vit();
    std::printf("%s\n", ok ? "custom_layer: all checks passed" : "custom_layer: FAILED");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_layer: %s\n", e.what());
    return 1;
  }
}
