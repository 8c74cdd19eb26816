// nn on CUDA: one training step of a small model gives the CPU's loss, gradients and update; a tiny MLP overfits one
// batch; Module::to keeps parameter handles; checkpoints written from CUDA load bit-exactly on the CPU.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "nn/layers.h"
#include "nn/optim/optimizer.h"
#include "nn/serialize.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using namespace mixgrad::testing;

Device cuda_device() { return Device("cuda"); }

std::shared_ptr<nn::Sequential> make_mlp(int64_t in, int64_t hidden, int64_t out) {
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Linear>(in, hidden));
  m->push_back(nn::ReLU());
  m->push_back(std::make_shared<nn::Linear>(hidden, out));
  return m;
}

// Linear -> LayerNorm -> GELU -> Dropout -> Linear: exercises more kernels and the shared dropout stream.
std::shared_ptr<nn::Sequential> make_deeper(int64_t in, int64_t hidden, int64_t out) {
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Linear>(in, hidden));
  m->push_back(std::make_shared<nn::LayerNorm>(hidden));
  m->push_back(nn::GELU());
  m->push_back(std::make_shared<nn::Dropout>(0.2));
  m->push_back(std::make_shared<nn::Linear>(hidden, out));
  return m;
}

struct Batch {
  Tensor x, y;  // CPU
};
Batch make_batch(int64_t n, int64_t in, int64_t classes, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_int_distribution<int64_t> cls(0, classes - 1);
  std::vector<float> x(static_cast<size_t>(n * in));
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (auto& v : x) v = normal(gen);
  for (auto& v : y) v = cls(gen);
  return {from_vector<float>(x, {n, in}), from_vector<int64_t>(y, {n})};
}

void require_same_state(const nn::Module& actual, const nn::Module& expected, bool exact) {
  const nn::NamedTensors a = actual.state_dict(), e = expected.state_dict();
  REQUIRE(a.size() == e.size());
  for (size_t i = 0; i < e.size(); ++i) {
    INFO("tensor " << e[i].first);
    REQUIRE(a[i].first == e[i].first);
    REQUIRE_CLOSE(exact ? bit_equal(a[i].second, e[i].second)
                        : all_close(a[i].second, e[i].second, tolerance(Compare::cpu_vs_cuda)));
  }
}

// Runs forward + cross-entropy + backward + one AdamW step on a CPU model and on a CUDA copy of it and compares
// the loss, every gradient, and the updated parameters.
void one_step_matches(const std::shared_ptr<nn::Sequential>& cpu_model, const std::shared_ptr<nn::Sequential>& cuda_model,
                      uint64_t dropout_seed) {
  const Device cuda = cuda_device();
  cuda_model->to(cuda);
  cuda_model->load_state_dict(cpu_model->state_dict());
  require_same_state(*cuda_model, *cpu_model, /*exact=*/true);
  for (const Tensor& p : cuda_model->parameters()) REQUIRE(p.device() == cuda);

  const Batch b = make_batch(24, 13, 5, 77);
  // Each backward consumes the thread's whole tape, so the CPU step finishes before the CUDA forward starts.
  manual_seed(dropout_seed);
  const Tensor loss_cpu = cross_entropy((*cpu_model)(b.x), b.y);
  loss_cpu.backward();
  manual_seed(dropout_seed);
  const Tensor loss_cuda = cross_entropy((*cuda_model)(b.x.to(cuda)), b.y.to(cuda));
  loss_cuda.backward();
  REQUIRE(loss_cuda.device() == cuda);
  REQUIRE_CLOSE(all_close(loss_cuda, loss_cpu, tolerance(Compare::cpu_vs_cuda)));

  const nn::NamedTensors pc = cpu_model->named_parameters(), pg = cuda_model->named_parameters();
  REQUIRE(pc.size() == pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    INFO("gradient of " << pc[i].first);
    REQUIRE(pc[i].second.grad().defined());
    REQUIRE(pg[i].second.grad().defined());
    REQUIRE(pg[i].second.grad().device() == cuda);
    REQUIRE_CLOSE(all_close(pg[i].second.grad(), pc[i].second.grad(), tolerance(Compare::cpu_vs_cuda)));
  }

  AdamWHyper h;
  h.lr = 1e-2;
  nn::AdamW opt_cpu(cpu_model->parameters(), h), opt_cuda(cuda_model->parameters(), h);
  opt_cpu.step();
  opt_cuda.step();
  require_same_state(*cuda_model, *cpu_model, /*exact=*/false);
}

}  // namespace

TEST_CASE("CUDA vs CPU: one training step of an MLP gives the same loss, gradients and update", "[cuda][nn]") {
  manual_seed(7);
  auto cpu_model = make_mlp(13, 64, 5);
  auto cuda_model = make_mlp(13, 64, 5);
  one_step_matches(cpu_model, cuda_model, 0);
}

TEST_CASE("CUDA vs CPU: one training step with LayerNorm, GELU and Dropout", "[cuda][nn]") {
  manual_seed(8);
  auto cpu_model = make_deeper(13, 48, 5);
  auto cuda_model = make_deeper(13, 48, 5);
  REQUIRE(cpu_model->is_training());
  one_step_matches(cpu_model, cuda_model, 99);  // same seed before each forward: same dropout mask on both
}

TEST_CASE("CUDA: a tiny MLP overfits one batch", "[cuda][nn]") {
  const Device cuda = cuda_device();
  manual_seed(1);
  auto model = make_mlp(13, 64, 5);
  model->to(cuda);
  const Batch b = make_batch(16, 13, 5, 5);
  const Tensor x = b.x.to(cuda), y = b.y.to(cuda);
  AdamWHyper h;
  h.lr = 1e-2;
  nn::AdamW opt(model->parameters(), h);
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    opt.zero_grad();
    const Tensor loss = cross_entropy((*model)(x), y);
    loss.backward();
    opt.step();
    last = loss.item();
    if (step == 0) first = last;
    REQUIRE(std::isfinite(last));
  }
  INFO("loss " << first << " -> " << last);
  REQUIRE(first > 0.5);  // ln(5) ~ 1.6 at initialisation
  REQUIRE(last < 0.05);
  // All sixteen predictions right.
  NoGradGuard ng;
  REQUIRE_CLOSE(bit_equal(argmax((*model)(x), 1), y));
}

TEST_CASE("CUDA: Module::to keeps parameter handles valid", "[cuda][nn]") {
  const Device cuda = cuda_device();
  manual_seed(3);
  auto model = std::make_shared<nn::Sequential>();
  auto first = model->push_back(std::make_shared<nn::Linear>(9, 17));
  model->push_back(nn::ReLU());
  model->push_back(std::make_shared<nn::Linear>(17, 4));
  const std::vector<Tensor> handles = model->parameters();  // taken before the move
  std::vector<Tensor> values;
  for (const Tensor& p : handles) values.push_back(p.detach().clone());
  const Tensor weight_handle = first->weight;

  model->to(cuda);
  const std::vector<Tensor> after = model->parameters();
  REQUIRE(after.size() == handles.size());
  for (size_t i = 0; i < handles.size(); ++i) {
    INFO("parameter " << i);
    REQUIRE(handles[i].impl_ptr() == after[i].impl_ptr());  // the same tensor, now on CUDA
    REQUIRE(handles[i].device() == cuda);
    REQUIRE(handles[i].requires_grad());
    REQUIRE(handles[i].is_leaf());
    REQUIRE_CLOSE(bit_equal(handles[i], values[i]));
  }
  REQUIRE(weight_handle.device() == cuda);
  REQUIRE(weight_handle.impl_ptr() == first->weight.impl_ptr());

  // Gradients land on the handles held from before the move, and an optimiser built on them updates the model.
  const Batch b = make_batch(6, 9, 4, 9);
  cross_entropy((*model)(b.x.to(cuda)), b.y.to(cuda)).backward();
  for (const Tensor& p : handles) {
    REQUIRE(p.grad().defined());
    REQUIRE(p.grad().device() == cuda);
  }
  SGDHyper h;
  h.lr = 0.1;
  nn::SGD opt(handles, h);
  opt.step();
  REQUIRE_FALSE(bit_equal(first->weight, values[0]).ok);

  // And back to the CPU with the values intact.
  const Tensor moved = first->weight.detach().clone();
  model->to(kCPU);
  REQUIRE(weight_handle.device() == kCPU);
  REQUIRE_CLOSE(bit_equal(weight_handle, moved));
}

TEST_CASE("CUDA: save_state_dict from a CUDA model loads bit-exactly into a CPU model", "[cuda][nn]") {
  const Device cuda = cuda_device();
  manual_seed(4);
  auto cuda_model = make_deeper(13, 48, 5);
  cuda_model->to(cuda);
  // Train a few steps so the values are not just the initialisation.
  const Batch b = make_batch(8, 13, 5, 12);
  nn::AdamW opt(cuda_model->parameters());
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    cross_entropy((*cuda_model)(b.x.to(cuda)), b.y.to(cuda)).backward();
    opt.step();
  }
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                        ("mixgrad_test_cuda_nn_" + std::to_string(std::random_device{}()));
  std::filesystem::create_directories(dir);
  const std::filesystem::path file = dir / "model.safetensors";
  nn::save_state_dict(*cuda_model, file);

  manual_seed(5);
  auto cpu_model = make_deeper(13, 48, 5);
  nn::load_state_dict(*cpu_model, file);
  for (const Tensor& p : cpu_model->parameters()) REQUIRE(p.device() == kCPU);
  require_same_state(*cpu_model, *cuda_model, /*exact=*/true);

  // And into another CUDA model.
  auto cuda_copy = make_deeper(13, 48, 5);
  cuda_copy->to(cuda);
  nn::load_state_dict(*cuda_copy, file);
  require_same_state(*cuda_copy, *cuda_model, /*exact=*/true);
  std::filesystem::remove_all(dir);
}
