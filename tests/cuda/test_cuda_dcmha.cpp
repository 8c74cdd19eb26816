// DCMHA on CUDA against the CPU reference, table-driven like test_cuda_ops.cpp: each case is one call of
// dcmha_attention or compose with its sizes and masking; the harness runs it on both devices from the same inputs
// and compares the output and the gradient of sum(out · w) for every input (failures name the worst element).
#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/compose.h"
#include "engine/cuda_backend.h"
#include "engine/mixgrad.h"
#include "kernels/cpu/compose.h"
#include "kernels/cuda/compose.h"
#include "nn/mixers/dcmha_mixer.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using namespace mixgrad::testing;

Device cuda_device() { return Device("cuda"); }

struct DcmhaCase {
  std::string name;
  int64_t B, H, N, d, R;
  std::vector<int32_t> lengths;
  bool causal = false;
  int64_t window = 0;
  bool with_static = false;
  int64_t chunk = 128;
  bool compose_only = false;  // the Compose op alone (stage post) on [B, H, N, N] scores
};

std::vector<DcmhaCase> cases() {
  return {
      {"global", 2, 4, 33, 16, 2, {}},
      {"global, chunk 8 (tail 1)", 2, 4, 33, 16, 2, {}, false, 0, false, 8},
      {"padded + static", 3, 2, 40, 8, 2, {40, 17, 1}, false, 0, true, 16},
      {"causal, chunk 7", 2, 3, 50, 8, 1, {}, true, 0, false, 7},
      {"causal window 5, padded", 2, 4, 64, 16, 2, {64, 30}, true, 5, true, 16},
      {"non-causal window 4", 1, 8, 45, 4, 3, {}, false, 4, false, 10},
      {"long row (N 700), one head", 1, 1, 700, 8, 2, {650}, false, 0, false, 128},
      {"32 heads", 1, 32, 24, 4, 2, {}, true, 0, true, 8},
      {"zero-length sample", 2, 2, 9, 4, 2, {9, 0}, false, 0, false, 4},
      {"compose pre/post op", 2, 5, 19, 1, 2, {19, 11}, true, 6, true, 0, true},
  };
}

Tensor normal(const Shape& s, double std, std::mt19937& gen) {
  std::normal_distribution<float> nd(0.f, float(std));
  std::vector<float> v(size_t(shape_numel(s)));
  for (float& x : v) x = nd(gen);
  return from_vector<float>(v, s);
}

struct Run {
  Tensor out;
  std::vector<Tensor> grads;
};

Run run_case(const DcmhaCase& c, const std::vector<Tensor>& host_inputs, const Tensor& w, Device dev) {
  std::vector<Tensor> in;
  for (const Tensor& t : host_inputs) {
    Tensor x = t.defined() ? t.to(dev).detach() : Tensor();
    if (x.defined()) x.requires_grad_();
    in.push_back(x);
  }
  const Tensor len =
      c.lengths.empty() ? Tensor() : from_vector<int32_t>(c.lengths, {c.B}, TensorOptions(DType::i32)).to(dev);
  Tensor out;
  if (c.compose_only) {
    const DcmhaMask m{len, c.causal, c.window};
    out = compose(compose(in[0], in[1], in[2], ComposeStage::pre, m), in[1], in[3], ComposeStage::post, m);
  } else {
    out = dcmha_attention(in[0], in[1], in[2], in[3], in[4], in[5], DcmhaMask{len, c.causal, c.window}, c.chunk);
  }
  sum(mul(out, w.to(dev))).backward();
  Run r{out.detach().to(kCPU), {}};
  for (const Tensor& x : in) r.grads.push_back(x.defined() ? x.grad().to(kCPU) : Tensor());
  return r;
}

}  // namespace

TEST_CASE("cuda: dcmha_attention and compose match the CPU, forward and every gradient", "[cuda][dcmha]") {
  uint32_t seed = 1;
  for (const DcmhaCase& c : cases()) {
    INFO("case " << c.name);
    std::mt19937 gen(seed++);
    std::vector<Tensor> in;
    const Tensor dyn = normal({4, c.B, c.N, 2 * c.R + 1, c.H}, 0.25, gen);
    const Tensor ws1 = c.with_static ? normal({c.H, c.H}, 0.3, gen) : Tensor();
    const Tensor ws2 = c.with_static ? normal({c.H, c.H}, 0.3, gen) : Tensor();
    Shape out_shape;
    if (c.compose_only) {
      in = {normal({c.B, c.H, c.N, c.N}, 1.0, gen), dyn, ws1, ws2};
      out_shape = {c.B, c.H, c.N, c.N};
    } else {
      const Shape s{c.B, c.H, c.N, c.d};
      in = {normal(s, 1.0, gen), normal(s, 1.0, gen), normal(s, 1.0, gen), dyn, ws1, ws2};
      out_shape = s;
    }
    const Tensor w = normal(out_shape, 1.0, gen);
    const Run cpu = run_case(c, in, w, kCPU), gpu = run_case(c, in, w, cuda_device());
    REQUIRE_CLOSE(all_close(gpu.out, cpu.out, tolerance(Compare::cpu_vs_cuda)));
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i].defined()) continue;
      INFO("gradient of input " << i);
      REQUIRE_CLOSE(all_close(gpu.grads[i], cpu.grads[i], tolerance(Compare::cpu_vs_cuda)));
    }
  }
}

// Kernel level, on one interior chunk (t0 > 0, s0 > 0, causal window, padded lengths, static matrix): outputs start
// as NaN (an element a kernel forgets to write shows up) and the gradient accumulators as random values (the kernels
// add to them), on both devices.
TEST_CASE("cuda: the compose and masked-softmax kernels equal the CPU kernels on an interior chunk", "[cuda][dcmha]") {
  std::mt19937 gen(99);
  kernels::ComposeChunk c;
  c.B = 2, c.H = 5, c.N = 40, c.R = 2, c.t0 = 12, c.tc = 9, c.s0 = 6, c.sc = 15, c.window = 7, c.causal = true;
  const Tensor len_cpu = from_vector<int32_t>({40, 16}, {2}, TensorOptions(DType::i32));
  const Tensor len_gpu = len_cpu.to(cuda_device());
  const Shape chunk{c.B, c.H, c.tc, c.sc};
  const Tensor a = normal(chunk, 1.0, gen), g = normal(chunk, 1.0, gen), dyn = normal({4, 2, 40, 5, 5}, 0.3, gen);
  const Tensor ws = normal({5, 5}, 0.3, gen), acc0 = normal({4, 2, 40, 5, 5}, 1.0, gen),
               dws0 = normal({5, 5}, 1.0, gen);
  const cudaStream_t stream = cuda::stream(cuda_device());
  for (kernels::ComposeStage stage : {kernels::ComposeStage::pre, kernels::ComposeStage::post}) {
    INFO("stage " << int(stage));
    // CPU.
    Tensor out_c = full(chunk, NAN), da_c = full(chunk, NAN), ddyn_c = acc0.clone(), dws_c = dws0.clone();
    kernels::ComposeChunk cc = c;
    cc.lengths = len_cpu.data<int32_t>();
    kernels::cpu::compose_forward<float>(out_c.data<float>(), a.data<float>(), dyn.data<float>(), ws.data<float>(), cc,
                                         stage);
    kernels::cpu::compose_backward<float>(da_c.data<float>(), ddyn_c.data<float>(), dws_c.data<float>(),
                                          g.data<float>(), a.data<float>(), dyn.data<float>(), ws.data<float>(), cc,
                                          stage, nullptr);
    // CUDA.
    const Device d = cuda_device();
    const Tensor a_g = a.to(d), g_g = g.to(d), dyn_g = dyn.to(d), ws_g = ws.to(d);
    Tensor out_g = full(chunk, NAN).to(d), da_g = full(chunk, NAN).to(d), ddyn_g = acc0.to(d), dws_g = dws0.to(d);
    kernels::ComposeChunk cg = c;
    cg.lengths = len_gpu.data<int32_t>();
    Tensor work = empty({int64_t(kernels::cuda::compose_backward_workspace_bytes(cg, true) / 4 + 1)},
                        TensorOptions(DType::f32, d));
    kernels::cuda::compose_forward(out_g.data<float>(), a_g.data<float>(), dyn_g.data<float>(), ws_g.data<float>(), cg,
                                   stage, stream);
    kernels::cuda::compose_backward(da_g.data<float>(), ddyn_g.data<float>(), dws_g.data<float>(), g_g.data<float>(),
                                    a_g.data<float>(), dyn_g.data<float>(), ws_g.data<float>(), cg, stage,
                                    work.raw_data(), stream);
    REQUIRE_CLOSE(all_close(out_g, out_c, tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(all_close(da_g, da_c, tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(all_close(ddyn_g, ddyn_c, tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(all_close(dws_g, dws_c, tolerance(Compare::cpu_vs_cuda)));
  }
  // The masked softmax and its backward (explicit D).
  Tensor p_c = full(chunk, NAN), dx_c = full(chunk, NAN);
  kernels::ComposeChunk cc = c;
  cc.lengths = len_cpu.data<int32_t>();
  kernels::cpu::masked_softmax_forward<float>(p_c.data<float>(), a.data<float>(), cc);
  kernels::cpu::masked_softmax_backward<float>(dx_c.data<float>(), p_c.data<float>(), g.data<float>(), cc);
  Tensor p_g = full(chunk, NAN).to(cuda_device()), dx_g = full(chunk, NAN).to(cuda_device());
  kernels::ComposeChunk cg = c;
  cg.lengths = len_gpu.data<int32_t>();
  const Tensor a_g = a.to(cuda_device()), g_g = g.to(cuda_device());
  kernels::cuda::masked_softmax_forward(p_g.data<float>(), a_g.data<float>(), cg, stream);
  kernels::cuda::masked_softmax_backward(dx_g.data<float>(), p_g.data<float>(), g_g.data<float>(), cg, stream);
  REQUIRE_CLOSE(all_close(p_g, p_c, tolerance(Compare::cpu_vs_cuda)));
  REQUIRE_CLOSE(all_close(dx_g, dx_c, tolerance(Compare::cpu_vs_cuda)));
}

TEST_CASE("cuda: dcmha_attention is deterministic (two runs bit-identical)", "[cuda][dcmha]") {
  std::mt19937 gen(77);
  const DcmhaCase c{"x", 2, 4, 40, 8, 2, {40, 21}, true, 9, true, 8};
  const std::vector<Tensor> in = {normal({2, 4, 40, 8}, 1.0, gen), normal({2, 4, 40, 8}, 1.0, gen),
                                  normal({2, 4, 40, 8}, 1.0, gen), normal({4, 2, 40, 5, 4}, 0.4, gen),
                                  normal({4, 4}, 0.3, gen),        normal({4, 4}, 0.3, gen)};
  const Tensor w = normal({2, 4, 40, 8}, 1.0, gen);
  const Run a = run_case(c, in, w, cuda_device()), b = run_case(c, in, w, cuda_device());
  REQUIRE_CLOSE(bit_equal(a.out, b.out));
  for (size_t i = 0; i < in.size(); ++i) REQUIRE_CLOSE(bit_equal(a.grads[i], b.grads[i]));
}

TEST_CASE("cuda: the dcmha mixer with a local causal layer matches the CPU", "[cuda][dcmha]") {
  nn::MixerContext ctx;
  ctx.dim = 16, ctx.inner_dim = 24, ctx.num_heads = 4, ctx.seq_len = 30, ctx.causal = true;
  ctx.layer_index = 0, ctx.num_layers = 2;
  ctx.options =
      nn::resolve_mixer_options("dcmha", {{"dcmha_window", "7"}, {"dcmha_chunk", "8"}, {"dcmha_static", "true"}});
  manual_seed(5);
  auto cpu = std::make_shared<nn::DcmhaMixer>(ctx);
  auto gpu = std::make_shared<nn::DcmhaMixer>(ctx);
  gpu->load_state_dict(cpu->state_dict());
  gpu->to(cuda_device());
  cpu->eval(), gpu->eval();
  Tensor x = randn({2, 30, 16});
  x.requires_grad_();
  Tensor xg = x.detach().to(cuda_device());
  xg.requires_grad_();
  const Tensor len = from_vector<int32_t>({30, 13}, {2}, TensorOptions(DType::i32));
  const Tensor g = randn({2, 30, 16});
  const Tensor yc = cpu->forward(x, len), yg = gpu->forward(xg, len.to(cuda_device()));
  sum(mul(yc, g)).backward();
  sum(mul(yg, g.to(cuda_device()))).backward();
  REQUIRE_CLOSE(all_close(yg, yc, tolerance(Compare::cpu_vs_cuda)));
  REQUIRE_CLOSE(all_close(xg.grad(), x.grad(), tolerance(Compare::cpu_vs_cuda)));
  const auto pc = cpu->named_parameters(), pg = gpu->named_parameters();
  for (size_t i = 0; i < pc.size(); ++i) {
    INFO("parameter " << pc[i].first);
    REQUIRE_CLOSE(all_close(pg[i].second.grad(), pc[i].second.grad(), tolerance(Compare::cpu_vs_cuda)));
  }
}

TEST_CASE("cuda: dcmha errors name the problem", "[cuda][dcmha]") {
  const Tensor q = randn({1, 2, 4, 3}).to(cuda_device());
  const Tensor dyn = randn({4, 1, 4, 5, 2}).to(cuda_device());
  CHECK_THROWS_WITH(dcmha_attention(q, q, q, dyn.to(kCPU), Tensor(), Tensor()), Catch::Contains("dcmha_attention"));
  CHECK_THROWS_WITH(dcmha_attention(q, q, q, dyn, Tensor(), Tensor(),
                                    DcmhaMask{from_vector<int32_t>({4}, {1}, TensorOptions(DType::i32)), false, 0}),
                    Catch::Contains("lengths is on"));
}
