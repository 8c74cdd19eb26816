// AFT op and mixer cases for the bench (apps/bench/aft_cases.h).
#include "apps/bench/aft_cases.h"

#include <map>
#include <memory>
#include <string>

#include "engine/aft.h"
#include "nn/mixer.h"

namespace mixgrad::bench {
namespace {

constexpr double kF32 = 4.0;

struct AftSize {
  std::string variant;  // full, local, simple, conv
  int64_t B, N, D;
  bool causal;
  int64_t size = 0, heads = 1;  // local window / conv kernel size; conv heads
};

std::string shape_of(const AftSize& s) {
  std::string extra = s.variant == "local"  ? fmt::format(" s={}", s.size)
                      : s.variant == "conv" ? fmt::format(" s={} H={}", s.size, s.heads)
                                            : std::string();
  return fmt::format("[{}, {}, {}]{}{}", s.B, s.N, s.D, extra, s.causal ? " causal" : "");
}

int64_t bias_elems(const AftSize& s) {
  if (s.variant == "full" || s.variant == "local") return s.N * s.N;
  return s.variant == "conv" ? s.heads * s.size : 0;
}

// Keys per query the kernels touch element-wise (0: the GEMM form's, counted as FLOPs instead).
int64_t band_width(const AftSize& s) {
  if (s.variant == "local") return s.causal ? s.size : 2 * s.size - 1;
  return s.variant == "conv" ? s.size : 0;
}

OpCase op_case(const AftSize& s) {
  OpCase c;
  c.op = "aft";
  c.impl = s.variant;
  c.shape = shape_of(s);
  const double n = double(s.B) * double(s.N) * double(s.D);
  // Minimum traffic: read q, k, v (+ the bias), write y; backward: read q, k, v, dY, write dq, dk, dv (+ dw).
  c.forward_bytes = kF32 * (4 * n + double(bias_elems(s)));
  c.backward_bytes = kF32 * (7 * n + 2 * double(bias_elems(s)));
  if (s.variant == "full") {
    c.forward_flops = 4 * n * double(s.N);   // [N, N]·[N, 2D] per sample
    c.backward_flops = 8 * n * double(s.N);  // Aᵀ·G and Σ_b G·Xᵀ
  } else if (band_width(s) > 0) {
    c.forward_flops = 4 * n * double(band_width(s));
    c.backward_flops = 12 * n * double(band_width(s));
  }
  c.tokens = double(s.B) * double(s.N);
  c.make_inputs = [s](Device d) {
    const TensorOptions opt(DType::f32, d, true);
    std::vector<Tensor> in{randn({s.B, s.N, s.D}, opt), randn({s.B, s.N, s.variant == "conv" ? s.heads : s.D}, opt),
                           randn({s.B, s.N, s.D}, opt)};
    if (s.variant == "full" || s.variant == "local") in.push_back(randn({s.N, s.N}, opt));
    if (s.variant == "conv") in.push_back(randn({s.heads, s.size}, opt));
    return in;
  };
  c.forward = [s](const std::vector<Tensor>& in) {
    if (s.variant == "full") return aft_full(in[0], in[1], in[2], in[3], Tensor(), s.causal);
    if (s.variant == "local") return aft_local(in[0], in[1], in[2], in[3], s.size, Tensor(), s.causal);
    if (s.variant == "simple") return aft_simple(in[0], in[1], in[2], Tensor(), s.causal);
    return aft_conv(in[0], in[1], in[2], in[3], Tensor(), s.causal);
  };
  return c;
}

// The mixer (D -> D, mixing width D) on each device it is asked for, built once from one seed.
class MixerPerDevice {
 public:
  explicit MixerPerDevice(const AftSize& s) : s_(s) {}
  std::shared_ptr<nn::TokenMixer> on(Device d) {
    auto it = mixers_.find(d.str());
    if (it != mixers_.end()) return it->second;
    nn::MixerContext ctx;
    ctx.dim = s_.D, ctx.inner_dim = s_.D, ctx.num_heads = s_.heads, ctx.seq_len = s_.N, ctx.causal = s_.causal;
    std::map<std::string, std::string> given;
    if (s_.variant == "local") given["aft_window"] = std::to_string(s_.size);
    if (s_.variant == "conv") given["aft_conv_kernel"] = std::to_string(s_.size);
    const std::string name = "aft-" + s_.variant;
    ctx.options = nn::resolve_mixer_options(name, given);
    manual_seed(1);
    auto m = nn::make_mixer(name, ctx);
    m->to(d);
    return mixers_[d.str()] = m;
  }

 private:
  AftSize s_;
  std::map<std::string, std::shared_ptr<nn::TokenMixer>> mixers_;
};

OpCase mixer_case(const AftSize& s) {
  OpCase c;
  c.op = "aft_mixer";
  c.impl = s.variant;
  c.shape = shape_of(s);
  c.tokens = double(s.B) * double(s.N);
  c.report_forward_backward = true;
  c.report_peak_memory = true;
  c.make_inputs = [s](Device d) {
    return std::vector<Tensor>{randn({s.B, s.N, s.D}, TensorOptions(DType::f32, d, true))};
  };
  auto mixers = std::make_shared<MixerPerDevice>(s);
  c.forward = [mixers](const std::vector<Tensor>& in) { return mixers->on(in[0].device())->forward(in[0]); };
  return c;
}

}  // namespace

std::vector<OpCase> aft_op_cases(bool smoke) {
  std::vector<AftSize> sizes;
  if (smoke) {
    for (const char* v : {"full", "local", "simple", "conv"}) sizes.push_back({v, 2, 16, 8, true, 3, 2});
  } else {
    sizes = {{"full", 8, 1024, 256, true},
             {"local", 8, 1024, 256, true, 32},
             {"simple", 8, 1024, 256, true},
             {"conv", 64, 197, 192, false, 11, 192}};
  }
  std::vector<OpCase> cases;
  for (const AftSize& s : sizes) cases.push_back(op_case(s));
  for (const AftSize& s : sizes) cases.push_back(mixer_case(s));
  return cases;
}

}  // namespace mixgrad::bench
