// LSTM bench cases: one fused bidirectional layer, forward and forward + backward, at LRA sizes.
#include "apps/bench/lstm_cases.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/lstm.h"

namespace mixgrad::bench {
namespace {

Tensor param(const Shape& shape, Device d, double scale) {
  Tensor t = mul_scalar(
      sub(mul_scalar(rand(shape, TensorOptions(DType::f32, d)), 2.0), ones(shape, TensorOptions(DType::f32, d))),
      scale);
  t.requires_grad_();
  return t;
}

OpCase lstm_case(int64_t B, int64_t L, int64_t D, int64_t H) {
  constexpr int64_t kDirs = 2;
  OpCase c;
  c.op = "lstm";
  c.impl = "bidirectional";
  c.shape = fmt::format("x [{}, {}, {}] H={}", B, L, D, H);
  c.forward_flops = 2.0 * double(B) * double(L) * double(kDirs * 4 * H) * double(D + H);
  c.backward_flops = 2 * c.forward_flops;
  c.tokens = double(B * L);
  c.report_forward_backward = true;
  c.report_peak_memory = true;
  c.make_inputs = [=](Device d) {
    const double bound = 1.0 / std::sqrt(double(H));
    std::vector<Tensor> in{param({B, L, D}, d, 1.0)};
    for (int64_t k = 0; k < kDirs; ++k) {
      in.push_back(param({4 * H, D}, d, bound));
      in.push_back(param({4 * H, H}, d, bound));
      in.push_back(param({4 * H}, d, bound));
      in.push_back(param({4 * H}, d, bound));
    }
    std::vector<int32_t> lengths(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) lengths[size_t(b)] = int32_t(L - (b * 37) % (L / 2 + 1));
    in.push_back(from_vector<int32_t>(lengths, {B}, TensorOptions(DType::i32)).to(d));
    return in;
  };
  c.forward = [](const std::vector<Tensor>& in) {
    return lstm_layer(in[0], {{in[1], in[2], in[3], in[4]}, {in[5], in[6], in[7], in[8]}}, in[9]).y;
  };
  return c;
}

}  // namespace

std::vector<OpCase> lstm_op_cases(bool smoke) {
  if (smoke) return {lstm_case(2, 16, 8, 8)};
  return {lstm_case(32, 2000, 128, 128), lstm_case(50, 1024, 128, 128)};
}

}  // namespace mixgrad::bench
