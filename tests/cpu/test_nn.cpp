// nn on the CPU: Module registration and dotted names, train/eval, dtype moves, Linear/Sequential, initialisers,
// SGD and AdamW against scalar PyTorch-formula references, the warm-up cosine schedule, clipping, optimiser state
// round trips, a tiny MLP that overfits one batch, and safetensors checkpoints (bit-exact, strict, corrupt files).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <string>
#include <random>
#include <vector>

#include "engine/mixgrad.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/optim/optimizer.h"
#include "nn/serialize.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using namespace mixgrad::nn;
using testing::all_close;
using testing::bit_equal;
using testing::Compare;
using testing::tolerance;
namespace fs = std::filesystem;

std::vector<double> as_doubles(const Tensor& t) { return t.detach().to(DType::f64).to_vector<double>(); }

// ---- modules made for these tests -------------------------------------------------------------------------------

// A residual-free block with a parameter, a buffer, a submodule with parameters and one without.
struct Block : Layer {
  explicit Block(int64_t d) : Layer("Block") {
    fc = register_module("fc", std::make_shared<Linear>(d, d));
    scale = register_parameter("scale", ones({d}));
    running = register_buffer("running", zeros({d}));
    drop = register_module("drop", std::make_shared<Dropout>(0.5));
  }
  Tensor forward(const Tensor& x) override { return mul(drop->forward(relu(fc->forward(x))), scale); }
  std::shared_ptr<Linear> fc;
  std::shared_ptr<Dropout> drop;
  Tensor scale, running;
};

struct Net : Layer {
  explicit Net(int64_t d) : Layer("Net") {
    blocks = register_module("blocks", std::make_shared<Sequential>());
    b0 = blocks->push_back(std::make_shared<Block>(d));
    b1 = blocks->push_back(std::make_shared<Block>(d));
    norm = register_module("norm", std::make_shared<LayerNorm>(d));
    head = register_module("head", std::make_shared<Linear>(d, 3));
    seen = register_buffer("seen", zeros({1}, DType::i64));
  }
  Tensor forward(const Tensor& x) override { return head->forward(norm->forward(blocks->forward(x))); }
  std::shared_ptr<Sequential> blocks;
  std::shared_ptr<Block> b0, b1;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<Linear> head;
  Tensor seen;
};

// Exposes registration so that tests can provoke the name checks.
struct Open : Module {
  Open() : Module("Open") {}
  using Module::register_buffer;
  using Module::register_module;
  using Module::register_parameter;
};

std::vector<std::string> names_of(const NamedTensors& nt) {
  std::vector<std::string> out;
  for (const auto& [n, t] : nt) out.push_back(n);
  return out;
}

TEST_CASE("Module registers parameters, buffers and submodules under dotted names in order", "[nn][module]") {
  manual_seed(1);
  Net net(4);
  const std::vector<std::string> want_params{"blocks.0.scale", "blocks.0.fc.weight", "blocks.0.fc.bias",
                                             "blocks.1.scale", "blocks.1.fc.weight", "blocks.1.fc.bias",
                                             "norm.weight",    "norm.bias",          "head.weight",
                                             "head.bias"};
  REQUIRE(names_of(net.named_parameters()) == want_params);
  REQUIRE(names_of(net.named_buffers()) == std::vector<std::string>{"seen", "blocks.0.running", "blocks.1.running"});
  std::vector<std::string> want_state = want_params;
  want_state.insert(want_state.end(), {"seen", "blocks.0.running", "blocks.1.running"});
  REQUIRE(names_of(net.state_dict()) == want_state);
  REQUIRE(net.named_parameters(false).empty());
  REQUIRE(names_of(net.b0->named_parameters(false)) == std::vector<std::string>{"scale"});
  REQUIRE(net.num_parameters() == 2 * (4 + 16 + 4) + 8 + 12 + 3);
  REQUIRE(net.parameters().size() == want_params.size());
  for (const Tensor& p : net.parameters()) {
    REQUIRE(p.requires_grad());
    REQUIRE(p.is_leaf());
  }
  for (const auto& [n, b] : net.named_buffers()) REQUIRE_FALSE(b.requires_grad());
  // The registered tensors are the members (same handles).
  REQUIRE(net.named_parameters()[8].second.impl_ptr() == net.head->weight.impl_ptr());
  REQUIRE(net.named_children().size() == 3);
  REQUIRE(net.named_children()[0].first == "blocks");
  REQUIRE_THAT(net.summary(), Catch::Contains("blocks.1.fc.weight") && Catch::Contains("[4, 4]") &&
                                  Catch::Contains(std::to_string(net.num_parameters())));
}

TEST_CASE("Module rejects duplicate, dotted and empty member names", "[nn][module][errors]") {
  Open m;
  m.register_parameter("w", zeros({2}));
  REQUIRE_THROWS_AS(m.register_parameter("w", zeros({2})), Error);
  REQUIRE_THROWS_WITH(m.register_parameter("w", zeros({2})), Catch::Contains("\"w\"") && Catch::Contains("already"));
  REQUIRE_THROWS_WITH(m.register_buffer("w", zeros({2})), Catch::Contains("already"));
  REQUIRE_THROWS_WITH(m.register_module("w", std::make_shared<Open>()), Catch::Contains("already"));
  REQUIRE_THROWS_WITH(m.register_parameter("a.b", zeros({2})), Catch::Contains("\"a.b\""));
  REQUIRE_THROWS_WITH(m.register_module("x.y", std::make_shared<Open>()), Catch::Contains("\"x.y\""));
  REQUIRE_THROWS_WITH(m.register_buffer("", zeros({2})), Catch::Contains("invalid member name"));
  REQUIRE_THROWS_WITH(m.register_parameter("u", Tensor()), Catch::Contains("undefined"));
  // Nothing half-registered after the failures.
  REQUIRE(names_of(m.named_parameters()) == std::vector<std::string>{"w"});
  REQUIRE(m.named_buffers().empty());
  REQUIRE(m.named_children().empty());
  // A buffer may be registered without gradient; a parameter with requires_grad = false stays frozen.
  Tensor& frozen = m.register_parameter("frozen", ones({3}), false);
  REQUIRE_FALSE(frozen.requires_grad());
  REQUIRE(m.num_parameters() == 5);
}

TEST_CASE("train/eval propagates to every submodule and switches Dropout", "[nn][module][dropout]") {
  manual_seed(2);
  Net net(8);
  REQUIRE(net.is_training());
  REQUIRE(net.b1->drop->is_training());
  net.eval();
  for (Module* m : {static_cast<Module*>(&net), static_cast<Module*>(net.blocks.get()), static_cast<Module*>(net.b0.get()),
                    static_cast<Module*>(net.b1->drop.get()), static_cast<Module*>(net.head.get())})
    REQUIRE_FALSE(m->is_training());
  Tensor x = randn({5, 8});
  REQUIRE_CLOSE(bit_equal(net.b0->drop->forward(x), x));
  REQUIRE_CLOSE(bit_equal(net(x), net(x)));  // deterministic in eval
  net.train();
  REQUIRE(net.b1->drop->is_training());
  Tensor d = net.b0->drop->forward(ones({1000}));
  const std::vector<float> dv = d.to_vector<float>();
  const auto zeros_count = std::count(dv.begin(), dv.end(), 0.0f);
  REQUIRE(zeros_count > 350);
  REQUIRE(zeros_count < 650);
  REQUIRE(std::count(dv.begin(), dv.end(), 2.0f) == 1000 - zeros_count);
  autograd::clear_tape();
}

TEST_CASE("Module::to(f64) converts in place: member handles see the new dtype", "[nn][module][dtype]") {
  manual_seed(3);
  Net net(4);
  Tensor held = net.head->weight;  // a handle kept outside the module
  const std::vector<double> before = as_doubles(held);
  net.to(DType::f64);
  REQUIRE(net.head->weight.dtype() == DType::f64);
  REQUIRE(held.dtype() == DType::f64);
  REQUIRE(held.to_vector<double>() == before);  // float32 -> float64 is exact
  for (const auto& [n, p] : net.named_parameters()) {
    INFO(n);
    REQUIRE(p.dtype() == DType::f64);
    REQUIRE(p.requires_grad());
    REQUIRE(p.is_leaf());
  }
  REQUIRE(net.b0->running.dtype() == DType::f64);
  REQUIRE(net.seen.dtype() == DType::i64);  // integer buffers keep their dtype
  net.eval();
  Tensor y = net(randn({2, 4}, DType::f64));
  REQUIRE(y.dtype() == DType::f64);
  sum(y).backward();
  REQUIRE(held.grad().dtype() == DType::f64);
  net.to(DType::f32);
  REQUIRE(held.dtype() == DType::f32);
  REQUIRE_FALSE(held.grad().defined());  // a dtype move drops gradients
  net.to(kCPU);                          // same device: nothing changes
  REQUIRE(held.dtype() == DType::f32);
}

TEST_CASE("zero_grad drops every parameter's gradient", "[nn][module]") {
  manual_seed(4);
  Net net(4);
  net.eval();
  sum(net(randn({3, 4}))).backward();
  REQUIRE(autograd::tape_size() == 0);
  for (const auto& [n, p] : net.named_parameters()) {
    INFO(n);
    REQUIRE(p.grad().defined());
    REQUIRE(p.grad().shape() == p.shape());
  }
  net.zero_grad();
  for (const auto& [n, p] : net.named_parameters()) REQUIRE_FALSE(p.grad().defined());
  // Gradients accumulate across backward calls until zeroed.
  Tensor x = randn({3, 4});
  sum(net(x)).backward();
  const std::vector<double> g1 = as_doubles(net.head->bias.grad());
  sum(net(x)).backward();
  const std::vector<double> g2 = as_doubles(net.head->bias.grad());
  for (size_t i = 0; i < g1.size(); ++i) REQUIRE(g2[i] == Approx(2 * g1[i]).epsilon(1e-6));
}

// ---- layers ---------------------------------------------------------------------------------------------------

TEST_CASE("Linear computes x·Wᵀ + b for any leading dims, with or without bias", "[nn][linear]") {
  manual_seed(5);
  for (bool has_bias : {true, false}) {
    Linear lin(5, 3, has_bias);
    REQUIRE(lin.weight.shape() == Shape{3, 5});
    REQUIRE(lin.bias.defined() == has_bias);
    REQUIRE(lin.named_parameters().size() == (has_bias ? 2u : 1u));
    Tensor x = randn({2, 4, 5});
    Tensor y = lin(x);
    REQUIRE(y.shape() == Shape{2, 4, 3});
    const std::vector<double> xv = as_doubles(x), wv = as_doubles(lin.weight);
    const std::vector<double> bv = has_bias ? as_doubles(lin.bias) : std::vector<double>(3, 0.0);
    std::vector<double> want(24);
    for (int r = 0; r < 8; ++r)
      for (int o = 0; o < 3; ++o) {
        double acc = bv[size_t(o)];
        for (int i = 0; i < 5; ++i) acc += xv[size_t(r * 5 + i)] * wv[size_t(o * 5 + i)];
        want[size_t(r * 3 + o)] = acc;
      }
    REQUIRE_CLOSE(all_close(y, from_vector<double>(want, {2, 4, 3}), tolerance(Compare::forward_f32)));
    REQUIRE_THROWS_WITH(lin(randn({2, 4})), Catch::Contains("Linear") && Catch::Contains("[2, 4]") &&
                                                 Catch::Contains("in_features 5"));
  }
  REQUIRE_THROWS_AS(Linear(0, 3), Error);
  autograd::clear_tape();
  // Gradients through the module's parameters, in float64.
  Linear lin(4, 3);
  lin.to(DType::f64);
  Tensor x = testing::rand_f64({2, 4});
  REQUIRE_CLOSE(testing::gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
                                   {x, lin.weight, lin.bias}));
}

TEST_CASE("Sequential chains layers and names them 0, 1, 2", "[nn][sequential]") {
  manual_seed(6);
  Sequential seq;
  auto l0 = seq.push_back(std::make_shared<Linear>(4, 8));
  seq.push_back(ReLU());
  auto l2 = seq.push_back(std::make_shared<Linear>(8, 2));
  REQUIRE(seq.size() == 3);
  REQUIRE(names_of(seq.named_parameters()) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  Tensor x = randn({3, 4});
  Tensor want = linear(relu(linear(x, l0->weight, l0->bias)), l2->weight, l2->bias);
  REQUIRE_CLOSE(bit_equal(seq(x), want));
  autograd::clear_tape();
}

TEST_CASE("initialisers: trunc_normal_ bounds and moments, linear_default_ bound 1/sqrt(fan_in)", "[nn][init]") {
  manual_seed(7);
  {
    Tensor t = empty({100000});
    init::trunc_normal_(t, 1.0, 0.0, -0.5, 0.5);
    const std::vector<double> v = as_doubles(t);
    double m = 0, s2 = 0;
    for (double x : v) {
      REQUIRE(x >= -0.5);
      REQUIRE(x <= 0.5);
      m += x;
    }
    m /= double(v.size());
    for (double x : v) s2 += (x - m) * (x - m);
    REQUIRE(m == Approx(0.0).margin(0.005));
    // Variance of N(0,1) truncated to [-1/2, 1/2]: 1 - 2·0.5·φ(0.5) / (2Φ(0.5) - 1) = 0.08057.
    REQUIRE(std::sqrt(s2 / double(v.size())) == Approx(0.28385).margin(0.004));
  }
  {
    Tensor t = empty({200, 100});
    init::trunc_normal_(t);  // std 0.02, cut at ±2 (absolute): practically untruncated
    const std::vector<double> v = as_doubles(t);
    double s2 = 0, mx = 0;
    for (double x : v) s2 += x * x, mx = std::max(mx, std::abs(x));
    REQUIRE(std::sqrt(s2 / double(v.size())) == Approx(0.02).margin(0.0005));
    REQUIRE(mx <= 2.0);
    Tensor shifted = empty({1000});
    init::trunc_normal_(shifted, 1.0, 3.0, 2.5, 3.5);
    for (double x : as_doubles(shifted)) REQUIRE((x >= 2.5 && x <= 3.5));
  }
  {
    Linear lin(50, 70);
    const double bound = 1.0 / std::sqrt(50.0);
    double mx = 0, m = 0;
    for (double x : as_doubles(lin.weight)) mx = std::max(mx, std::abs(x)), m += x;
    REQUIRE(mx <= bound);
    REQUIRE(mx > 0.95 * bound);  // 3500 uniform draws reach close to the edge
    REQUIRE(m / 3500.0 == Approx(0.0).margin(0.01));
    for (double x : as_doubles(lin.bias)) REQUIRE(std::abs(x) <= bound);
    Tensor w = empty({6, 2, 3, 3}), b = empty({6});  // conv-shaped: fan_in = 2·3·3
    init::linear_default_(w, b);
    for (double x : as_doubles(w)) REQUIRE(std::abs(x) <= 1.0 / std::sqrt(18.0));
    for (double x : as_doubles(b)) REQUIRE(std::abs(x) <= 1.0 / std::sqrt(18.0));
  }
  {
    Tensor p = empty({5}).requires_grad_();
    init::ones_(p);
    REQUIRE(as_doubles(p) == std::vector<double>(5, 1.0));
    init::zeros_(p);
    REQUIRE(as_doubles(p) == std::vector<double>(5, 0.0));
    init::uniform_(p, 2.0, 3.0);
    for (double x : as_doubles(p)) REQUIRE((x >= 2.0 && x < 3.0));
    REQUIRE_THROWS_AS(init::trunc_normal_(p, 1.0, 0.0, 1.0, -1.0), Error);
  }
  // Same seed, same initialisation.
  manual_seed(8);
  Linear a(6, 4);
  manual_seed(8);
  Linear b(6, 4);
  REQUIRE_CLOSE(bit_equal(a.weight, b.weight));
  REQUIRE_CLOSE(bit_equal(a.bias, b.bias));
}

// ---- optimisers -----------------------------------------------------------------------------------------------

// Deterministic, varying gradient value for parameter i, element j, step k.
double grad_value(size_t i, size_t j, int k) { return std::sin(1.3 * double(k) + 0.7 * double(j) + 2.1 * double(i)) + 0.1; }

std::vector<Tensor> make_params_f64(const std::vector<std::vector<double>>& init, const std::vector<Shape>& shapes) {
  std::vector<Tensor> ps;
  for (size_t i = 0; i < init.size(); ++i) ps.push_back(from_vector<double>(init[i], shapes[i]).requires_grad_());
  return ps;
}

void set_grads(const std::vector<Tensor>& ps, int k, size_t skip = SIZE_MAX) {
  for (size_t i = 0; i < ps.size(); ++i) {
    Tensor p = ps[i];
    if (i == skip) {
      p.zero_grad();
      continue;
    }
    std::vector<double> g(size_t(p.numel()));
    for (size_t j = 0; j < g.size(); ++j) g[j] = grad_value(i, j, k);
    p.set_grad(from_vector<double>(g, p.shape()));
  }
}

TEST_CASE("SGD matches PyTorch's formulas (plain, momentum, dampening, Nesterov, weight decay)", "[nn][optim][sgd]") {
  const std::vector<std::vector<double>> init{{0.5, -1.0, 2.0}, {0.1, 0.2, 0.3, 0.4}};
  const std::vector<Shape> shapes{{3}, {2, 2}};
  struct Case {
    double momentum, dampening, weight_decay;
    bool nesterov;
  };
  for (const Case& c : {Case{0, 0, 0, false}, Case{0.9, 0, 0, false}, Case{0.9, 0, 0, true}, Case{0.8, 0.3, 0.01, false},
                        Case{0, 0, 0.05, false}, Case{0.9, 0, 0.02, true}}) {
    INFO("momentum " << c.momentum << " dampening " << c.dampening << " wd " << c.weight_decay << " nesterov "
                     << c.nesterov);
    std::vector<Tensor> ps = make_params_f64(init, shapes);
    SGDHyper h;
    h.lr = 0.1, h.momentum = c.momentum, h.dampening = c.dampening, h.weight_decay = c.weight_decay,
    h.nesterov = c.nesterov;
    SGD opt(ps, h);
    std::vector<std::vector<double>> ref = init, buf(init.size());
    for (int k = 0; k < 6; ++k) {
      set_grads(ps, k);
      opt.step();
      for (size_t i = 0; i < ref.size(); ++i) {
        if (buf[i].empty() && c.momentum != 0) buf[i].assign(ref[i].size(), 0.0);
        for (size_t j = 0; j < ref[i].size(); ++j) {
          double g = grad_value(i, j, k) + c.weight_decay * ref[i][j];
          if (c.momentum != 0) {
            buf[i][j] = k == 0 ? g : c.momentum * buf[i][j] + (1 - c.dampening) * g;
            g = c.nesterov ? g + c.momentum * buf[i][j] : buf[i][j];
          }
          ref[i][j] -= 0.1 * g;
        }
      }
      for (size_t i = 0; i < ps.size(); ++i)
        REQUIRE_CLOSE(all_close(ps[i], from_vector<double>(ref[i], shapes[i]), tolerance(Compare::forward_f64)));
    }
    REQUIRE(opt.steps() == 6);
  }
  REQUIRE_THROWS_WITH(SGD({from_vector<double>({1}, {1}).requires_grad_()}, SGDHyper{0.1, 0, 0, 0, true}),
                      Catch::Contains("Nesterov"));
}

TEST_CASE("AdamW matches PyTorch's formulas over several steps (decoupled decay, lr changes, missing grads)",
          "[nn][optim][adamw]") {
  const std::vector<std::vector<double>> init{{0.5, -1.0, 2.0}, {0.1, 0.2, 0.3, 0.4}, {7.0, 8.0}};
  const std::vector<Shape> shapes{{3}, {2, 2}, {2}};
  std::vector<Tensor> ps = make_params_f64(init, shapes);
  AdamWHyper h;
  h.lr = 0.01, h.beta1 = 0.9, h.beta2 = 0.99, h.eps = 1e-8, h.weight_decay = 0.1;
  AdamW opt(ps, h);
  std::vector<std::vector<double>> ref = init, m(init.size()), v(init.size());
  for (size_t i = 0; i < init.size(); ++i) m[i].assign(init[i].size(), 0.0), v[i].assign(init[i].size(), 0.0);
  for (int k = 0; k < 8; ++k) {
    const double lr = k < 4 ? 0.01 : 0.003;
    opt.set_lr(lr);
    set_grads(ps, k, /*skip=*/2);  // parameter 2 never has a gradient
    opt.step();
    const int t = k + 1;
    const double bc1 = 1 - std::pow(h.beta1, t), bc2 = 1 - std::pow(h.beta2, t);
    for (size_t i = 0; i < 2; ++i)
      for (size_t j = 0; j < ref[i].size(); ++j) {
        const double g = grad_value(i, j, k);
        ref[i][j] *= 1 - lr * h.weight_decay;
        m[i][j] = h.beta1 * m[i][j] + (1 - h.beta1) * g;
        v[i][j] = h.beta2 * v[i][j] + (1 - h.beta2) * g * g;
        const double denom = std::sqrt(v[i][j]) / std::sqrt(bc2) + h.eps;
        ref[i][j] -= lr / bc1 * m[i][j] / denom;
      }
    for (size_t i = 0; i < ps.size(); ++i) {
      INFO("step " << t << " parameter " << i);
      REQUIRE_CLOSE(all_close(ps[i], from_vector<double>(ref[i], shapes[i]), tolerance(Compare::forward_f64)));
    }
  }
  REQUIRE(opt.steps() == 8);
  REQUIRE(as_doubles(ps[2]) == init[2]);  // untouched: no gradient, no decay
  // State names.
  REQUIRE(names_of(opt.state()) ==
          std::vector<std::string>{"step", "exp_avg.0", "exp_avg.1", "exp_avg.2", "exp_avg_sq.0", "exp_avg_sq.1",
                                   "exp_avg_sq.2"});
  REQUIRE_CLOSE(all_close(opt.state()[1].second, from_vector<double>(m[0], shapes[0]), tolerance(Compare::forward_f64)));
}

TEST_CASE("AdamW exempts flagged parameters from weight decay and nothing else", "[nn][optim][adamw]") {
  const std::vector<std::vector<double>> init{{0.5, -1.0, 2.0}, {0.1, 0.2, 0.3, 0.4}};
  const std::vector<Shape> shapes{{3}, {2, 2}};
  AdamWHyper h;
  h.lr = 0.01, h.beta1 = 0.9, h.beta2 = 0.99, h.eps = 1e-8, h.weight_decay = 0.1;
  std::vector<Tensor> ps = make_params_f64(init, shapes);
  AdamW opt(ps, h, {false, true});  // parameter 0 exempt
  std::vector<Tensor> all = make_params_f64(init, shapes), none = make_params_f64(init, shapes);
  AdamW opt_all(all, h);  // every parameter decayed
  AdamWHyper h0 = h;
  h0.weight_decay = 0;
  AdamW opt_none(none, h0);  // no decay at all
  for (int k = 0; k < 5; ++k) {
    for (auto* v : {&ps, &all, &none}) set_grads(*v, k);
    opt.step(), opt_all.step(), opt_none.step();
  }
  REQUIRE(as_doubles(ps[0]) == as_doubles(none[0]));  // exempt: exactly the update without decay
  REQUIRE(as_doubles(ps[1]) == as_doubles(all[1]));   // decayed: exactly the one-group update
  REQUIRE(as_doubles(ps[1]) != as_doubles(none[1]));
  REQUIRE(names_of(opt.state()) == names_of(opt_all.state()));  // same checkpoint layout
  CHECK_THROWS_WITH(AdamW(make_params_f64(init, shapes), h, {true}),
                    Catch::Contains("1 weight-decay flags for 2 parameters"));
}

TEST_CASE("AdamW on float32 parameters agrees with the float64 reference", "[nn][optim][adamw]") {
  Tensor p = from_vector<float>({1.0f, -2.0f, 0.25f}, {3}).requires_grad_();
  AdamWHyper h;  // defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 1e-2
  AdamW opt({p}, h);
  std::vector<double> ref{1.0, -2.0, 0.25}, m(3, 0.0), v(3, 0.0);
  for (int k = 0; k < 5; ++k) {
    std::vector<float> g(3);
    for (size_t j = 0; j < 3; ++j) g[j] = float(grad_value(0, j, k));
    p.set_grad(from_vector<float>(g, {3}));
    opt.step();
    const double bc1 = 1 - std::pow(0.9, k + 1), bc2 = 1 - std::pow(0.999, k + 1);
    for (size_t j = 0; j < 3; ++j) {
      ref[j] *= 1 - 1e-3 * 1e-2;
      m[j] = 0.9 * m[j] + 0.1 * double(g[j]);
      v[j] = 0.999 * v[j] + 0.001 * double(g[j]) * double(g[j]);
      ref[j] -= 1e-3 / bc1 * m[j] / (std::sqrt(v[j]) / std::sqrt(bc2) + 1e-8);
    }
  }
  REQUIRE_CLOSE(all_close(p, from_vector<double>(ref, {3}), tolerance(Compare::forward_f32)));
}

TEST_CASE("WarmupCosine: linear warm-up, cosine decay, held at min_lr", "[nn][optim][schedule]") {
  WarmupCosine s{1.0, 0.1, 10, 110};
  REQUIRE(s(0) == Approx(0.1));        // first warm-up step: base_lr · 1/warmup
  REQUIRE(s(4) == Approx(0.5));
  REQUIRE(s(9) == Approx(1.0));        // end of warm-up reaches base_lr
  REQUIRE(s(10) == Approx(1.0));       // decay starts at base_lr
  REQUIRE(s(35) == Approx(0.1 + 0.45 * (1 + std::cos(std::numbers::pi * 0.25))));
  REQUIRE(s(60) == Approx(0.55));      // half-way: midpoint of base and min
  REQUIRE(s(110) == Approx(0.1));      // end
  REQUIRE(s(500) == Approx(0.1));      // held after the end
  for (int64_t k = 10; k < 110; ++k) REQUIRE(s(k + 1) <= s(k));
  for (int64_t k = 0; k < 9; ++k) REQUIRE(s(k + 1) > s(k));
  WarmupCosine no_warmup{3e-4, 0.0, 0, 100};
  REQUIRE(no_warmup(0) == Approx(3e-4));
  REQUIRE(no_warmup(50) == Approx(1.5e-4));
  REQUIRE(no_warmup(100) == Approx(0.0).margin(1e-15));
}

TEST_CASE("LrSchedule: cosine is WarmupCosine; linear, rsqrt and constant after the same warm-up",
          "[nn][optim][schedule]") {
  using K = LrSchedule::Kind;
  const WarmupCosine wc{1.0, 0.1, 10, 110};
  const LrSchedule cos{K::cosine, 1.0, 0.1, 10, 110};
  for (int64_t k = 0; k < 200; ++k) REQUIRE(cos(k) == wc(k));
  const LrSchedule lin{K::linear, 1.0, 0.1, 10, 110}, rs{K::rsqrt, 2e-3, 0.0, 1000, 5000},
      cst{K::constant, 0.5, 0.0, 4, 100};
  for (const LrSchedule& s : {lin, cst}) {
    REQUIRE(s(0) == Approx(s.peak / double(s.warmup_steps)));
    REQUIRE(s(s.warmup_steps - 1) == Approx(s.peak));
  }
  REQUIRE(lin(10) == Approx(1.0));
  REQUIRE(lin(60) == Approx(0.55));  // half-way down to min_lr
  REQUIRE(lin(110) == Approx(0.1));
  REQUIRE(lin(400) == Approx(0.1));  // held after the end
  REQUIRE(cst(50) == 0.5);
  // LRA's rsqrt: const · min(1, step/warmup) · rsqrt(max(step, warmup)) with step = s + 1 and peak = const/√warmup.
  const double c = 2e-3 * std::sqrt(1000.0);
  for (int64_t step : {1, 500, 1000, 1001, 4000}) {
    const double lra = c * std::min(1.0, double(step) / 1000.0) / std::sqrt(std::max(double(step), 1000.0));
    REQUIRE(rs(step - 1) == Approx(lra).epsilon(1e-12));
  }
  CHECK(LrSchedule::parse("rsqrt") == K::rsqrt);
  CHECK(std::string(LrSchedule::name(K::linear)) == "linear");
  CHECK_THROWS_WITH(LrSchedule::parse("step"), Catch::Contains("unknown learning-rate schedule \"step\""));
}

TEST_CASE("clip_grad_norm returns the pre-clip norm and scales gradients to max_norm", "[nn][optim][clip]") {
  Tensor a = zeros({2}).requires_grad_(), b = zeros({1}).requires_grad_(), none = zeros({3}).requires_grad_();
  a.set_grad(from_vector<float>({3, 4}, {2}));
  b.set_grad(from_vector<float>({12}, {1}));
  Tensor n = clip_grad_norm({a, none, b}, 1.3);  // `none` has no gradient and is ignored
  REQUIRE(n.dim() == 0);
  REQUIRE(n.item() == Approx(13.0).epsilon(1e-6));
  REQUIRE(a.grad().to_vector<float>()[0] == Approx(0.3).epsilon(1e-5));
  REQUIRE(a.grad().to_vector<float>()[1] == Approx(0.4).epsilon(1e-5));
  REQUIRE(b.grad().to_vector<float>()[0] == Approx(1.2).epsilon(1e-5));
  REQUIRE(global_norm({a.grad(), b.grad()}).item() == Approx(1.3).epsilon(1e-5));
  REQUIRE_FALSE(none.grad().defined());
  // Below the limit: returned norm, gradients untouched.
  Tensor before = a.grad().clone();
  REQUIRE(clip_grad_norm({a, b}, 100.0).item() == Approx(1.3).epsilon(1e-5));
  REQUIRE_CLOSE(bit_equal(a.grad(), before));
  REQUIRE_THROWS_AS(clip_grad_norm({a}, 0.0), Error);
}

// Runs `steps` steps of `opt` with gradients from seed 1000 + step index.
void run_steps(Optimizer& opt, int from, int to) {
  for (int k = from; k < to; ++k) {
    manual_seed(uint64_t(1000 + k));
    for (const Tensor& p : opt.params()) {
      Tensor q = p;
      q.set_grad(randn(p.shape()));
    }
    opt.step();
  }
}

template <class Opt, class Hyper>
void check_state_round_trip(const Hyper& h, const fs::path& file) {
  manual_seed(55);
  std::vector<Tensor> pa{randn({3, 4}).requires_grad_(), randn({4}).requires_grad_()};
  std::vector<Tensor> pb, pc;
  for (const Tensor& p : pa) {
    pb.push_back(p.detach().clone().requires_grad_());
    pc.push_back(p.detach().clone().requires_grad_());
  }
  Opt a(pa, h);
  run_steps(a, 0, 3);
  // Checkpoint the optimiser through a file (so nothing aliases the live state) and the parameters by value.
  save_tensors(file, a.state());
  {
    NoGradGuard ng;
    for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]), pc[i].copy_(pa[i]);
  }
  Opt b(pb, h), fresh(pc, h);
  b.load_state(load_tensors(file));
  REQUIRE(b.steps() == 3);
  run_steps(a, 3, 5);
  run_steps(b, 3, 5);
  run_steps(fresh, 3, 5);
  for (size_t i = 0; i < pa.size(); ++i) {
    REQUIRE_CLOSE(bit_equal(pb[i], pa[i]));
    REQUIRE_FALSE(bit_equal(pc[i], pa[i]).ok);  // the state matters
  }
  REQUIRE_THROWS_WITH(b.load_state({}), Catch::Contains("step"));
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / fmt::format("mixgrad_test_nn_{:x}", (uint64_t(rd()) << 32) | rd());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

TEST_CASE("optimizer state()/load_state round trip gives identical next steps", "[nn][optim][state]") {
  TempDir dir;
  AdamWHyper ah;
  ah.lr = 0.01;
  check_state_round_trip<AdamW>(ah, dir.path / "adamw.safetensors");
  SGDHyper sh;
  sh.lr = 0.05, sh.momentum = 0.9, sh.nesterov = true;
  check_state_round_trip<SGD>(sh, dir.path / "sgd.safetensors");
}

TEST_CASE("a Linear-ReLU-Linear MLP overfits one batch of 16 points with AdamW", "[nn][optim][overfit]") {
  manual_seed(2025);
  Sequential mlp;
  mlp.push_back(std::make_shared<Linear>(4, 64));
  mlp.push_back(ReLU());
  mlp.push_back(std::make_shared<Linear>(64, 3));
  Tensor x = randn({16, 4});
  std::vector<int64_t> labels(16);
  for (size_t i = 0; i < 16; ++i) labels[i] = int64_t((i * 7 + 3) % 3);
  Tensor y = from_vector<int64_t>(labels, {16});
  AdamWHyper h;
  h.lr = 1e-2, h.weight_decay = 0.0;
  AdamW opt(mlp.parameters(), h);
  const double first = cross_entropy(mlp(x), y).item();
  autograd::clear_tape();
  REQUIRE(first > 0.5);
  double loss = first;
  int steps = 0;
  for (; steps < 300 && loss >= 0.05; ++steps) {
    opt.zero_grad();
    Tensor l = cross_entropy(mlp(x), y);
    loss = l.item();
    l.backward();
    opt.step();
    REQUIRE(autograd::tape_size() == 0);
  }
  INFO("loss " << loss << " after " << steps << " steps (first " << first << ")");
  REQUIRE(loss < 0.05);
  const std::vector<int64_t> pred = argmax(mlp(x), 1).to_vector<int64_t>();
  autograd::clear_tape();
  REQUIRE(pred == labels);
}

// ---- checkpoints ----------------------------------------------------------------------------------------------

std::unique_ptr<Net> make_net(uint64_t seed) {
  manual_seed(seed);
  auto net = std::make_unique<Net>(4);
  NoGradGuard ng;
  // Buffers with non-default values so that the round trip has something to carry.
  net->b0->running.copy_(from_vector<float>({1, 2, 3, 4}, {4}));
  net->seen.copy_(from_vector<int64_t>({int64_t(seed) * 1000}, {1}));
  init::normal_(net->norm->weight, 1.0, 0.1);
  return net;
}

NamedTensors without(NamedTensors st, const std::string& name) {
  st.erase(std::remove_if(st.begin(), st.end(), [&](const auto& e) { return e.first == name; }), st.end());
  return st;
}

NamedTensors replaced(NamedTensors st, const std::string& name, const Tensor& t) {
  for (auto& [n, v] : st)
    if (n == name) v = t;
  return st;
}

bool any_tmp_left(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.size() >= 4 && n.substr(n.size() - 4) == ".tmp") return true;
  }
  return false;
}

TEST_CASE("xavier_uniform_: bound sqrt(6 / (fan_in + fan_out)), variance a^2 / 3", "[nn][init]") {
  manual_seed(8);
  Tensor w = empty({300, 200});
  init::xavier_uniform_(w);
  const double a = std::sqrt(6.0 / 500.0);
  double mx = 0, s2 = 0;
  const std::vector<double> v = as_doubles(w);
  for (double x : v) mx = std::max(mx, std::abs(x)), s2 += x * x;
  REQUIRE(mx <= a);
  REQUIRE(mx > 0.99 * a);
  REQUIRE(s2 / double(v.size()) == Approx(a * a / 3).epsilon(0.02));
  Tensor conv = empty({8, 4, 3, 3});  // fans count the receptive field: 4·9 in, 8·9 out
  init::xavier_uniform_(conv, 2.0);
  for (double x : as_doubles(conv)) REQUIRE(std::abs(x) <= 2.0 * std::sqrt(6.0 / (36.0 + 72.0)));
  Tensor vec = empty({5});
  CHECK_THROWS_WITH(init::xavier_uniform_(vec), Catch::Contains("at least 2-D"));
}

TEST_CASE("checkpoints round-trip bit-exactly into a differently initialised model", "[nn][checkpoint]") {
  TempDir dir;
  const fs::path file = dir.path / "model.safetensors";
  auto a = make_net(1);
  save_state_dict(*a, file, {{"epoch", "3"}, {"model", "Net"}});
  REQUIRE(fs::exists(file));
  REQUIRE_FALSE(any_tmp_left(dir.path));
  auto b = make_net(2);
  REQUIRE_FALSE(bit_equal(b->head->weight, a->head->weight).ok);
  Tensor held = b->b1->fc->weight;
  Metadata meta;
  load_state_dict(*b, file, &meta);
  REQUIRE(meta.at("epoch") == "3");
  REQUIRE(meta.at("model") == "Net");
  const NamedTensors sa = a->state_dict(), sb = b->state_dict();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].first);
    REQUIRE(sa[i].first == sb[i].first);
    REQUIRE_CLOSE(bit_equal(sb[i].second, sa[i].second));
  }
  REQUIRE_CLOSE(bit_equal(held, a->b1->fc->weight));  // loaded in place: outside handles see the values
  REQUIRE(b->seen.to_vector<int64_t>() == std::vector<int64_t>{1000});
  a->eval();
  b->eval();
  Tensor x = randn({5, 4});
  REQUIRE_CLOSE(bit_equal(b->forward(x), a->forward(x)));
  autograd::clear_tape();
  // Loaded tensors keep being parameters.
  for (const Tensor& p : b->parameters()) REQUIRE(p.requires_grad());
  // Saving again over an existing file works and still leaves no temporary behind.
  save_state_dict(*b, file);
  REQUIRE_FALSE(any_tmp_left(dir.path));
  Metadata none;
  load_state_dict(*a, file, &none);
  REQUIRE(none.empty());
}

TEST_CASE("strict checkpoint loads reject missing, extra, mis-shaped and mis-typed tensors by name",
          "[nn][checkpoint][errors]") {
  TempDir dir;
  auto a = make_net(1);
  auto b = make_net(2);
  const NamedTensors st = a->state_dict();
  const fs::path f = dir.path / "bad.safetensors";

  save_tensors(f, without(st, "blocks.1.fc.bias"));
  REQUIRE_THROWS_AS(load_state_dict(*b, f), Error);
  REQUIRE_THROWS_WITH(load_state_dict(*b, f), Catch::Contains("blocks.1.fc.bias") && Catch::Contains("missing") &&
                                                  Catch::Contains(f.string()));
  load_state_dict(*b, f, nullptr, /*strict=*/false);  // non-strict: loads what is there
  REQUIRE_CLOSE(bit_equal(b->head->weight, a->head->weight));

  NamedTensors extra = st;
  extra.emplace_back("extra.weight", zeros({2}));
  save_tensors(f, extra);
  REQUIRE_THROWS_WITH(load_state_dict(*b, f), Catch::Contains("extra.weight") && Catch::Contains("unexpected"));

  save_tensors(f, replaced(st, "head.weight", zeros({4, 3})));
  REQUIRE_THROWS_WITH(load_state_dict(*b, f), Catch::Contains("head.weight") && Catch::Contains("[4, 3]") &&
                                                  Catch::Contains("[3, 4]"));

  save_tensors(f, replaced(st, "norm.bias", zeros({4}, DType::f64)));
  REQUIRE_THROWS_WITH(load_state_dict(*b, f), Catch::Contains("norm.bias") && Catch::Contains("float64") &&
                                                  Catch::Contains("float32"));

  save_tensors(f, replaced(st, "seen", zeros({1}, DType::i32)));
  REQUIRE_THROWS_WITH(load_state_dict(*b, f), Catch::Contains("seen") && Catch::Contains("int32"));

  // In-memory loads report the same way.
  REQUIRE_THROWS_WITH(b->load_state_dict(without(st, "norm.weight")), Catch::Contains("norm.weight"));
  NamedTensors twice = st;
  twice.push_back(st[0]);
  REQUIRE_THROWS_WITH(b->load_state_dict(twice), Catch::Contains(st[0].first) && Catch::Contains("twice"));
}

TEST_CASE("truncated, corrupted and missing checkpoint files throw naming the file", "[nn][checkpoint][errors]") {
  TempDir dir;
  auto a = make_net(1);
  auto b = make_net(2);
  const fs::path good = dir.path / "good.safetensors";
  save_state_dict(*a, good);
  const auto size = fs::file_size(good);

  const fs::path trunc = dir.path / "truncated.safetensors";
  fs::copy_file(good, trunc);
  fs::resize_file(trunc, size - 9);
  REQUIRE_THROWS_AS(load_state_dict(*b, trunc), Error);
  REQUIRE_THROWS_WITH(load_state_dict(*b, trunc), Catch::Contains(trunc.string()));

  const fs::path tiny = dir.path / "tiny.safetensors";
  fs::copy_file(good, tiny);
  fs::resize_file(tiny, 5);
  REQUIRE_THROWS_WITH(load_state_dict(*b, tiny), Catch::Contains(tiny.string()));

  const fs::path garbled = dir.path / "garbled.safetensors";
  fs::copy_file(good, garbled);
  {
    std::fstream io(garbled, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(8);
    const std::string junk(16, '\xff');
    io.write(junk.data(), std::streamsize(junk.size()));
  }
  REQUIRE_THROWS_WITH(load_state_dict(*b, garbled), Catch::Contains(garbled.string()));

  const fs::path huge_header = dir.path / "huge_header.safetensors";
  fs::copy_file(good, huge_header);
  {
    std::fstream io(huge_header, std::ios::in | std::ios::out | std::ios::binary);
    const std::string len(8, '\x7f');  // header length far beyond the file
    io.write(len.data(), 8);
  }
  REQUIRE_THROWS_WITH(load_state_dict(*b, huge_header), Catch::Contains(huge_header.string()));

  const fs::path missing = dir.path / "does_not_exist.safetensors";
  REQUIRE_THROWS_WITH(load_state_dict(*b, missing), Catch::Contains(missing.string()));

  // The good file still loads after all those failures.
  load_state_dict(*b, good);
  REQUIRE_CLOSE(bit_equal(b->head->weight, a->head->weight));
}

}  // namespace
