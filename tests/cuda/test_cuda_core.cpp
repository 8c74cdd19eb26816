// CUDA core behaviour: device copies and casts, item(), the allocator's counters in a training loop, device and
// dtype errors, and the fused optimiser primitives (AdamW, SGD, clipping) against the CPU.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "engine/optim_ops.h"
#include "nn/optim/optimizer.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using namespace mixgrad::testing;

Device cuda_device() { return Device("cuda"); }

Tensor host_normal(const Shape& shape, std::mt19937& gen, float scale = 1.f) {
  std::normal_distribution<float> normal(0.f, scale);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = normal(gen);
  return from_vector<float>(v, shape);
}

// The message of the mixgrad::Error that `f` throws ("" when it throws nothing; other exceptions propagate).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Copies of `shapes` random parameters on the CPU and on CUDA (same values), both requiring grad.
struct ParamPair {
  std::vector<Tensor> cpu, cuda;
};
ParamPair make_params(const std::vector<Shape>& shapes, std::mt19937& gen) {
  ParamPair p;
  for (const Shape& s : shapes) {
    Tensor c = host_normal(s, gen);
    Tensor g = c.to(cuda_device());
    c.requires_grad_();
    g.requires_grad_();
    p.cpu.push_back(c);
    p.cuda.push_back(g);
  }
  return p;
}

// Gives every parameter but `skip` the same random gradient on both devices.
void set_same_grads(ParamPair& p, std::mt19937& gen, size_t skip = SIZE_MAX) {
  for (size_t i = 0; i < p.cpu.size(); ++i) {
    if (i == skip) continue;
    const Tensor g = host_normal(p.cpu[i].shape(), gen);
    p.cpu[i].set_grad(g);
    p.cuda[i].set_grad(g.to(cuda_device()));
  }
}

void require_params_close(const ParamPair& p, const std::string& what) {
  for (size_t i = 0; i < p.cpu.size(); ++i) {
    INFO(what << ": parameter " << i << " " << shape_str(p.cpu[i].shape()));
    REQUIRE(p.cuda[i].device() == cuda_device());
    REQUIRE_CLOSE(all_close(p.cuda[i], p.cpu[i], tolerance(Compare::cpu_vs_cuda)));
  }
}

void require_state_close(const nn::NamedTensors& cuda_state, const nn::NamedTensors& cpu_state) {
  REQUIRE(cuda_state.size() == cpu_state.size());
  for (size_t i = 0; i < cpu_state.size(); ++i) {
    INFO("optimizer state " << cpu_state[i].first);
    REQUIRE(cuda_state[i].first == cpu_state[i].first);
    if (is_floating(cpu_state[i].second.dtype()))
      REQUIRE_CLOSE(all_close(cuda_state[i].second, cpu_state[i].second, tolerance(Compare::cpu_vs_cuda)));
    else
      REQUIRE_CLOSE(bit_equal(cuda_state[i].second, cpu_state[i].second));
  }
}

}  // namespace

TEST_CASE("CUDA: to(device) round trips are bit-exact for every dtype", "[cuda][core]") {
  const Device cuda = cuda_device();
  std::mt19937 gen(1);
  for (const Shape& s : std::vector<Shape>{{0}, {1}, {}, {1027}, {3, 5, 7}}) {
    INFO("shape " << shape_str(s));
    const Tensor f32 = host_normal(s, gen);
    std::vector<Tensor> hosts = {f32, f32.to(DType::f64), (f32 * 100.0).to(DType::i32), (f32 * 1e6).to(DType::i64),
                                 (f32 * 0.0 + 7.0).to(DType::u8)};
    for (const Tensor& h : hosts) {
      INFO("dtype " << dtype_name(h.dtype()));
      const Tensor d = h.to(cuda);
      REQUIRE(d.device() == cuda);
      REQUIRE(d.dtype() == h.dtype());
      REQUIRE(d.shape() == h.shape());
      const Tensor back = d.to(kCPU);
      REQUIRE(back.device() == kCPU);
      REQUIRE_CLOSE(bit_equal(back, h));
      // Already there: the same tensor, no copy.
      REQUIRE(d.to(cuda).same_storage(d));
      // clone on CUDA is a deep copy with the same bits.
      const Tensor c = d.clone();
      REQUIRE(c.device() == cuda);
      if (h.numel() > 0) REQUIRE_FALSE(c.same_storage(d));
      REQUIRE_CLOSE(bit_equal(c, h));
    }
  }
  // A view with an offset into its storage copies only its own elements.
  const Tensor x = host_normal({9, 13}, gen);
  REQUIRE_CLOSE(bit_equal(x.slice0(2, 3).to(cuda).to(kCPU), x.slice0(2, 3)));
  REQUIRE_CLOSE(bit_equal(x.to(cuda).slice0(4, 5).to(kCPU), x.slice0(4, 5)));
}

TEST_CASE("CUDA: dtype casts on the device match the CPU", "[cuda][core]") {
  const Device cuda = cuda_device();
  std::mt19937 gen(2);
  std::uniform_real_distribution<float> u(0.f, 250.f);
  std::vector<float> v(1031);
  for (auto& x : v) x = u(gen);
  const Tensor h = from_vector<float>(v, {1031});
  const Tensor d = h.to(cuda);
  for (DType t : {DType::i32, DType::i64, DType::u8}) {
    INFO("to " << dtype_name(t));
    const Tensor dc = d.to(t);
    REQUIRE(dc.device() == cuda);
    REQUIRE_CLOSE(bit_equal(dc, h.to(t)));
    REQUIRE_CLOSE(bit_equal(dc.to(DType::f32), h.to(t).to(DType::f32)));
  }
}

TEST_CASE("CUDA: factories and in-place fills match the CPU", "[cuda][core]") {
  const Device cuda = cuda_device();
  REQUIRE_CLOSE(bit_equal(full({1027}, 1.5, TensorOptions(DType::f32, cuda)), full({1027}, 1.5)));
  REQUIRE_CLOSE(bit_equal(zeros({3, 7}, TensorOptions(DType::i64, cuda)), zeros({3, 7}, TensorOptions(DType::i64))));
  REQUIRE_CLOSE(bit_equal(ones({5}, TensorOptions(DType::u8, cuda)), ones({5}, TensorOptions(DType::u8))));
  REQUIRE_CLOSE(bit_equal(arange(0, 10, 0.5, TensorOptions(DType::f32, cuda)), arange(0, 10, 0.5)));
  Tensor t = empty({33}, TensorOptions(DType::i32, cuda));
  t.fill_(-4);
  REQUIRE_CLOSE(bit_equal(t, full({33}, -4, TensorOptions(DType::i32))));
  // copy_ across devices, both directions.
  std::mt19937 gen(3);
  const Tensor src = host_normal({4, 9}, gen);
  Tensor dst = zeros({4, 9}, TensorOptions(DType::f32, cuda));
  dst.copy_(src);
  REQUIRE_CLOSE(bit_equal(dst, src));
  Tensor back = zeros({4, 9});
  back.copy_(dst);
  REQUIRE_CLOSE(bit_equal(back, src));
}

TEST_CASE("CUDA: item() reads one element back to the host", "[cuda][core]") {
  const Device cuda = cuda_device();
  REQUIRE(scalar_tensor(3.25, cuda).item() == 3.25);
  REQUIRE(full({1, 1}, -2.5, TensorOptions(DType::f32, cuda)).item() == -2.5);
  REQUIRE(full({1}, 123456789, TensorOptions(DType::i64, cuda)).item() == 123456789.0);
  std::mt19937 gen(4);
  const Tensor x = host_normal({1000}, gen);
  const double cpu = sum(x).item(), gpu = sum(x.to(cuda)).item();
  REQUIRE(std::abs(gpu - cpu) <= 1e-5 + 1e-4 * std::abs(cpu));
  REQUIRE(argmax(x.to(cuda), 0).item() == argmax(x, 0).item());
  REQUIRE_THROWS_AS(zeros({2}, TensorOptions(DType::f32, cuda)).item(), Error);
}

TEST_CASE("CUDA: to(device) is differentiable in both directions", "[cuda][core]") {
  const Device cuda = cuda_device();
  std::mt19937 gen(5);
  Tensor x = host_normal({6, 7}, gen);
  x.requires_grad_();
  const Tensor y = x.to(cuda) * 3.0;
  REQUIRE(y.device() == cuda);
  sum(y.to(kCPU)).backward();
  REQUIRE(x.grad().defined());
  REQUIRE(x.grad().device() == kCPU);
  REQUIRE_CLOSE(bit_equal(x.grad(), full({6, 7}, 3.0)));
}

TEST_CASE("CUDA: bytes in use return to baseline and the pool stops growing in a steady loop", "[cuda][memory]") {
  const Device cuda = cuda_device();
  std::mt19937 gen(6);
  std::uniform_int_distribution<int64_t> cls(0, 9);
  std::vector<int64_t> labels(64);
  for (auto& l : labels) l = cls(gen);
  const Tensor x = host_normal({64, 33}, gen).to(cuda);
  const Tensor target = from_vector<int64_t>(labels, {64}).to(cuda);
  std::vector<Tensor> params = {host_normal({128, 33}, gen, 0.1f).to(cuda), zeros({128}, TensorOptions(DType::f32, cuda)),
                                host_normal({10, 128}, gen, 0.1f).to(cuda), zeros({10}, TensorOptions(DType::f32, cuda))};
  for (Tensor& p : params) p.requires_grad_();
  SGDHyper sgd;
  sgd.lr = 0.05;

  synchronize(cuda);
  const int64_t baseline = memory_stats(cuda).bytes_in_use;
  int64_t reserved_after_warmup = 0;
  for (int it = 0; it < 100; ++it) {
    {
      const Tensor h = relu(linear(x, params[0], params[1]));
      const Tensor loss = cross_entropy(linear(h, params[2], params[3]), target);
      loss.backward();
      REQUIRE(std::isfinite(loss.item()));
      NoGradGuard ng;
      for (Tensor& p : params) {
        REQUIRE(p.grad().defined());
        sgd_step_(p, p.grad(), Tensor(), sgd, it == 0);
        p.zero_grad();
      }
    }
    synchronize(cuda);
    const MemoryStats s = memory_stats(cuda);
    INFO("iteration " << it << ": " << s.bytes_in_use << " bytes in use, baseline " << baseline);
    REQUIRE(s.bytes_in_use == baseline);
    REQUIRE(autograd::tape_size() == 0);
    if (it == 4) reserved_after_warmup = s.reserved_bytes;
    if (it > 4) {
      INFO("reserved " << s.reserved_bytes << " bytes, after warm-up " << reserved_after_warmup);
      REQUIRE(s.reserved_bytes <= reserved_after_warmup);
    }
  }
  REQUIRE(reserved_after_warmup >= baseline);
}

TEST_CASE("CUDA: the allocator counts exactly the bytes of live tensors", "[cuda][memory]") {
  const Device cuda = cuda_device();
  synchronize(cuda);
  const MemoryStats before = memory_stats(cuda);
  {
    const Tensor t = empty({1 << 18}, TensorOptions(DType::f32, cuda));
    const MemoryStats during = memory_stats(cuda);
    REQUIRE(during.bytes_in_use == before.bytes_in_use + (int64_t{1} << 20));
    REQUIRE(during.peak_bytes >= during.bytes_in_use);
    REQUIRE(during.allocations > before.allocations);
    REQUIRE(during.reserved_bytes >= during.bytes_in_use);
  }
  REQUIRE(memory_stats(cuda).bytes_in_use == before.bytes_in_use);
  reset_peak_memory(cuda);
  REQUIRE(memory_stats(cuda).peak_bytes == memory_stats(cuda).bytes_in_use);
}

TEST_CASE("CUDA: mixing CPU and CUDA tensors throws mixgrad::Error naming both devices", "[cuda][errors]") {
  const Device cuda = cuda_device();
  const Tensor c = ones({3, 3}), g = ones({3, 3}, TensorOptions(DType::f32, cuda));
  const Tensor mask = zeros({3, 3}, TensorOptions(DType::u8));
  const Tensor idx = zeros({3}, TensorOptions(DType::i64));
  const std::vector<std::pair<std::string, std::function<void()>>> calls = {
      {"add", [&] { add(c, g); }},
      {"mul", [&] { mul(g, c); }},
      {"matmul", [&] { matmul(c, g); }},
      {"linear", [&] { linear(g, c); }},
      {"cat", [&] { cat({g, c}, 0); }},
      {"where", [&] { where(mask, g, g); }},
      {"layer_norm", [&] { layer_norm(g, {3}, ones({3})); }},
      {"embedding", [&] { embedding(g, idx); }},
      {"cross_entropy", [&] { cross_entropy(g, idx); }},
  };
  for (const auto& [op, call] : calls) {
    INFO("op " << op);
    const std::string msg = error_of(call);
    INFO("message: " << msg);
    REQUIRE_FALSE(msg.empty());
    REQUIRE(contains(msg, op));
    REQUIRE(contains(msg, "cpu"));
    REQUIRE(contains(msg, "cuda:0"));
  }
  autograd::clear_tape();
}

TEST_CASE("CUDA: float64 tensors on CUDA are refused with a clear error", "[cuda][errors]") {
  const Device cuda = cuda_device();
  const Tensor x = rand_f64({4, 4}, -1.0, 1.0, false).to(cuda);  // storage may live there, the kernels are float32
  REQUIRE(x.device() == cuda);
  REQUIRE(x.dtype() == DType::f64);
  const std::vector<std::pair<std::string, std::function<void()>>> calls = {
      {"add", [&] { add(x, x); }},
      {"exp", [&] { exp(x); }},
      {"sum", [&] { sum(x, {0}); }},
      {"softmax", [&] { softmax(x, -1); }},
      {"layer_norm", [&] { layer_norm(x, {4}); }},
      {"matmul", [&] { matmul(x, x); }},
      {"randn", [&] { randn({3}, TensorOptions(DType::f64, cuda)); }},
  };
  for (const auto& [op, call] : calls) {
    INFO("op " << op);
    const std::string msg = error_of(call);
    INFO("message: " << msg);
    REQUIRE(contains(msg, op));
    REQUIRE(contains(msg, "float64"));
  }
}

TEST_CASE("CUDA vs CPU: AdamW one step and several steps", "[cuda][optim]") {
  std::mt19937 gen(21);
  const std::vector<Shape> shapes = {{33, 17}, {1}, {5003}, {7, 1, 3}, {0, 4}, {129}};
  ParamPair p = make_params(shapes, gen);
  const Tensor untouched_initial = p.cpu[5].detach().clone();
  AdamWHyper h;
  h.lr = 1e-2;
  h.weight_decay = 0.1;
  nn::AdamW opt_cpu(p.cpu, h), opt_cuda(p.cuda, h);
  for (int step = 1; step <= 6; ++step) {
    INFO("step " << step);
    set_same_grads(p, gen, /*skip=*/5);  // the last parameter never has a gradient: AdamW leaves it alone
    opt_cpu.step();
    opt_cuda.step();
    require_params_close(p, "AdamW");
    require_state_close(opt_cuda.state(), opt_cpu.state());
  }
  REQUIRE_CLOSE(bit_equal(p.cuda[5], untouched_initial));
  REQUIRE_CLOSE(bit_equal(p.cpu[5], untouched_initial));
}

TEST_CASE("CUDA vs CPU: adamw_step_ with non-zero moments at a late step", "[cuda][optim]") {
  const Device cuda = cuda_device();
  std::mt19937 gen(22);
  ParamPair p = make_params({{257, 3}, {1025}, {1}}, gen);
  set_same_grads(p, gen);
  std::vector<Tensor> m_cpu, v_cpu, m_cuda, v_cuda, g_cpu, g_cuda;
  for (size_t i = 0; i < p.cpu.size(); ++i) {
    const Tensor m = host_normal(p.cpu[i].shape(), gen, 0.1f);
    const Tensor v = m * m + 0.01;  // second moments are non-negative
    m_cpu.push_back(m.clone());
    v_cpu.push_back(v.clone());
    m_cuda.push_back(m.to(cuda));
    v_cuda.push_back(v.to(cuda));
    g_cpu.push_back(p.cpu[i].grad());
    g_cuda.push_back(p.cuda[i].grad());
  }
  AdamWHyper h;
  h.lr = 3e-3;
  h.beta1 = 0.8;
  h.beta2 = 0.99;
  h.eps = 1e-6;
  h.weight_decay = 0.05;
  {
    NoGradGuard ng;
    adamw_step_(p.cpu, g_cpu, m_cpu, v_cpu, h, 10);
    adamw_step_(p.cuda, g_cuda, m_cuda, v_cuda, h, 10);
  }
  require_params_close(p, "adamw_step_");
  for (size_t i = 0; i < p.cpu.size(); ++i) {
    INFO("moments of parameter " << i);
    REQUIRE_CLOSE(all_close(m_cuda[i], m_cpu[i], tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(all_close(v_cuda[i], v_cpu[i], tolerance(Compare::cpu_vs_cuda)));
  }
}

TEST_CASE("CUDA vs CPU: SGD plain, with momentum and dampening, and Nesterov", "[cuda][optim]") {
  struct Config {
    const char* name;
    SGDHyper h;
  };
  std::vector<Config> configs(3);
  configs[0] = {"plain", {}};
  configs[0].h.lr = 0.1;
  configs[1] = {"momentum + dampening + weight decay", {}};
  configs[1].h.lr = 0.05;
  configs[1].h.momentum = 0.9;
  configs[1].h.dampening = 0.1;
  configs[1].h.weight_decay = 0.01;
  configs[2] = {"nesterov + weight decay", {}};
  configs[2].h.lr = 0.05;
  configs[2].h.momentum = 0.9;
  configs[2].h.nesterov = true;
  configs[2].h.weight_decay = 0.01;
  uint32_t seed = 30;
  for (const Config& c : configs) {
    INFO("SGD " << c.name);
    std::mt19937 gen(seed++);
    ParamPair p = make_params({{33, 17}, {1}, {5003}, {0, 2}, {65, 65}}, gen);
    nn::SGD opt_cpu(p.cpu, c.h), opt_cuda(p.cuda, c.h);
    for (int step = 1; step <= 4; ++step) {
      INFO("step " << step);
      set_same_grads(p, gen);
      opt_cpu.step();
      opt_cuda.step();
      require_params_close(p, "SGD");
      require_state_close(opt_cuda.state(), opt_cpu.state());
    }
  }
}

TEST_CASE("CUDA vs CPU: clip_grad_norm gives the same norm and scaled gradients", "[cuda][optim]") {
  const Device cuda = cuda_device();
  for (double max_norm : {0.5, 1e6}) {
    INFO("max_norm " << max_norm);
    std::mt19937 gen(40);
    ParamPair p = make_params({{33, 17}, {1}, {5003}, {0, 3}, {7, 129}}, gen);
    set_same_grads(p, gen);
    std::vector<Tensor> before;
    for (const Tensor& t : p.cpu) before.push_back(t.grad().clone());
    const Tensor gn_cpu = global_norm(before);
    std::vector<Tensor> grads_cuda;
    for (const Tensor& t : p.cuda) grads_cuda.push_back(t.grad());
    const Tensor gn_cuda = global_norm(grads_cuda);
    REQUIRE(gn_cuda.device() == cuda);
    REQUIRE_CLOSE(all_close(gn_cuda, gn_cpu, tolerance(Compare::cpu_vs_cuda)));

    const Tensor norm_cpu = nn::clip_grad_norm(p.cpu, max_norm);
    const Tensor norm_cuda = nn::clip_grad_norm(p.cuda, max_norm);
    REQUIRE(norm_cuda.device() == cuda);
    REQUIRE(norm_cuda.numel() == 1);
    REQUIRE_CLOSE(all_close(norm_cuda, norm_cpu, tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(all_close(norm_cpu, gn_cpu, tolerance(Compare::forward_f32)));
    const double norm = norm_cpu.item();
    REQUIRE(norm > 1.0);  // ~sqrt(6000) for unit normals
    for (size_t i = 0; i < p.cpu.size(); ++i) {
      INFO("gradient " << i);
      REQUIRE_CLOSE(all_close(p.cuda[i].grad(), p.cpu[i].grad(), tolerance(Compare::cpu_vs_cuda)));
      // Clipped to max_norm when above it, unchanged otherwise.
      const double scale = max_norm < norm ? max_norm / norm : 1.0;
      REQUIRE_CLOSE(all_close(p.cuda[i].grad(), before[i] * scale, tolerance(Compare::cpu_vs_cuda)));
    }
    std::vector<Tensor> after;
    for (const Tensor& t : p.cuda) after.push_back(t.grad());
    REQUIRE(std::abs(global_norm(after).item() - std::min(norm, max_norm)) <= 1e-4 * std::min(norm, max_norm));
  }
}
