// DCMHA bench cases: Compose alone and the dcmha mixer's forward + backward.
#include "apps/bench/dcmha_cases.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "engine/compose.h"
#include "nn/mixers/dcmha_mixer.h"

namespace mixgrad::bench {
namespace {

constexpr double kF32 = 4.0;
constexpr int64_t kRank = 2;

Tensor param(const Shape& shape, Device d, double std = 1.0) {
  Tensor t = mul_scalar(randn(shape, TensorOptions(DType::f32, d)), std);
  t.requires_grad_();
  return t;
}

OpCase compose_case(int64_t B, int64_t H, int64_t N) {
  OpCase c;
  c.op = "compose";
  c.shape = fmt::format("[{}, {}, {}, {}] R={}", B, H, N, N, kRank);
  const double scores = double(B) * double(H) * double(N) * double(N);
  const double side = double(B) * double(N) * double(2 * kRank + 1) * double(H);  // one slot's weights
  c.forward_bytes = kF32 * (2 * scores + 2 * side);   // read a, the stage's two slots; write out
  c.backward_bytes = kF32 * (3 * scores + 6 * side);  // read g, a, the two slots; write da, += the two slot grads
  c.make_inputs = [=](Device d) {
    return std::vector<Tensor>{param({B, H, N, N}, d), param({4, B, N, 2 * kRank + 1, H}, d, 0.1)};
  };
  c.forward = [](const std::vector<Tensor>& in) { return compose(in[0], in[1], Tensor(), ComposeStage::post); };
  return c;
}

struct MixerSize {
  int64_t B, N, D, H;
  bool causal_local;
};

// One mixer per device (the forward only sees the inputs), built on first use with a fixed seed.
std::shared_ptr<nn::DcmhaMixer> mixer_for(const MixerSize& s, Device d) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<nn::DcmhaMixer>> made;
  const std::lock_guard<std::mutex> lock(mu);
  const std::string key = fmt::format("{} {} {} {} {} {}", d.str(), s.B, s.N, s.D, s.H, s.causal_local);
  auto it = made.find(key);
  if (it != made.end()) return it->second;
  nn::MixerContext ctx;
  ctx.dim = s.D, ctx.num_heads = s.H, ctx.seq_len = s.N, ctx.causal = s.causal_local;
  ctx.options = nn::resolve_mixer_options("dcmha", {{"dcmha_layers", s.causal_local ? "L" : "G"}});
  manual_seed(1234);
  auto m = std::make_shared<nn::DcmhaMixer>(ctx);
  m->to(d);
  made[key] = m;
  return m;
}

OpCase mixer_case(const MixerSize& s) {
  OpCase c;
  c.op = "dcmha";
  c.impl = s.causal_local ? "local256-causal" : "global";
  c.shape = fmt::format("x [{}, {}, {}] H={}", s.B, s.N, s.D, s.H);
  const double B = double(s.B), N = double(s.N), D = double(s.D), H = double(s.H), C = 4 * H, R = double(kRank);
  const double keys = s.causal_local ? std::min(N, 256.0) : N;  // visible keys per query (roughly)
  const double fwd = 2 * B * N * D * (4 * D + 4 * C + 4 * H) + 2 * B * N * 4 * C * 2 * R * H + 4 * B * N * keys * D +
                     2 * 2 * (4 * R + 2) * H * B * N * keys;
  c.forward_flops = fwd;
  c.backward_flops = 2 * fwd;
  c.tokens = B * N;
  c.report_forward_backward = true;
  c.make_inputs = [s](Device d) { return std::vector<Tensor>{param({s.B, s.N, s.D}, d)}; };
  c.forward = [s](const std::vector<Tensor>& in) { return mixer_for(s, in[0].device())->forward(in[0]); };
  return c;
}

}  // namespace

std::vector<OpCase> dcmha_op_cases() {
  std::vector<OpCase> cases;
  OpCase cpu_compose = compose_case(1, 8, 512);
  cpu_compose.on_cuda = false;
  cases.push_back(cpu_compose);
  OpCase gpu_compose = compose_case(4, 16, 1024);
  gpu_compose.on_cpu = false;
  cases.push_back(gpu_compose);
  // The CPU mixer cases: a mid-size global layer, and the mini-ListOps LRA layer (batch 32, <= 250 tokens, d 64,
  // 4 heads; its window of 256 covers every key, so local = global there).
  for (const MixerSize& s : {MixerSize{2, 512, 256, 8, false}, MixerSize{32, 250, 64, 4, false}}) {
    OpCase cpu_mixer = mixer_case(s);
    cpu_mixer.on_cuda = false;
    cases.push_back(cpu_mixer);
  }
  for (bool local : {false, true}) {
    OpCase g = mixer_case({8, 2048, 1024, 16, local});
    g.on_cpu = false;
    cases.push_back(g);
  }
  return cases;
}

}  // namespace mixgrad::bench
