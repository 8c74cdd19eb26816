// CSP op cases for the bench: the op at the ViT, LRA-Image and Path-X sizes of specs/csp.md §8.1, with the shift
// schedule each model uses, plus a clone() of the same tensor as the memory-bandwidth reference.
#include "apps/bench/csp_cases.h"

#include <string>

#include "engine/csp.h"

namespace mixgrad::bench {
namespace {

constexpr double kF32 = 4.0;

struct CspSize {
  int64_t B, N, D;
  int k;
  std::string schedule;       // "constant" or "exponential"
  int64_t layer, num_layers;  // exponential only
  bool lengths = false;       // per-sample lengths on V's device (N, 7N/8, 6N/8, 5N/8 repeating), as LRA's text tasks
};

std::string shape_of(const CspSize& s) { return fmt::format("[{}, {}, {}]", s.B, s.N, s.D); }

Tensor activation(const CspSize& s, Device d) { return randn({s.B, s.N, s.D}, TensorOptions(DType::f32, d, true)); }

OpCase csp_case(const CspSize& s) {
  OpCase c;
  c.op = "csp";
  c.shape = shape_of(s) + fmt::format(" K={} ", s.k) +
            (s.schedule == "constant" ? std::string("constant")
                                      : fmt::format("exp l={}/{}", s.layer, s.num_layers)) +
            (s.lengths ? " lengths" : "");
  const double n = double(s.B) * double(s.N) * double(s.D);
  c.forward_bytes = kF32 * 2 * n;   // read V, write Y (the D shifts are negligible)
  c.backward_bytes = kF32 * 3 * n;  // recompute: read V and dY, write dV
  const std::vector<int32_t> shifts = csp_shifts(s.schedule, s.D, s.N, s.k, s.layer, s.num_layers);
  c.make_inputs = [s](Device d) {
    std::vector<Tensor> in{activation(s, d)};
    if (s.lengths) {
      std::vector<int64_t> n(size_t(s.B));
      for (int64_t b = 0; b < s.B; ++b) n[size_t(b)] = s.N - (b % 4) * (s.N / 8);
      in.push_back(from_vector<int64_t>(n, {s.B}).to(d));
    }
    return in;
  };
  c.forward = [shifts, k = s.k](const std::vector<Tensor>& in) {
    return csp(in[0], shifts, k, in.size() > 1 ? in[1] : Tensor());
  };
  return c;
}

OpCase copy_case(const CspSize& s) {
  OpCase c;
  c.op = "copy";
  c.shape = shape_of(s);
  c.forward_bytes = kF32 * 2 * double(s.B) * double(s.N) * double(s.D);  // read x, write the copy
  c.backward_bytes = 0;  // clone's backward hands dY through: nothing to move
  c.make_inputs = [s](Device d) { return std::vector<Tensor>{activation(s, d)}; };
  c.forward = [](const std::vector<Tensor>& in) { return in[0].clone(); };
  return c;
}

}  // namespace

std::vector<OpCase> csp_op_cases(int64_t pathx_batch) {
  MIXGRAD_CHECK(pathx_batch >= 1, "csp_op_cases: pathx_batch must be >= 1, got {}", pathx_batch);
  const std::vector<CspSize> sizes = {
      {64, 64, 512, 2, "constant", 0, 1},                // CSP-ViT CIFAR-10 layer
      {50, 1024, 320, 2, "exponential", 4, 8},           // CSP-MEGA LRA Image
      {50, 1024, 320, 2, "exponential", 4, 8, true},     // the same with per-sample lengths (text tasks)
      {pathx_batch, 16384, 128, 2, "exponential", 3, 4},  // CSP-MEGA Path-X
  };
  std::vector<OpCase> cases;
  for (const CspSize& s : sizes) {
    cases.push_back(csp_case(s));
    if (!s.lengths) cases.push_back(copy_case(s));
  }
  return cases;
}

}  // namespace mixgrad::bench
