// Gated-attention op cases for the bench (sizes and byte/FLOP counts: apps/bench/gated_attention_cases.h).
#include "apps/bench/gated_attention_cases.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "engine/gated_attention.h"

namespace mixgrad::bench {
namespace {

constexpr double kF32 = 4.0;

struct GattSize {
  int64_t B, L, Z, E;
  GatedAttentionFn fn;
  int64_t chunk;  // -1: full
  bool cpu = true;
};

OpCase gated_attention_case(const GattSize& s) {
  OpCase c;
  c.op = "gated_attention";
  const bool chunked = s.chunk > 0 && s.chunk < s.L;
  const int64_t span = chunked ? s.chunk : s.L;
  c.shape = fmt::format("[{}, {}, {} | {}] {} {}", s.B, s.L, s.Z, s.E, gated_attention_fn_name(s.fn),
                        chunked ? fmt::format("chunk={}", s.chunk) : std::string("full"));
  c.impl = gated_attention_fn_name(s.fn);
  // Attended pairs: Σ over spans of (span length)², the last span possibly shorter.
  const int64_t whole = s.L / span, rest = s.L % span;
  const double pairs = double(s.B) * (double(whole) * double(span) * double(span) + double(rest) * double(rest));
  c.forward_flops = 2.0 * pairs * double(s.Z + s.E);
  c.backward_flops = pairs * double(6 * s.Z + 4 * s.E);
  const double qk = double(s.B) * double(s.L) * double(s.Z), ve = double(s.B) * double(s.L) * double(s.E);
  c.forward_bytes = kF32 * (2 * qk + 2 * ve);
  c.backward_bytes = kF32 * (4 * qk + 5 * ve);
  c.tokens = double(s.B) * double(s.L);
  c.report_forward_backward = true;
  c.report_peak_memory = true;
  c.on_cpu = s.cpu;
  c.make_inputs = [s, span](Device d) {
    const TensorOptions grad(DType::f32, d, true);
    return std::vector<Tensor>{randn({s.B, s.L, s.Z}, grad), randn({s.B, s.L, s.Z}, grad), randn({s.B, s.L, s.E}, grad),
                               randn({2 * span - 1}, grad)};
  };
  const GatedAttentionOptions opt{s.fn, s.chunk};
  c.forward = [opt](const std::vector<Tensor>& in) {
    return gated_attention(in[0], in[1], in[2], in[3], Tensor(), opt);
  };
  return c;
}

}  // namespace

std::vector<OpCase> gated_attention_op_cases(bool smoke) {
  using F = GatedAttentionFn;
  std::vector<GattSize> sizes;
  if (smoke) {
    sizes = {{2, 100, 8, 16, F::softmax, -1}, {2, 100, 8, 16, F::laplace, 32}, {2, 100, 8, 16, F::relu2, -1}};
  } else {
    sizes = {{8, 2000, 64, 160, F::softmax, -1}, {8, 2000, 64, 160, F::softmax, 128},
             {8, 1024, 96, 320, F::laplace, -1}, {8, 1024, 64, 384, F::relu2, -1},
             {4, 4096, 64, 256, F::softmax, -1}, {2, 16384, 32, 128, F::laplace, 4096, false}};
  }
  std::vector<OpCase> cases;
  for (const GattSize& s : sizes) cases.push_back(gated_attention_case(s));
  return cases;
}

}  // namespace mixgrad::bench
