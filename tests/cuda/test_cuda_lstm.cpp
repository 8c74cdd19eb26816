// The fused LSTM layer op on CUDA against the CPU reference on the same inputs, forward (y, h_n) and backward (x and
// every weight and bias) in one table of cases: uni/bidirectional, two stacked layers, lengths on the host or on the
// device, a long sequence and a wide hidden size. Failures name the case, the tensor and the worst element.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/lstm.h"
#include "engine/mixgrad.h"
#include "tests/common/check.h"
using Catch::Contains;

namespace {

using namespace mixgrad;
using namespace mixgrad::testing;

Device gpu() { return Device("cuda"); }

struct LstmCase {
  std::string name;
  int64_t B, L, D, H, dirs, layers;
  std::vector<int32_t> lengths;  // empty: every sample full length
  bool lengths_on_device = true;
};

Tensor normal_host(const Shape& s, float scale, std::mt19937& gen) {
  std::normal_distribution<float> n(0.f, scale);
  std::vector<float> v(size_t(shape_numel(s)));
  for (float& x : v) x = n(gen);
  return from_vector<float>(v, s);
}

// Host inputs: x, then per layer and direction w_ih, w_hh, b_ih, b_hh (PyTorch-like scale 1/sqrt(H)).
std::vector<Tensor> make_inputs(const LstmCase& c, std::mt19937& gen) {
  const float scale = 1.f / std::sqrt(float(c.H));
  std::vector<Tensor> in{normal_host({c.B, c.L, c.D}, 1.f, gen)};
  for (int64_t k = 0; k < c.layers; ++k)
    for (int64_t d = 0; d < c.dirs; ++d) {
      in.push_back(normal_host({4 * c.H, k == 0 ? c.D : c.dirs * c.H}, scale, gen));
      in.push_back(normal_host({4 * c.H, c.H}, scale, gen));
      in.push_back(normal_host({4 * c.H}, scale, gen));
      in.push_back(normal_host({4 * c.H}, scale, gen));
    }
  return in;
}

struct Run {
  std::vector<Tensor> inputs, outputs;  // outputs: y of the last layer, then each layer's h_n
};

Run run_on(const LstmCase& c, const std::vector<Tensor>& host, const std::vector<Tensor>& weights, Device device) {
  Run r;
  for (const Tensor& h : host) r.inputs.push_back(h.to(device).clone().requires_grad_());
  Tensor lengths;
  if (!c.lengths.empty()) {
    lengths = from_vector<int32_t>(c.lengths, {c.B}, TensorOptions(DType::i32));
    if (c.lengths_on_device) lengths = lengths.to(device);
  }
  Tensor h = r.inputs[0];
  size_t next = 1;
  std::vector<Tensor> h_n;
  for (int64_t k = 0; k < c.layers; ++k) {
    std::vector<LstmDirection> w;
    for (int64_t d = 0; d < c.dirs; ++d, next += 4)
      w.push_back({r.inputs[next], r.inputs[next + 1], r.inputs[next + 2], r.inputs[next + 3]});
    LstmLayerOutput out = lstm_layer(h, w, lengths);
    h = out.y;
    h_n.push_back(out.h_n);
  }
  r.outputs.push_back(h);
  r.outputs.insert(r.outputs.end(), h_n.begin(), h_n.end());
  Tensor loss;
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    const Tensor term = sum(mul(r.outputs[i], weights[i].to(device)));
    loss = loss.defined() ? add(loss, term) : term;
  }
  loss.backward();
  return r;
}

void run_case(const LstmCase& c, uint32_t seed) {
  INFO("case: " << c.name);
  std::mt19937 gen(seed);
  const std::vector<Tensor> host = make_inputs(c, gen);
  std::vector<Tensor> weights{normal_host({c.B, c.L, c.dirs * c.H}, 1.f, gen)};
  for (int64_t k = 0; k < c.layers; ++k) weights.push_back(normal_host({c.dirs, c.B, c.H}, 1.f, gen));
  const Run ref = run_on(c, host, weights, kCPU);
  const Run dev = run_on(c, host, weights, gpu());
  const Tolerance tol = tolerance(Compare::cpu_vs_cuda);
  for (size_t i = 0; i < ref.outputs.size(); ++i) {
    INFO((i == 0 ? std::string("y") : "h_n of layer " + std::to_string(i - 1))
         << " of shape " << shape_str(ref.outputs[i].shape()));
    REQUIRE(dev.outputs[i].device() == gpu());
    REQUIRE_CLOSE(all_close(dev.outputs[i], ref.outputs[i], tol));
  }
  for (size_t j = 0; j < ref.inputs.size(); ++j) {
    INFO("gradient of input " << j << " (0 = x, then w_ih, w_hh, b_ih, b_hh per layer and direction) of shape "
                              << shape_str(ref.inputs[j].shape()));
    REQUIRE(dev.inputs[j].grad().defined());
    REQUIRE_CLOSE(all_close(dev.inputs[j].grad(), ref.inputs[j].grad(), tol));
  }
}

const std::vector<LstmCase>& cases() {
  static const std::vector<LstmCase> table{
      {"unidirectional, full length", 3, 7, 5, 4, 1, 1, {}},
      {"bidirectional, full length", 3, 7, 5, 4, 2, 1, {}},
      {"bidirectional, lengths {L, L-2, 1} on the device", 3, 7, 5, 4, 2, 1, {7, 5, 1}},
      {"bidirectional, lengths on the host", 3, 7, 5, 4, 2, 1, {7, 5, 1}, false},
      {"unidirectional, two layers, lengths", 4, 9, 3, 6, 1, 2, {9, 2, 7, 1}},
      {"bidirectional, two layers, lengths", 4, 9, 3, 6, 2, 2, {9, 2, 7, 1}},
      {"bidirectional, wide hidden (several blocks per step)", 5, 12, 16, 96, 2, 1, {12, 11, 3, 1, 8}},
      {"bidirectional, long sequence", 2, 300, 8, 8, 2, 1, {300, 123}},
  };
  return table;
}

}  // namespace

TEST_CASE("cuda lstm: forward and backward match the CPU on every case of the table", "[cuda][lstm]") {
  const auto& table = cases();
  for (size_t k = 0; k < table.size(); ++k) DYNAMIC_SECTION("#" << k << " " << table[k].name) {
      run_case(table[k], 2000 + uint32_t(k));
    }
}

TEST_CASE("cuda lstm: a bad length on the device is reported at the next read-back", "[cuda][lstm]") {
  std::mt19937 gen(9);
  const LstmDirection w{normal_host({8, 3}, 0.5f, gen).to(gpu()), normal_host({8, 2}, 0.5f, gen).to(gpu()),
                        zeros({8}, TensorOptions(DType::f32, gpu())), zeros({8}, TensorOptions(DType::f32, gpu()))};
  const Tensor x = normal_host({2, 4, 3}, 1.f, gen).to(gpu());
  for (const std::vector<int32_t>& bad : {std::vector<int32_t>{4, 0}, std::vector<int32_t>{5, 1}}) {
    const LstmLayerOutput out = lstm_layer(x, {w}, from_vector<int32_t>(bad, {2}).to(gpu()));
    REQUIRE_THROWS_WITH(out.y.to(kCPU), Contains("lstm_layer: a length is outside [1, L] = [1, 4]"));
  }
  REQUIRE_NOTHROW(lstm_layer(x, {w}, from_vector<int32_t>({4, 1}, {2}).to(gpu())).y.to(kCPU));
}
