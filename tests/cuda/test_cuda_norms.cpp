// ScaleNorm and masked BatchNorm on CUDA against the CPU ops on the same inputs, forward, running statistics and
// every gradient, in tables over awkward sizes (single elements, rows off the vector and warp widths, many rows,
// channels off the 32-column tile, many row chunks, padded samples, lengths on either device, train and eval);
// failures name the worst element. Also: determinism, and the device-side checks of lengths.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "engine/norms.h"
#include "nn/norms.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using namespace mixgrad::testing;
using Catch::Contains;

Device gpu() { return Device("cuda"); }

std::vector<float> uniform(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& e : v) e = u(gen);
  return v;
}

// Sums over many rows (the scalar dg, per-channel statistics over B·L positions) are accumulated in a different
// order on each device: a looser float32 tolerance for those.
const Tolerance kLong{1e-3, 1e-4};

// ---- ScaleNorm ------------------------------------------------------------------------------------------------------

struct ScaleCase {
  std::string name;
  Shape shape;
  Tolerance tol = tolerance(Compare::cpu_vs_cuda);
};

std::vector<ScaleCase> scale_cases() {
  return {
      {"one element", {1, 1}},
      {"cols 5 (scalar loads)", {3, 5}},
      {"cols 64 (vector loads)", {7, 64}},
      {"cols 1029, 3-D", {2, 3, 1029}},
      {"cols 33, 1000 rows", {1000, 33}, kLong},
      {"cols 160, 4099 rows (grid stride)", {4099, 160}, kLong},
  };
}

// y, dx, dg of sum(scale_norm(x, g) · w) on one device.
std::vector<Tensor> run_scale(const ScaleCase& c, uint32_t seed, Device device) {
  const int64_t n = shape_numel(c.shape);
  Tensor x = from_vector<float>(uniform(size_t(n), -2.f, 2.f, seed), c.shape).to(device).detach().requires_grad_();
  Tensor g = full({1}, 1.3).to(device).detach().requires_grad_();
  Tensor y = scale_norm(x, g);
  REQUIRE(y.device() == device);
  sum(mul(y, from_vector<float>(uniform(size_t(n), 0.5f, 1.5f, seed + 1), c.shape).to(device))).backward();
  return {y.detach().to(kCPU), x.grad().to(kCPU), g.grad().to(kCPU)};
}

// ---- BatchNorm ------------------------------------------------------------------------------------------------------

struct BnCudaCase {
  std::string name;
  int64_t B, L, C;
  std::vector<int32_t> lengths;  // empty: full length
  bool affine = true;
  bool lengths_on_cpu = false;
  Tolerance tol = tolerance(Compare::cpu_vs_cuda);
};

std::vector<BnCudaCase> bn_cases() {
  return {
      {"two positions, one channel", 1, 2, 1, {}},
      {"padded, 5 channels", 3, 7, 5, {7, 1, 4}},
      {"padded, 33 channels, CPU lengths", 2, 9, 33, {9, 5}, true, true},
      {"no affine, 64 channels", 2, 16, 64, {16, 11}, false},
      {"MEGA image width 160, 1024 positions (many chunks)", 4, 1024, 160, {1024, 1000, 512, 3}, true, false, kLong},
      {"one long sample, 70 channels", 1, 5000, 70, {}, true, false, kLong},
  };
}

struct BnRun {
  std::vector<Tensor> values;  // y, running_mean, running_var, dx, dweight, dbias
};

BnRun run_bn(const BnCudaCase& c, bool training, uint32_t seed, Device device) {
  const int64_t n = c.B * c.L * c.C;
  auto leaf = [&](std::vector<float> v, Shape s) {
    return from_vector<float>(v, std::move(s)).to(device).detach().requires_grad_();
  };
  Tensor x = leaf(uniform(size_t(n), -2.f, 3.f, seed), {c.B, c.L, c.C});
  Tensor w = c.affine ? leaf(uniform(size_t(c.C), 0.5f, 1.5f, seed + 1), {c.C}) : Tensor();
  Tensor b = c.affine ? leaf(uniform(size_t(c.C), -0.5f, 0.5f, seed + 2), {c.C}) : Tensor();
  Tensor rm = from_vector<float>(uniform(size_t(c.C), -0.5f, 0.5f, seed + 3), {c.C}).to(device);
  Tensor rv = from_vector<float>(uniform(size_t(c.C), 0.5f, 2.f, seed + 4), {c.C}).to(device);
  Tensor lengths;
  if (!c.lengths.empty()) {
    lengths = from_vector<int32_t>(c.lengths, {c.B}, TensorOptions(DType::i32));
    if (!c.lengths_on_cpu) lengths = lengths.to(device);
  }
  Tensor y = batch_norm(x, w, b, rm, rv, lengths, training);
  REQUIRE(y.device() == device);
  sum(mul(y, from_vector<float>(uniform(size_t(n), 0.5f, 1.5f, seed + 5), {c.B, c.L, c.C}).to(device))).backward();
  BnRun r;
  r.values = {y.detach().to(kCPU), rm.to(kCPU), rv.to(kCPU), x.grad().to(kCPU)};
  if (c.affine) {
    r.values.push_back(w.grad().to(kCPU));
    r.values.push_back(b.grad().to(kCPU));
  }
  return r;
}

}  // namespace

TEST_CASE("CUDA norms: scale_norm forward and gradients match the CPU op", "[cuda][norms]") {
  const std::vector<ScaleCase> cases = scale_cases();
  const char* names[] = {"y", "dx", "dg"};
  for (size_t k = 0; k < cases.size(); ++k) {
    const ScaleCase& c = cases[k];
    DYNAMIC_SECTION("#" << k << " " << c.name) {
      const std::vector<Tensor> ref = run_scale(c, 100 + uint32_t(k), kCPU),
                                dev = run_scale(c, 100 + uint32_t(k), gpu());
      for (size_t i = 0; i < ref.size(); ++i) {
        INFO(names[i] << " of shape " << shape_str(ref[i].shape()));
        REQUIRE_CLOSE(all_close(dev[i], ref[i], c.tol));
      }
    }
  }
}

TEST_CASE("CUDA norms: batch_norm forward, running statistics and gradients match the CPU op", "[cuda][norms]") {
  const std::vector<BnCudaCase> cases = bn_cases();
  const char* names[] = {"y", "running_mean", "running_var", "dx", "dweight", "dbias"};
  for (size_t k = 0; k < cases.size(); ++k) {
    const BnCudaCase& c = cases[k];
    for (bool training : {true, false}) {
      DYNAMIC_SECTION("#" << k << " " << c.name << (training ? ", training" : ", eval")) {
        INFO("B " << c.B << " L " << c.L << " C " << c.C);
        const BnRun ref = run_bn(c, training, 300 + uint32_t(k), kCPU);
        const BnRun dev = run_bn(c, training, 300 + uint32_t(k), gpu());
        REQUIRE(ref.values.size() == dev.values.size());
        for (size_t i = 0; i < ref.values.size(); ++i) {
          INFO(names[i] << " of shape " << shape_str(ref.values[i].shape()));
          REQUIRE_CLOSE(all_close(dev.values[i], ref.values[i], c.tol));
        }
      }
    }
  }
}

TEST_CASE("CUDA norms: two runs are bitwise identical (no atomics)", "[cuda][norms]") {
  const ScaleCase sc{"scale", {3000, 96}};
  const std::vector<Tensor> a = run_scale(sc, 7, gpu()), b = run_scale(sc, 7, gpu());
  for (size_t i = 0; i < a.size(); ++i) REQUIRE_CLOSE(bit_equal(a[i], b[i]));
  const BnCudaCase bc{"bn", 4, 700, 40, {700, 650, 3, 100}};
  const BnRun x = run_bn(bc, true, 8, gpu()), y = run_bn(bc, true, 8, gpu());
  for (size_t i = 0; i < x.values.size(); ++i) REQUIRE_CLOSE(bit_equal(x.values[i], y.values[i]));
}

TEST_CASE("CUDA norms: lengths on the GPU are validated on the device", "[cuda][norms]") {
  const Tensor x = from_vector<float>(uniform(24, -1.f, 1.f, 3), {2, 3, 4}).to(gpu());
  const Tensor rm = zeros({4}).to(gpu()), rv = ones({4}).to(gpu());
  for (const std::vector<int32_t>& bad : {std::vector<int32_t>{3, 0}, std::vector<int32_t>{4, 1}}) {
    const Tensor y = batch_norm(x, Tensor(), Tensor(), rm, rv, from_vector<int32_t>(bad, {2}).to(gpu()));
    REQUIRE_THROWS_WITH(y.to(kCPU), Contains("batch_norm: a length is outside [1, L] = [1, 3]"));
  }
  // One sample with one valid position has no batch variance: reported at the next read-back.
  const Tensor one = from_vector<float>(uniform(12, -1.f, 1.f, 4), {1, 3, 4}).to(gpu());
  const Tensor y = batch_norm(one, Tensor(), Tensor(), rm, rv, from_vector<int32_t>({1}, {1}).to(gpu()));
  REQUIRE_THROWS_WITH(y.to(kCPU), Contains("training mode needs more than one valid position"));
  REQUIRE_NOTHROW(batch_norm(one, Tensor(), Tensor(), rm, rv, from_vector<int32_t>({2}, {1}).to(gpu())).to(kCPU));
}

TEST_CASE("CUDA norms: nn::SequenceNorm layers run on the GPU as on the CPU", "[cuda][norms]") {
  const Tensor x = from_vector<float>(uniform(2 * 6 * 8, -1.f, 2.f, 5), {2, 6, 8});
  const Tensor lengths = from_vector<int32_t>({6, 4}, {2}, TensorOptions(DType::i32));
  for (const std::string& name : nn::sequence_norm_names()) {
    INFO(name);
    nn::SequenceNorm cpu_norm(name, 8), gpu_norm(name, 8);
    gpu_norm.to(gpu());
    const Tensor a = cpu_norm.forward(x, lengths).detach();
    const Tensor b = gpu_norm.forward(x.to(gpu()), lengths.to(gpu())).detach().to(kCPU);
    REQUIRE_CLOSE(all_close(b, a, tolerance(Compare::cpu_vs_cuda)));
    const auto sa = cpu_norm.state_dict(), sb = gpu_norm.state_dict();
    for (size_t i = 0; i < sa.size(); ++i) {
      INFO(sa[i].first);
      REQUIRE_CLOSE(all_close(sb[i].second.to(kCPU), sa[i].second, tolerance(Compare::cpu_vs_cuda)));
    }
  }
}
