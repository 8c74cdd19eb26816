// EMA op cases for the bench (sizes and byte/FLOP counts: apps/bench/ema_cases.h).
#include "apps/bench/ema_cases.h"

#include <cstdint>
#include <string>

#include "engine/ema.h"

namespace mixgrad::bench {
namespace {

constexpr double kF32 = 4.0;
constexpr int64_t kNdim = 16;

struct EmaSize {
  int64_t B, L, D;
  int64_t truncation;  // 0 = none (the scan path)
  bool cpu = true;
};

OpCase ema_case(const EmaSize& s) {
  OpCase c;
  c.op = "ema";
  const EmaOptions opt{true, s.truncation, EmaPath::automatic};
  const EmaPath path = ema_resolve_path(s.L, opt);
  c.shape =
      fmt::format("[{}, {}, {}] ndim={} {} {}", s.B, s.L, s.D, kNdim,
                  s.truncation == 0 ? std::string("full") : fmt::format("trunc={}", s.truncation), ema_path_name(path));
  c.impl = ema_path_name(path);
  const double n = double(s.B) * double(s.L) * double(s.D);
  c.forward_bytes = kF32 * 3 * n;
  c.backward_bytes = kF32 * 4 * n;
  const double k = double(s.truncation == 0 ? s.L : std::min(s.truncation, s.L));
  const double per_element = path == EmaPath::scan ? 4.0 * kNdim : 2.0 * k;
  c.forward_flops = 2 * n * per_element;   // two directions
  c.backward_flops = 4 * n * per_element;  // dx and the parameter (or tap) gradients
  c.tokens = double(s.B) * double(s.L);
  c.report_forward_backward = true;
  c.report_peak_memory = true;
  c.on_cpu = s.cpu;
  c.make_inputs = [s](Device d) {
    const TensorOptions grad(DType::f32, d, true);
    const int64_t rows = 2 * s.D;
    std::vector<Tensor> in{randn({s.B, s.L, s.D}, grad)};
    for (int i = 0; i < 4; ++i) in.push_back(randn({rows, kNdim}, grad));  // delta, alpha, beta, gamma
    in.push_back(randn({s.D}, grad));                                      // omega
    return in;
  };
  c.forward = [opt](const std::vector<Tensor>& in) {
    return multihead_ema(in[0], in[1], in[2], in[3], in[4], in[5], Tensor(), opt);
  };
  return c;
}

}  // namespace

std::vector<OpCase> ema_op_cases(bool smoke) {
  const std::vector<EmaSize> sizes =
      smoke ? std::vector<EmaSize>{{2, 16, 8, 0}, {2, 16, 8, 5}}
            : std::vector<EmaSize>{
                  {8, 2000, 80, 1024},  {4, 4000, 128, 1024}, {8, 1024, 160, 1024},
                  {50, 1024, 160, 0},   {50, 1024, 160, 256}, {16, 4096, 128, 0},
                  {16, 4096, 128, 1024}, {4, 16384, 64, 0},   {4, 16384, 64, 4096, false},
              };
  std::vector<OpCase> cases;
  for (const EmaSize& s : sizes) cases.push_back(ema_case(s));
  return cases;
}

}  // namespace mixgrad::bench
