// Combiner op cases for the bench (see combiner_cases.h).
#include "apps/bench/combiner_cases.h"

#include "engine/combiner.h"

namespace mixgrad::bench {
namespace {

constexpr double kF32 = 4.0;

OpCase combiner_case(CombinerVariant variant, bool causal, int64_t L) {
  const int64_t B = 16384 / L, H = 8, d = 64;
  const CombinerLayout layout{variant, 0, causal};
  OpCase c;
  c.op = "combiner";
  c.impl = combiner_variant_name(variant);
  c.shape = fmt::format("[{}, {}, {}, {}]{}", B, H, L, d, causal ? " causal" : "");
  const CombinerTables& t = combiner_tables(layout, L);
  double members = 0;
  for (int32_t n : t.span_count) members += double(n);
  const double pairs = double(t.dir_idx.size() + t.col_idx.size()) + members;
  c.forward_flops = 4.0 * double(B * H * d) * pairs;
  c.backward_flops = 2.5 * c.forward_flops;
  const double bhld = double(B * H * L * d);
  c.forward_bytes = kF32 * 4 * bhld;   // read q, k, v, write o (summaries are smaller)
  c.backward_bytes = kF32 * 8 * bhld;  // read q, k, v, o, dO, write dq, dk, dv
  c.tokens = double(B * L);
  c.report_forward_backward = true;
  c.make_inputs = [=](Device dev) {
    std::vector<Tensor> in;
    for (int i = 0; i < 3; ++i) in.push_back(randn({B, H, L, d}, TensorOptions(DType::f32, dev, true)));
    return in;
  };
  c.forward = [=](const std::vector<Tensor>& in) { return combiner_attention(in[0], in[1], in[2], layout); };
  c.on_cpu = L <= 4096;
  return c;
}

}  // namespace

std::vector<OpCase> combiner_op_cases() {
  std::vector<OpCase> cases;
  for (CombinerVariant v :
       {CombinerVariant::fixed, CombinerVariant::logsparse, CombinerVariant::axial, CombinerVariant::mixture})
    for (bool causal : {false, true})
      for (int64_t L : {1024, 4096, 16384}) cases.push_back(combiner_case(v, causal, L));
  return cases;
}

}  // namespace mixgrad::bench
