// The AFT ops on CUDA against the CPU reference, by one table (after tests/cuda/test_cuda_ops.cpp): every variant,
// causal and not, both paths, key padding, awkward sizes (N = 1, sizes off the warp and block widths, a long row),
// and inputs that send elements through the underflow fallback; forward and the gradient of every input. Failures
// name the case, the input and the worst element.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/aft.h"
#include "engine/mixgrad.h"
#include "tests/common/aft_reference.h"
#include "tests/common/check.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

const Device kCuda{DeviceType::cuda, 0};

struct CudaAftCase {
  std::string name;
  int64_t B, N, D, key_width;    // key_width: D, or the heads of AFT-conv
  Shape bias_shape;              // empty: no bias (AFT-simple)
  std::vector<int32_t> lengths;  // empty: no lengths
  double gap = 0;                // > 0: inputs built so that the GEMM form's den underflows (K and w' maxima apart)
  std::function<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&)> fn;
};

std::vector<CudaAftCase> cases() {
  std::vector<CudaAftCase> c;
  for (bool causal : {false, true}) {
    const std::string cs = causal ? " causal" : "";
    for (AftPath p : {AftPath::dense, AftPath::band}) {
      const std::string ps = p == AftPath::dense ? " dense" : " band";
      c.push_back(
          {"full" + cs + ps, 3, 37, 20, 20, {37, 37}, {37, 20, 1}, 0, [=](auto q, auto k, auto v, auto w, auto l) {
             return aft_full(q, k, v, w, l, causal, p);
           }});
      c.push_back(
          {"local s=5" + cs + ps, 2, 70, 33, 33, {70, 70}, {70, 41}, 0, [=](auto q, auto k, auto v, auto w, auto l) {
             return aft_local(q, k, v, w, 5, l, causal, p);
           }});
      c.push_back({"simple" + cs + ps, 3, 129, 7, 7, {}, {129, 64, 2}, 0, [=](auto q, auto k, auto v, auto, auto l) {
                     return aft_simple(q, k, v, l, causal, p);
                   }});
    }
    c.push_back({"simple automatic" + cs, 3, 129, 7, 7, {}, {129, 64, 2}, 0, [=](auto q, auto k, auto v, auto, auto l) {
                   return aft_simple(q, k, v, l, causal);
                 }});
    c.push_back({"simple fallback" + cs, 2, 9, 4, 4, {}, {9, 6}, 110, [=](auto q, auto k, auto v, auto, auto l) {
                   return aft_simple(q, k, v, l, causal, AftPath::band);
                 }});
    c.push_back(
        {"local band bias s=4" + cs, 2, 50, 12, 12, {50, 8}, {50, 23}, 0, [=](auto q, auto k, auto v, auto w, auto l) {
           // w here is U [N, R]; V_p = tanh(U) is a second factor that shares U's gradient.
           return aft_local_band(q, k, v, aft_local_bias(w, tanh(w), 4, causal), 4, l, causal);
         }});
    c.push_back({"full N=1" + cs, 2, 1, 5, 5, {1, 1}, {}, 0, [=](auto q, auto k, auto v, auto w, auto l) {
                   return aft_full(q, k, v, w, l, causal);
                 }});
    c.push_back({"full long row" + cs, 1, 300, 40, 40, {300, 300}, {}, 0, [=](auto q, auto k, auto v, auto w, auto l) {
                   return aft_full(q, k, v, w, l, causal);
                 }});
    c.push_back(
        {"conv s=7 H=4" + cs, 3, 45, 36, 4, {4, 7}, {45, 30, 3}, 0, [=](auto q, auto k, auto v, auto w, auto l) {
           return aft_conv(q, k, v, w, l, causal);
         }});
    c.push_back({"conv s=3 H=D" + cs, 2, 17, 6, 6, {6, 3}, {17, 9}, 0, [=](auto q, auto k, auto v, auto w, auto l) {
                   return aft_conv(q, k, v, w, l, causal);
                 }});
    c.push_back({"full fallback" + cs, 2, 9, 4, 4, {9, 9}, {9, 6}, 110, [=](auto q, auto k, auto v, auto w, auto l) {
                   return aft_full(q, k, v, w, l, causal);
                 }});
    c.push_back(
        {"local fallback band" + cs, 2, 9, 4, 4, {9, 9}, {9, 6}, 110, [=](auto q, auto k, auto v, auto w, auto l) {
           return aft_local(q, k, v, w, 2, l, causal, AftPath::band);
         }});
    c.push_back({"conv fallback" + cs, 2, 9, 4, 2, {2, 3}, {9, 6}, 110, [=](auto q, auto k, auto v, auto w, auto l) {
                   return aft_conv(q, k, v, w, l, causal);
                 }});
  }
  return c;
}

// Random inputs, or (gap > 0) key 0 with K = 0 and bias 0 while every other key has K = −gap and bias +gap (AFT-simple:
// the last key has K = 0, every other one −gap).
std::vector<Tensor> make_inputs(const CudaAftCase& c, uint64_t seed) {
  manual_seed(seed);
  std::vector<Tensor> in = {randn({c.B, c.N, c.D}), mul_scalar(randn({c.B, c.N, c.key_width}), 2.0),
                            randn({c.B, c.N, c.D})};
  if (!c.bias_shape.empty()) in.push_back(mul_scalar(randn(c.bias_shape), 2.0));
  if (c.gap > 0) {
    // Without a bias (AFT-simple) the top key is the last one, so causal prefixes underflow.
    const int64_t top = c.bias_shape.empty() ? c.N - 1 : 0;
    std::vector<float> k(size_t(c.B * c.N * c.key_width), float(-c.gap));
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t j = 0; j < c.key_width; ++j) k[size_t((b * c.N + top) * c.key_width + j)] = 0.f;
    in[1] = from_vector<float>(k, in[1].shape());
    if (!c.bias_shape.empty()) {
      std::vector<float> w(size_t(shape_numel(c.bias_shape)), float(c.gap));
      if (c.bias_shape[0] == c.N)
        for (int64_t t = 0; t < c.N; ++t) w[size_t(t * c.N)] = 0.f;
      in[3] = from_vector<float>(w, c.bias_shape);
    }
  }
  return in;
}

struct Run {
  Tensor y;
  std::vector<Tensor> grads;
};

Run forward_backward(const CudaAftCase& c, const std::vector<Tensor>& host, const Tensor& weight, Device device) {
  std::vector<Tensor> xs;
  for (const Tensor& t : host) {
    Tensor x = t.to(device);
    x.requires_grad_();
    xs.push_back(x);
  }
  const Tensor lengths =
      c.lengths.empty() ? Tensor() : from_vector<int32_t>(c.lengths, {c.B}, TensorOptions(DType::i32, device));
  Run r;
  r.y = c.fn(xs[0], xs[1], xs[2], xs.size() > 3 ? xs[3] : Tensor(), lengths);
  sum(mul(r.y, weight.to(device))).backward();
  for (const Tensor& x : xs) r.grads.push_back(x.grad());
  return r;
}

}  // namespace

TEST_CASE("cuda: AFT ops match the CPU, forward and backward, every variant and path", "[cuda][aft]") {
  const char* names[] = {"q", "k", "v", "bias"};
  for (const CudaAftCase& c : cases()) {
    INFO("case: " << c.name);
    const std::vector<Tensor> host = make_inputs(c, 70);
    const Tensor weight = randn({c.B, c.N, c.D});
    const Run cpu = forward_backward(c, host, weight, kCPU);
    const Run gpu = forward_backward(c, host, weight, kCuda);
    REQUIRE(gpu.y.device() == kCuda);
    REQUIRE_CLOSE(testing::all_close(gpu.y, cpu.y, tolerance(Compare::cpu_vs_cuda)));
    if (c.gap > 0) {  // without the fallback these outputs would be 0/0
      for (float v : gpu.y.to(kCPU).to_vector<float>()) REQUIRE(std::isfinite(v));
    }
    for (size_t i = 0; i < cpu.grads.size(); ++i) {
      INFO("gradient of " << names[i] << " " << shape_str(host[i].shape()));
      REQUIRE(gpu.grads[i].defined());
      REQUIRE_CLOSE(testing::all_close(gpu.grads[i], cpu.grads[i], tolerance(Compare::cpu_vs_cuda)));
    }
  }
}

TEST_CASE("cuda: AFT with lengths on the device never reads them back and clamps bad values", "[cuda][aft]") {
  manual_seed(71);
  const Tensor q = randn({2, 6, 4}, TensorOptions(kCuda)), k = randn({2, 6, 4}, TensorOptions(kCuda)),
               v = randn({2, 6, 4}, TensorOptions(kCuda)), w = randn({6, 6}, TensorOptions(kCuda));
  // A length above N counts as N, a negative one as 0 (every output 0).
  const Tensor bad = from_vector<int32_t>({9, -3}, {2}, TensorOptions(DType::i32, kCuda));
  const Tensor y = aft_full(q, k, v, w, bad).to(kCPU);
  const Tensor full_len = aft_full(q, k, v, w).to(kCPU);
  REQUIRE_CLOSE(testing::all_close(narrow(y, 0, 0, 1), narrow(full_len, 0, 0, 1), tolerance(Compare::cpu_vs_cuda)));
  for (float x : narrow(y, 0, 1, 1).to_vector<float>()) REQUIRE(x == 0.f);
}
