// S2-MLPv2 op cases for the bench: spatial_shift1 on NHWC activations and the split-attention passes on mlp1's
// output, at the sizes of s2mlp_cases.h.
#include "apps/bench/s2mlp_cases.h"

#include "engine/s2mlp.h"

namespace mixgrad::bench {
namespace {

constexpr double kF32 = 4.0;

struct S2Size {
  int64_t B, H, W, C;
};

std::string grid_text(const S2Size& s) { return fmt::format("{}x{} grid", s.H, s.W); }

OpCase shift_case(const S2Size& s) {
  OpCase c;
  c.op = "spatial_shift";
  c.shape = fmt::format("[{}, {}, {}, {}] shift1", s.B, s.H, s.W, s.C);
  const double n = double(s.B) * double(s.H) * double(s.W) * double(s.C);
  c.forward_bytes = kF32 * 2 * n;   // read x, write y
  c.backward_bytes = kF32 * 2 * n;  // read dY, write dX
  c.make_inputs = [s](Device d) {
    return std::vector<Tensor>{randn({s.B, s.H, s.W, s.C}, TensorOptions(DType::f32, d, true))};
  };
  c.forward = [](const std::vector<Tensor>& in) { return spatial_shift1(in[0]); };
  return c;
}

OpCase branch_sum_case(const S2Size& s) {
  OpCase c;
  c.op = "s2_branch_sum";
  const int64_t N = s.H * s.W;
  c.shape = fmt::format("[{}, {}, {}] {}", s.B, N, 3 * s.C, grid_text(s));
  const double z = double(s.B) * double(N) * double(3 * s.C);
  c.forward_bytes = kF32 * z;   // read z (a is [B, C])
  c.backward_bytes = kF32 * z;  // write dz (dA is [B, C])
  c.make_inputs = [s, N](Device d) {
    return std::vector<Tensor>{randn({s.B, N, 3 * s.C}, TensorOptions(DType::f32, d, true))};
  };
  const S2Grid grid{s.H, s.W, false};
  c.forward = [grid](const std::vector<Tensor>& in) { return s2_branch_sum(in[0], grid); };
  return c;
}

OpCase combine_case(const S2Size& s) {
  OpCase c;
  c.op = "s2_split_combine";
  const int64_t N = s.H * s.W;
  c.shape = fmt::format("[{}, {}, {}] {}", s.B, N, 3 * s.C, grid_text(s));
  const double out = double(s.B) * double(N) * double(s.C);
  c.forward_bytes = kF32 * 4 * out;   // read z (3 branches), write out
  c.backward_bytes = kF32 * 7 * out;  // read dOut and z, write dz
  c.make_inputs = [s, N](Device d) {
    return std::vector<Tensor>{randn({s.B, N, 3 * s.C}, TensorOptions(DType::f32, d, true)),
                               softmax(randn({s.B, 3, s.C}, TensorOptions(DType::f32, d)), 1).requires_grad_()};
  };
  const S2Grid grid{s.H, s.W, false};
  c.forward = [grid](const std::vector<Tensor>& in) { return s2_split_combine(in[0], in[1], grid); };
  return c;
}

}  // namespace

std::vector<OpCase> s2mlp_op_cases() {
  const std::vector<S2Size> sizes = {{128, 7, 7, 64}, {64, 32, 32, 192}, {64, 16, 16, 384}};
  std::vector<OpCase> cases;
  for (const S2Size& s : sizes) {
    cases.push_back(shift_case(s));
    cases.push_back(branch_sum_case(s));
    cases.push_back(combine_case(s));
  }
  return cases;
}

}  // namespace mixgrad::bench
