// Every op of engine/ops.h on CUDA against the CPU reference on the same inputs, forward and backward, in one
// table-driven harness (after ggml's test-backend-ops): each case names its inputs and a function of them; the
// harness runs it on both devices, compares the outputs and the gradient of sum(out · w) for every input.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "tests/common/check.h"
using Catch::Contains;

namespace {

using namespace mixgrad;
using namespace mixgrad::testing;

Device cuda_device() { return Device("cuda"); }

// How the harness fills one input (all on the CPU, from a seeded host generator; the CUDA input is a copy).
enum class Init {
  normal,        // N(0, 1)
  positive,      // U[0.5, 2): log, sqrt, pow, div denominators
  ties,          // integers {0, 1, 2} as floats: many ties for max/argmax
  neg_inf_rows,  // N(0, 1) with every third row (last dim) fully -inf and scattered -inf elsewhere
  mask,          // uint8, 1 with probability 0.3
  index,         // int64 in [0, hi), or `ignore` with probability 0.25 when ignore != 0
};

struct Input {
  Shape shape;
  Init init = Init::normal;
  int64_t hi = 0;
  int64_t ignore = 0;
};
Input in(Shape s, Init init = Init::normal) { return {std::move(s), init, 0, 0}; }
Input idx(Shape s, int64_t hi, int64_t ignore = 0) { return {std::move(s), Init::index, hi, ignore}; }

using OpFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

struct OpCase {
  std::string name;
  std::vector<Input> inputs;
  OpFn fn;
  Tolerance tol = tolerance(Compare::cpu_vs_cuda);
  MatmulPrecision precision = MatmulPrecision::fp32;  // set for the CPU and the CUDA run alike
};

template <class F>
OpFn one(F f) {
  return [f](const std::vector<Tensor>& x) { return std::vector<Tensor>{f(x)}; };
}

Tensor make_input(const Input& spec, std::mt19937& gen) {
  const int64_t n = shape_numel(spec.shape);
  if (spec.init == Init::mask) {
    std::bernoulli_distribution bit(0.3);
    std::vector<uint8_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = bit(gen) ? 1 : 0;
    return from_vector<uint8_t>(v, spec.shape);
  }
  if (spec.init == Init::index) {
    std::uniform_int_distribution<int64_t> pick(0, spec.hi - 1);
    std::bernoulli_distribution skip(0.25);
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = (spec.ignore != 0 && skip(gen)) ? spec.ignore : pick(gen);
    return from_vector<int64_t>(v, spec.shape);
  }
  std::vector<float> v(static_cast<size_t>(n));
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> pos(0.5f, 2.f);
  std::uniform_int_distribution<int> small(0, 2);
  std::bernoulli_distribution sprinkle(0.2);
  const int64_t cols = spec.shape.empty() ? 1 : std::max<int64_t>(spec.shape.back(), 1);
  for (int64_t i = 0; i < n; ++i) {
    float& x = v[size_t(i)];
    switch (spec.init) {
      case Init::positive: x = pos(gen); break;
      case Init::ties: x = float(small(gen)); break;
      case Init::neg_inf_rows:
        x = normal(gen);
        if ((i / cols) % 3 == 1 || sprinkle(gen)) x = -std::numeric_limits<float>::infinity();
        break;
      default: x = normal(gen); break;
    }
  }
  return from_vector<float>(v, spec.shape);
}

Tensor random_weights(const Shape& shape, std::mt19937& gen) {
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> v(size_t(shape_numel(shape)));
  for (auto& x : v) x = normal(gen);
  return from_vector<float>(v, shape);
}

// all_close that also accepts equal infinities at the same positions (softmax/log_softmax of masked rows).
CloseResult close_allowing_inf(const Tensor& actual, const Tensor& expected, Tolerance tol) {
  if (actual.shape() != expected.shape() || actual.dtype() != DType::f32 || expected.dtype() != DType::f32)
    return all_close(actual, expected, tol);
  std::vector<float> a = actual.detach().to(kCPU).to_vector<float>();
  std::vector<float> e = expected.detach().to(kCPU).to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isinf(a[i]) && !std::isinf(e[i])) continue;
    if (a[i] != e[i]) {
      CloseResult r;
      r.ok = false;
      r.message = fmt::format("infinity mismatch at flat index {}: actual {} expected {}", i, a[i], e[i]);
      return r;
    }
    a[i] = e[i] = 0.f;
  }
  return all_close(from_vector<float>(a, actual.shape()), from_vector<float>(e, expected.shape()), tol);
}

struct PrecisionGuard {
  explicit PrecisionGuard(MatmulPrecision p) { set_matmul_precision(p); }
  ~PrecisionGuard() { set_matmul_precision(MatmulPrecision::fp32); }
};

// One device's run of a case: leaf inputs, outputs, and (after backward) the inputs' gradients.
struct DeviceRun {
  std::vector<Tensor> inputs, outputs;
};

// Forward, then backward of sum_i sum(out_i · w_i) over the floating outputs that require grad. The weights are
// drawn on the first (CPU) run and reused on the second, so both devices differentiate the same function. Each
// run finishes its backward before the next starts: backward() consumes the thread's whole tape.
DeviceRun forward_backward(const OpCase& c, const std::vector<Tensor>& host_inputs, Device device,
                           std::vector<Tensor>& weights, std::mt19937& gen) {
  DeviceRun r;
  for (const Tensor& h : host_inputs) {
    Tensor t = h.to(device).clone();  // a fresh leaf on every run
    if (is_floating(t.dtype())) t.requires_grad_();
    r.inputs.push_back(t);
  }
  r.outputs = c.fn(r.inputs);
  const bool first = weights.empty();
  Tensor loss;
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    const Tensor& y = r.outputs[i];
    if (first)
      weights.push_back(is_floating(y.dtype()) && y.requires_grad() ? random_weights(y.shape(), gen) : Tensor());
    if (i >= weights.size() || !weights[i].defined() || !y.requires_grad()) continue;
    const Tensor term = sum(mul(y, weights[i].to(device)));
    loss = loss.defined() ? add(loss, term) : term;
  }
  if (loss.defined()) loss.backward();
  autograd::clear_tape();
  return r;
}

void run_case(const OpCase& c, uint32_t seed) {
  INFO("case: " << c.name);
  const Device cuda = cuda_device();
  PrecisionGuard precision(c.precision);
  std::mt19937 gen(seed);
  std::vector<Tensor> host_inputs;
  for (const Input& spec : c.inputs) host_inputs.push_back(make_input(spec, gen));

  std::vector<Tensor> weights;
  const DeviceRun ref = forward_backward(c, host_inputs, kCPU, weights, gen);
  const DeviceRun dev = forward_backward(c, host_inputs, cuda, weights, gen);

  REQUIRE(dev.outputs.size() == ref.outputs.size());
  for (size_t i = 0; i < ref.outputs.size(); ++i) {
    const Tensor &yc = ref.outputs[i], &yg = dev.outputs[i];
    INFO("output " << i << " of shape " << shape_str(yc.shape()));
    REQUIRE(yg.device() == cuda);
    REQUIRE(yg.dtype() == yc.dtype());
    REQUIRE(yg.requires_grad() == yc.requires_grad());
    if (is_floating(yc.dtype()))
      REQUIRE_CLOSE(close_allowing_inf(yg, yc, c.tol));
    else
      REQUIRE_CLOSE(bit_equal(yg, yc));
  }
  for (size_t j = 0; j < ref.inputs.size(); ++j) {
    if (!is_floating(ref.inputs[j].dtype())) continue;
    INFO("gradient of input " << j << " of shape " << shape_str(ref.inputs[j].shape()));
    const Tensor gc = ref.inputs[j].grad(), gg = dev.inputs[j].grad();
    REQUIRE(gc.defined() == gg.defined());
    if (!gc.defined()) continue;
    REQUIRE(gg.device() == cuda);
    REQUIRE_CLOSE(close_allowing_inf(gg, gc, c.tol));
  }
}

// One Catch section per case, so a failing case is reported and the others still run.
void run_all(const std::vector<OpCase>& cases) {
  REQUIRE(!cases.empty());
  for (size_t k = 0; k < cases.size(); ++k)
    DYNAMIC_SECTION("#" << k << " " << cases[k].name) { run_case(cases[k], 1000 + uint32_t(k)); }
}

// ---- the tables ---------------------------------------------------------------------------------------------
std::vector<OpCase> binary_cases() {
  struct Op {
    const char* name;
    Tensor (*fn)(const Tensor&, const Tensor&);
    Init rhs;
  };
  const Op ops[] = {{"add", add, Init::normal},        {"sub", sub, Init::normal},
                    {"mul", mul, Init::normal},        {"div", div, Init::positive},
                    {"maximum", maximum, Init::normal}, {"minimum", minimum, Init::normal}};
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{7, 33}, {7, 33}},      {{5, 1, 67}, {3, 1}}, {{257}, {}},       {{2, 3, 4, 5}, {4, 1}},
      {{1}, {1000}},           {{0, 5}, {5}},        {{1, 5003}, {5003}}, {{3, 1, 1}, {1, 1, 1029}}};
  std::vector<OpCase> cases;
  for (const Op& op : ops)
    for (const auto& [sa, sb] : shapes) {
      auto f = op.fn;
      cases.push_back({fmt::format("{} {} {}", op.name, shape_str(sa), shape_str(sb)), {in(sa), in(sb, op.rhs)},
                       one([f](const std::vector<Tensor>& x) { return f(x[0], x[1]); })});
    }
  // The operator spellings and the same tensor on both sides (gradient accumulates twice into one leaf).
  cases.push_back({"a * a + a / 2 - (-a)", {in({17, 31})},
                   one([](const std::vector<Tensor>& x) { return x[0] * x[0] + x[0] / 2.0 - (-x[0]); })});
  return cases;
}

std::vector<OpCase> unary_cases() {
  struct Op {
    const char* name;
    std::function<Tensor(const Tensor&)> fn;
    Init init;
  };
  const std::vector<Op> ops = {
      {"add_scalar", [](const Tensor& x) { return add_scalar(x, 2.5); }, Init::normal},
      {"mul_scalar", [](const Tensor& x) { return mul_scalar(x, -1.5); }, Init::normal},
      {"scalar operators", [](const Tensor& x) { return 3.0 * ((x + 1.0) - 0.5) / 4.0 * 2.0; }, Init::normal},
      {"neg", [](const Tensor& x) { return neg(x); }, Init::normal},
      {"exp", [](const Tensor& x) { return exp(x); }, Init::normal},
      {"log", [](const Tensor& x) { return log(x); }, Init::positive},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, Init::positive},
      {"pow 3", [](const Tensor& x) { return pow(x, 3.0); }, Init::positive},
      {"pow -0.5", [](const Tensor& x) { return pow(x, -0.5); }, Init::positive},
      {"pow 2 (negative base)", [](const Tensor& x) { return pow(x, 2.0); }, Init::normal},
      {"tanh", [](const Tensor& x) { return tanh(x); }, Init::normal},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, Init::normal},
      {"relu", [](const Tensor& x) { return relu(x); }, Init::normal},
      {"gelu erf", [](const Tensor& x) { return gelu(x); }, Init::normal},
      {"gelu tanh", [](const Tensor& x) { return gelu(x, "tanh"); }, Init::normal},
      {"silu", [](const Tensor& x) { return silu(x); }, Init::normal},
  };
  const std::vector<Shape> shapes = {{1}, {37, 29}, {5003}, {0, 3}, {}};
  std::vector<OpCase> cases;
  for (const Op& op : ops)
    for (const Shape& s : shapes) {
      auto f = op.fn;
      cases.push_back({fmt::format("{} {}", op.name, shape_str(s)), {in(s, op.init)},
                       one([f](const std::vector<Tensor>& x) { return f(x[0]); })});
    }
  return cases;
}

std::vector<OpCase> where_cases() {
  return {
      {"where cond[4,1,9] a[4,6,9] b[9]", {in({4, 1, 9}, Init::mask), in({4, 6, 9}), in({9})},
       one([](const std::vector<Tensor>& x) { return where(x[0], x[1], x[2]); })},
      {"where cond[33] a[] b[2,33]", {in({33}, Init::mask), in({}), in({2, 33})},
       one([](const std::vector<Tensor>& x) { return where(x[0], x[1], x[2]); })},
      {"where cond[1027] a[1027] b[1027]", {in({1027}, Init::mask), in({1027}), in({1027})},
       one([](const std::vector<Tensor>& x) { return where(x[0], x[1], x[2]); })},
      {"where zero-size", {in({0, 5}, Init::mask), in({0, 5}), in({5})},
       one([](const std::vector<Tensor>& x) { return where(x[0], x[1], x[2]); })},
      {"masked_fill mask[7,1]", {in({5, 7, 33}), in({7, 1}, Init::mask)},
       one([](const std::vector<Tensor>& x) { return masked_fill(x[0], x[1], -3.5); })},
      {"masked_fill full mask", {in({5, 7, 33}), in({5, 7, 33}, Init::mask)},
       one([](const std::vector<Tensor>& x) { return masked_fill(x[0], x[1], 0.0); })},
      {"masked_fill -inf then softmax", {in({6, 1025}), in({6, 1025}, Init::mask)},
       one([](const std::vector<Tensor>& x) {
         return softmax(masked_fill(x[0], x[1], -std::numeric_limits<double>::infinity()), -1);
       })},
      {"masked_fill zero-size", {in({0, 4}), in({4}, Init::mask)},
       one([](const std::vector<Tensor>& x) { return masked_fill(x[0], x[1], 1.0); })},
  };
}

std::vector<OpCase> reduce_cases() {
  struct R {
    Shape shape;
    std::vector<int64_t> dims;
  };
  const std::vector<R> rs = {{{4, 5, 6}, {1}},          {{4, 5, 6}, {0, 2}},       {{4, 5, 6}, {-1}},
                             {{4, 5, 6}, {}},           {{3, 5003}, {1}},          {{5003, 3}, {0}},
                             {{7, 9, 11, 13}, {0, 2}},  {{7, 9, 11, 13}, {1, 2, 3}}, {{2, 0, 3}, {1}},
                             {{2, 0, 3}, {0}},          {{1, 1}, {0, 1}},          {{33, 65}, {0}}};
  std::vector<OpCase> cases;
  for (const R& r : rs)
    for (bool keep : {false, true}) {
      const auto dims = r.dims;
      cases.push_back({fmt::format("sum {} dims [{}] keepdim {}", shape_str(r.shape), fmt::join(dims, ", "), keep),
                       {in(r.shape)}, one([dims, keep](const std::vector<Tensor>& x) { return sum(x[0], dims, keep); })});
      cases.push_back({fmt::format("mean {} dims [{}] keepdim {}", shape_str(r.shape), fmt::join(dims, ", "), keep),
                       {in(r.shape)}, one([dims, keep](const std::vector<Tensor>& x) { return mean(x[0], dims, keep); })});
    }
  for (const Shape& s : std::vector<Shape>{{}, {1}, {5003}, {6, 7, 8}, {0, 3}}) {
    cases.push_back({"sum all " + shape_str(s), {in(s)}, one([](const std::vector<Tensor>& x) { return sum(x[0]); })});
    cases.push_back({"mean all " + shape_str(s), {in(s)}, one([](const std::vector<Tensor>& x) { return mean(x[0]); })});
  }
  return cases;
}

std::vector<OpCase> max_cases() {
  struct M {
    Shape shape;
    int64_t dim;
    Init init;
  };
  const std::vector<M> ms = {{{6, 1000}, 1, Init::normal},  {{5, 7, 3}, 1, Init::normal}, {{5003}, 0, Init::normal},
                             {{4, 33}, 0, Init::normal},    {{0, 5}, 1, Init::normal},    {{1, 1}, -1, Init::normal},
                             {{9, 257}, -1, Init::ties},    {{64, 5, 3}, 0, Init::ties},  {{3, 5000}, 1, Init::ties}};
  std::vector<OpCase> cases;
  for (const M& m : ms)
    for (bool keep : {false, true}) {
      const int64_t d = m.dim;
      cases.push_back({fmt::format("max {} dim {} keepdim {}{}", shape_str(m.shape), d, keep,
                                   m.init == Init::ties ? " (ties)" : ""),
                       {in(m.shape, m.init)}, [d, keep](const std::vector<Tensor>& x) {
                         MaxResult r = max(x[0], d, keep);
                         return std::vector<Tensor>{r.values, r.indices};
                       }});
      cases.push_back({fmt::format("argmax {} dim {} keepdim {}", shape_str(m.shape), d, keep), {in(m.shape, m.init)},
                       one([d, keep](const std::vector<Tensor>& x) { return argmax(x[0], d, keep); })});
    }
  return cases;
}

std::vector<OpCase> layout_cases() {
  std::vector<OpCase> cases;
  struct T {
    Shape shape;
    int64_t d0, d1;
  };
  const std::vector<T> ts = {{{4, 5}, 0, 1},       {{33, 65}, 0, 1},     {{3, 33, 65}, 1, 2},   {{2, 65, 33}, -1, -2},
                             {{7, 1, 5, 3}, 0, 3}, {{1, 1}, 0, 1},       {{0, 5}, 0, 1},        {{8, 8}, 0, 1},
                             {{1, 4096}, 0, 1},    {{2, 3, 1000, 7}, 2, 3}, {{2, 3, 129, 257}, -2, -1}, {{5, 6, 7}, 0, 1}};
  for (const T& t : ts) {
    const int64_t a = t.d0, b = t.d1;
    cases.push_back({fmt::format("transpose {} ({}, {})", shape_str(t.shape), a, b), {in(t.shape)},
                     one([a, b](const std::vector<Tensor>& x) { return transpose(x[0], a, b); })});
  }
  struct P {
    Shape shape;
    std::vector<int64_t> perm;
  };
  const std::vector<P> ps = {{{2, 3, 4, 5}, {3, 1, 0, 2}}, {{2, 3, 4, 5}, {0, 2, 1, 3}}, {{33, 65, 3}, {2, 0, 1}},
                             {{33, 65, 3}, {0, 1, 2}},     {{3, 0, 2}, {2, 1, 0}},       {{2, 17, 1, 33}, {0, 3, 2, 1}}};
  for (const P& p : ps) {
    const auto perm = p.perm;
    cases.push_back({fmt::format("permute {} [{}]", shape_str(p.shape), fmt::join(perm, ", ")), {in(p.shape)},
                     one([perm](const std::vector<Tensor>& x) { return permute(x[0], perm); })});
  }
  // Integer layouts: copies are type-agnostic and must be exact.
  cases.push_back({"permute int64 [33, 65, 3] [1, 2, 0]", {idx({33, 65, 3}, 1000)},
                   one([](const std::vector<Tensor>& x) { return permute(x[0], {1, 2, 0}); })});
  cases.push_back({"transpose uint8 [37, 70]", {in({37, 70}, Init::mask)},
                   one([](const std::vector<Tensor>& x) { return transpose(x[0], 0, 1); })});
  cases.push_back({"cat uint8", {in({3, 5}, Init::mask), in({3, 2}, Init::mask)},
                   one([](const std::vector<Tensor>& x) { return cat({x[0], x[1]}, 1); })});

  // Views and reshapes.
  cases.push_back({"reshape [6, 35] -> [-1, 7] then * 2", {in({6, 35})},
                   one([](const std::vector<Tensor>& x) { return x[0].reshape({-1, 7}) * 2.0; })});
  cases.push_back({"slice0 rows [2, 5) then exp", {in({9, 13})},
                   one([](const std::vector<Tensor>& x) { return exp(x[0].slice0(2, 3)); })});
  cases.push_back({"flatten / unsqueeze / squeeze", {in({3, 1, 4, 5})}, one([](const std::vector<Tensor>& x) {
                     return transpose(x[0].squeeze(1).flatten(1).unsqueeze(0), 1, 2);
                   })});

  struct E {
    Shape from, to;
  };
  const std::vector<E> es = {{{3, 1, 5}, {2, 3, 4, 5}}, {{1}, {1000}}, {{}, {3, 4}}, {{33, 1}, {33, 65}}, {{4, 1}, {4, 0}}};
  for (const E& e : es) {
    const Shape to = e.to;
    cases.push_back({fmt::format("expand {} -> {}", shape_str(e.from), shape_str(to)), {in(e.from)},
                     one([to](const std::vector<Tensor>& x) { return expand(x[0], to); })});
  }

  cases.push_back({"cat dim 0 with an empty piece", {in({2, 3}), in({4, 3}), in({0, 3})},
                   one([](const std::vector<Tensor>& x) { return cat({x[0], x[1], x[2]}, 0); })});
  cases.push_back({"cat dim 1", {in({2, 3, 5}), in({2, 1, 5}), in({2, 7, 5})},
                   one([](const std::vector<Tensor>& x) { return cat({x[0], x[1], x[2]}, 1); })});
  cases.push_back({"cat dim -1 odd widths", {in({3, 33}), in({3, 1}), in({3, 64})},
                   one([](const std::vector<Tensor>& x) { return cat({x[0], x[1], x[2]}, -1); })});
  cases.push_back({"cat one tensor", {in({5, 7})}, one([](const std::vector<Tensor>& x) { return cat({x[0]}, 0); })});
  cases.push_back({"cat long rows", {in({2, 5003}), in({2, 997})},
                   one([](const std::vector<Tensor>& x) { return cat({x[0], x[1]}, 1); })});

  cases.push_back({"narrow dim 1 [5, 22)", {in({10, 33})},
                   one([](const std::vector<Tensor>& x) { return narrow(x[0], 1, 5, 17); })});
  cases.push_back({"narrow dim 0 [3, 7)", {in({10, 33})},
                   one([](const std::vector<Tensor>& x) { return narrow(x[0], 0, 3, 4); })});
  cases.push_back({"narrow length 0", {in({10, 33})},
                   one([](const std::vector<Tensor>& x) { return narrow(x[0], 1, 4, 0); })});
  cases.push_back({"narrow dim 2 of 3-D", {in({4, 5, 6})},
                   one([](const std::vector<Tensor>& x) { return narrow(x[0], 2, 1, 5); })});
  cases.push_back({"narrow dim -1 long row", {in({2, 5003})},
                   one([](const std::vector<Tensor>& x) { return narrow(x[0], -1, 1, 5001); })});

  cases.push_back({"split size 4 dim 1", {in({10, 33})},
                   [](const std::vector<Tensor>& x) { return split(x[0], 4, 1); }});
  cases.push_back({"split sections [3, 0, 7] dim 0", {in({10, 33})},
                   [](const std::vector<Tensor>& x) { return split(x[0], std::vector<int64_t>{3, 0, 7}, 0); }});
  cases.push_back({"split size 2 dim -1", {in({5, 7, 9})},
                   [](const std::vector<Tensor>& x) { return split(x[0], 2, -1); }});
  // Only some pieces used: the unused pieces get zero gradient.
  cases.push_back({"split, use the middle piece", {in({6, 11})},
                   one([](const std::vector<Tensor>& x) { return split(x[0], 4, 1)[1]; })});

  for (int64_t d : {0, 1, 2, -1})
    cases.push_back({fmt::format("stack 3 x [3, 4] dim {}", d), {in({3, 4}), in({3, 4}), in({3, 4})},
                     one([d](const std::vector<Tensor>& x) { return stack({x[0], x[1], x[2]}, d); })});
  cases.push_back({"stack zero-size dim 1", {in({0, 5}), in({0, 5})},
                   one([](const std::vector<Tensor>& x) { return stack({x[0], x[1]}, 1); })});
  return cases;
}

std::vector<OpCase> matmul_cases() {
  const std::vector<std::pair<Shape, Shape>> mm = {
      {{7}, {7}},           {{5}, {5, 9}},          {{6, 5}, {5}},         {{33, 65}, {65, 17}},
      {{1, 1}, {1, 1}},     {{3, 4, 5}, {5, 6}},    {{5, 6}, {3, 6, 7}},   {{2, 1, 4, 5}, {3, 5, 6}},
      {{4, 0}, {0, 3}},     {{0, 5}, {5, 3}},       {{2, 3, 257, 31}, {2, 3, 31, 129}}, {{9}, {2, 9, 4}},
      {{2, 4, 9}, {9}},     {{1, 1000}, {1000, 1}}, {{4, 3}, {3, 0}}};
  std::vector<OpCase> cases;
  for (const auto& [a, b] : mm)
    cases.push_back({fmt::format("matmul {} @ {}", shape_str(a), shape_str(b)), {in(a), in(b)},
                     one([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); })});
  struct L {
    Shape x;
    int64_t out;
    bool bias;
  };
  const std::vector<L> ls = {{{4, 10}, 7, true}, {{2, 3, 10}, 5, false}, {{1, 1000}, 33, true},
                             {{0, 8}, 3, true},  {{10}, 6, true},        {{129, 65}, 257, true}};
  for (const L& l : ls) {
    const int64_t in_f = l.x.back();
    std::vector<Input> inputs = {in(l.x), in({l.out, in_f})};
    if (l.bias) inputs.push_back(in({l.out}));
    cases.push_back({fmt::format("linear x{} out {} bias {}", shape_str(l.x), l.out, l.bias), inputs,
                     one([](const std::vector<Tensor>& x) { return linear(x[0], x[1], x.size() > 2 ? x[2] : Tensor()); })});
  }
  return cases;
}

std::vector<OpCase> softmax_cases() {
  std::vector<OpCase> cases;
  const std::vector<Shape> shapes = {{7, 1}, {7, 33}, {5, 1000}, {3, 1025}, {2, 5000}, {1, 5000}, {0, 7}, {4, 3, 33}};
  for (bool log : {false, true}) {
    const char* name = log ? "log_softmax" : "softmax";
    auto f = [log](const Tensor& x, int64_t d) { return log ? log_softmax(x, d) : softmax(x, d); };
    for (const Shape& s : shapes)
      cases.push_back({fmt::format("{} {} dim -1", name, shape_str(s)), {in(s)},
                       one([f](const std::vector<Tensor>& x) { return f(x[0], -1); })});
    for (const Shape& s : std::vector<Shape>{{9, 33}, {6, 1025}, {3, 5000}, {4, 1}})
      cases.push_back({fmt::format("{} {} with -inf rows", name, shape_str(s)), {in(s, Init::neg_inf_rows)},
                       one([f](const std::vector<Tensor>& x) { return f(x[0], -1); })});
    cases.push_back({fmt::format("{} [33, 5] dim 0", name), {in({33, 5})},
                     one([f](const std::vector<Tensor>& x) { return f(x[0], 0); })});
    cases.push_back({fmt::format("{} [3, 65, 4] dim 1", name), {in({3, 65, 4})},
                     one([f](const std::vector<Tensor>& x) { return f(x[0], 1); })});
    // Large logits: the max subtraction must keep it finite.
    cases.push_back({fmt::format("{} [4, 1000] x 100", name), {in({4, 1000})},
                     one([f](const std::vector<Tensor>& x) { return f(x[0] * 100.0, -1); })});
  }
  return cases;
}

std::vector<OpCase> norm_cases() {
  std::vector<OpCase> cases;
  for (int64_t cols : {1, 7, 768, 5000})
    for (int64_t rows : {1, 333}) {
      const Shape s = {rows, cols}, ns = {cols};
      cases.push_back({fmt::format("layer_norm {} affine", shape_str(s)), {in(s), in(ns), in(ns)},
                       one([ns](const std::vector<Tensor>& x) { return layer_norm(x[0], ns, x[1], x[2]); })});
      cases.push_back({fmt::format("layer_norm {} plain", shape_str(s)), {in(s)},
                       one([ns](const std::vector<Tensor>& x) { return layer_norm(x[0], ns); })});
      cases.push_back({fmt::format("rms_norm {} weight", shape_str(s)), {in(s), in(ns)},
                       one([ns](const std::vector<Tensor>& x) { return rms_norm(x[0], ns, x[1]); })});
      cases.push_back({fmt::format("rms_norm {} plain", shape_str(s)), {in(s)},
                       one([ns](const std::vector<Tensor>& x) { return rms_norm(x[0], ns); })});
    }
  cases.push_back({"layer_norm [2, 5, 7] over [5, 7], weight only, eps 1e-3", {in({2, 5, 7}), in({5, 7})},
                   one([](const std::vector<Tensor>& x) { return layer_norm(x[0], {5, 7}, x[1], Tensor(), 1e-3); })});
  cases.push_back({"layer_norm bias only", {in({6, 33}), in({33})},
                   one([](const std::vector<Tensor>& x) { return layer_norm(x[0], {33}, Tensor(), x[1]); })});
  cases.push_back({"layer_norm zero rows", {in({0, 7}), in({7}), in({7})},
                   one([](const std::vector<Tensor>& x) { return layer_norm(x[0], {7}, x[1], x[2]); })});
  cases.push_back({"rms_norm zero rows", {in({0, 7}), in({7})},
                   one([](const std::vector<Tensor>& x) { return rms_norm(x[0], {7}, x[1]); })});
  cases.push_back({"rms_norm [3, 4, 65] over [4, 65]", {in({3, 4, 65}), in({4, 65})},
                   one([](const std::vector<Tensor>& x) { return rms_norm(x[0], {4, 65}, x[1]); })});
  // Large offset: a two-pass (or Welford) variance must not cancel catastrophically.
  cases.push_back({"layer_norm offset 100", {in({5, 768}), in({768}), in({768})},
                   one([](const std::vector<Tensor>& x) { return layer_norm(x[0] + 100.0, {768}, x[1], x[2]); })});
  return cases;
}

std::vector<OpCase> cross_entropy_cases() {
  std::vector<OpCase> cases;
  struct C {
    int64_t rows, classes;
  };
  for (const C& c : std::vector<C>{{8, 10}, {5, 1}, {3, 1000}, {2, 5000}, {33, 7}, {0, 4}})
    for (const char* red : {"mean", "sum", "none"}) {
      const std::string r = red;
      cases.push_back({fmt::format("cross_entropy [{}, {}] {}", c.rows, c.classes, r),
                       {in({c.rows, c.classes}), idx({c.rows}, c.classes)},
                       one([r](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], -100, 0.0, r); })});
    }
  for (const char* red : {"mean", "sum", "none"}) {
    const std::string r = red;
    cases.push_back({fmt::format("cross_entropy ignore_index -100 {}", r), {in({40, 9}), idx({40}, 9, -100)},
                     one([r](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], -100, 0.0, r); })});
    cases.push_back({fmt::format("cross_entropy ignore_index 3 {}", r), {in({40, 9}), idx({40}, 9, 3)},
                     one([r](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], 3, 0.0, r); })});
    cases.push_back({fmt::format("cross_entropy label_smoothing 0.1 {}", r), {in({17, 1025}), idx({17}, 1025)},
                     one([r](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], -100, 0.1, r); })});
    cases.push_back({fmt::format("cross_entropy label_smoothing 0.2 + ignore {}", r), {in({40, 9}), idx({40}, 9, -100)},
                     one([r](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], -100, 0.2, r); })});
  }
  cases.push_back({"cross_entropy single [C] logits", {in({11}), idx({}, 11)},
                   one([](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1]); })});
  return cases;
}

std::vector<OpCase> embedding_cases() {
  return {
      {"embedding [50, 33] indices [7, 13] (many repeats)", {in({50, 33}), idx({7, 13}, 5)},
       one([](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); })},
      {"embedding [300, 257] indices [4, 100]", {in({300, 257}), idx({4, 100}, 300)},
       one([](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); })},
      {"embedding [10, 1] indices [1000] (all rows repeated)", {in({10, 1}), idx({1000}, 10)},
       one([](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); })},
      {"embedding [6, 5000] indices [3]", {in({6, 5000}), idx({3}, 6)},
       one([](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); })},
      {"embedding zero indices", {in({8, 4}), idx({0}, 8)},
       one([](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); })},
  };
}

}  // namespace

// ---- the test cases -----------------------------------------------------------------------------------------
TEST_CASE("CUDA vs CPU: binary ops with broadcasting", "[cuda][elementwise]") { run_all(binary_cases()); }
TEST_CASE("CUDA vs CPU: scalar and unary ops", "[cuda][elementwise]") { run_all(unary_cases()); }
TEST_CASE("CUDA vs CPU: where and masked_fill", "[cuda][elementwise]") { run_all(where_cases()); }
TEST_CASE("CUDA vs CPU: sum and mean over dim lists", "[cuda][reduce]") { run_all(reduce_cases()); }
TEST_CASE("CUDA vs CPU: max and argmax (indices exact)", "[cuda][reduce]") { run_all(max_cases()); }
TEST_CASE("CUDA vs CPU: transpose, permute, expand, cat, narrow, split, stack", "[cuda][layout]") {
  run_all(layout_cases());
}
TEST_CASE("CUDA vs CPU: matmul and linear in FP32", "[cuda][linalg]") {
  REQUIRE_FALSE(allow_tf32());
  run_all(matmul_cases());
}
TEST_CASE("CUDA vs CPU: matmul and linear with TF32 on", "[cuda][linalg]") {
  // TF32 keeps 10 mantissa bits: per-product relative error ~5e-4; K = 64 random normals -> abs error ~1e-2 at worst.
  const Tolerance loose{1e-2, 3e-2};
  std::vector<OpCase> cases = {
      {"matmul tf32 [2, 33, 64] @ [64, 65]", {in({2, 33, 64}), in({64, 65})},
       one([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }), loose, MatmulPrecision::tf32},
      {"linear tf32 [37, 64] -> 40", {in({37, 64}), in({40, 64}), in({40})},
       one([](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); }), loose, MatmulPrecision::tf32},
  };
  run_all(cases);
  REQUIRE_FALSE(allow_tf32());  // the guard restored the default
}
TEST_CASE("CUDA vs CPU: matmul and linear in bf16 (cuBLAS bf16 against the CPU's rounded operands)",
          "[cuda][linalg][precision]") {
  // Both devices multiply the same bf16-rounded operands exactly and sum in fp32 (the CPU rounds copies and runs
  // its fp32 GEMM; CUDA converts to bf16 and runs cublasGemmStridedBatchedEx): only the summation order differs,
  // so the ordinary CPU-vs-CUDA tolerance applies, forward and backward.
  const auto mm = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  const Tolerance tol = tolerance(Compare::cpu_vs_cuda);
  std::vector<OpCase> cases = {
      {"matmul bf16 [2, 33, 64] @ [64, 65]", {in({2, 33, 64}), in({64, 65})}, one(mm), tol, MatmulPrecision::bf16},
      {"matmul bf16 batched [3, 17, 40] @ [3, 40, 9]", {in({3, 17, 40}), in({3, 40, 9})}, one(mm), tol,
       MatmulPrecision::bf16},
      {"matmul bf16 odd sizes [1, 7] @ [7, 3]", {in({1, 7}), in({7, 3})}, one(mm), tol, MatmulPrecision::bf16},
      {"linear bf16 [37, 64] -> 40", {in({37, 64}), in({40, 64}), in({40})},
       one([](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); }), tol, MatmulPrecision::bf16},
  };
  run_all(cases);
  REQUIRE(matmul_precision() == MatmulPrecision::fp32);
}
TEST_CASE("CUDA vs CPU: softmax and log_softmax", "[cuda][softmax]") { run_all(softmax_cases()); }
TEST_CASE("CUDA vs CPU: layer_norm and rms_norm", "[cuda][norm]") { run_all(norm_cases()); }
TEST_CASE("CUDA vs CPU: cross_entropy", "[cuda][loss]") { run_all(cross_entropy_cases()); }
TEST_CASE("CUDA vs CPU: embedding", "[cuda][embedding]") { run_all(embedding_cases()); }

TEST_CASE("CUDA: cross_entropy with an out-of-range target throws mixgrad::Error", "[cuda][loss]") {
  const Device cuda = cuda_device();
  std::mt19937 gen(7);
  const Tensor logits = make_input(in({4, 5}), gen).to(cuda);
  for (int64_t bad : {5, -1, 1000}) {
    INFO("bad target " << bad);
    const Tensor target = from_vector<int64_t>({0, bad, 1, 2}, {4});
    REQUIRE_THROWS_AS(cross_entropy(logits.to(kCPU), target), Error);
    // On CUDA the check runs on the device and is reported at the next read-back, not at the call (which would make
    // the host wait for the GPU at every step).
    const Tensor loss = cross_entropy(logits, target.to(cuda));
    REQUIRE_THROWS_WITH(loss.item(), Contains("cross_entropy: a target is outside [0, 5)") && Contains("read-back"));
    REQUIRE_NOTHROW(loss.item());  // reported once; the flag is forgotten
    (void)cross_entropy(logits, target.to(cuda), -100, 0.0, "none");
    REQUIRE_THROWS_WITH(synchronize_and_check(cuda), Contains("outside [0, 5)"));
    (void)cross_entropy(logits, target.to(cuda), -100, 0.0, "sum");
    REQUIRE_THROWS_WITH(logits.to_vector<float>(), Contains("outside [0, 5)"));  // any read-back reports it
    autograd::clear_tape();
  }
  // The device is still healthy afterwards: a valid call works and matches the CPU.
  const Tensor target = from_vector<int64_t>({0, 4, 1, 2}, {4});
  REQUIRE_CLOSE(all_close(cross_entropy(logits, target.to(cuda)), cross_entropy(logits.to(kCPU), target),
                          tolerance(Compare::cpu_vs_cuda)));
}

TEST_CASE("CUDA: embedding with an out-of-range index throws mixgrad::Error", "[cuda][embedding]") {
  const Device cuda = cuda_device();
  const Tensor weight = zeros({6, 3}, TensorOptions(DType::f32, cuda));
  // Checked on the device, reported at the next read-back.
  const Tensor a = embedding(weight, from_vector<int64_t>({0, 6}, {2}).to(cuda));
  REQUIRE_THROWS_WITH(a.to(kCPU), Contains("embedding: an index is outside [0, 6)"));
  (void)embedding(weight, from_vector<int64_t>({-1}, {1}).to(cuda));
  REQUIRE_THROWS_AS(synchronize_and_check(cuda), Error);
  const Tensor ok = embedding(weight, from_vector<int64_t>({5, 0}, {2}).to(cuda));
  REQUIRE(ok.shape() == Shape{2, 3});
  REQUIRE_NOTHROW(ok.to_vector<float>());
}

TEST_CASE("CUDA: embedding backward is deterministic (two runs bit-identical)", "[cuda][embedding]") {
  const Device cuda = cuda_device();
  std::mt19937 gen(11);
  const Tensor w0 = make_input(in({64, 129}), gen);
  const Tensor indices = make_input(idx({16, 200}, 64), gen).to(cuda);  // 3200 lookups over 64 rows
  const Tensor g = random_weights({16, 200, 129}, gen).to(cuda);
  std::vector<Tensor> grads;
  for (int run = 0; run < 2; ++run) {
    Tensor w = w0.to(cuda).clone();  // a fresh leaf each run
    w.requires_grad_();
    embedding(w, indices).backward(g);
    REQUIRE(w.grad().defined());
    grads.push_back(w.grad());
  }
  REQUIRE_CLOSE(bit_equal(grads[0], grads[1]));
  // And it agrees with the CPU reference.
  Tensor wc = w0.clone();
  wc.requires_grad_();
  embedding(wc, indices.to(kCPU)).backward(g.to(kCPU));
  REQUIRE_CLOSE(all_close(grads[0], wc.grad(), tolerance(Compare::cpu_vs_cuda)));
}

TEST_CASE("CUDA vs CPU: dropout masks are identical for the same seed", "[cuda][random]") {
  const Device cuda = cuda_device();
  for (const Shape& s : std::vector<Shape>{{37, 129}, {5003}, {1}, {0, 3}, {4, 1025}}) {
    for (double p : {0.1, 0.5, 0.9}) {
      INFO("shape " << shape_str(s) << " p " << p);
      std::mt19937 gen(uint32_t(s.size() * 100 + size_t(p * 10)));
      Tensor xc = make_input(in(s, Init::positive), gen);  // nonzero, so y != 0 exactly where kept
      Tensor xg = xc.to(cuda).clone();
      xc.requires_grad_();
      xg.requires_grad_();
      const Tensor w = random_weights(s, gen);
      manual_seed(1234);
      const Tensor yc = dropout(xc, p, true);
      yc.backward(w);  // each backward consumes the whole tape: finish the CPU graph before the CUDA one
      manual_seed(1234);
      const Tensor yg = dropout(xg, p, true);
      yg.backward(w.to(cuda));
      REQUIRE(yg.device() == cuda);
      const std::vector<float> vc = yc.detach().to_vector<float>(), vg = yg.detach().to(kCPU).to_vector<float>();
      REQUIRE(vc.size() == vg.size());
      int64_t mismatched = 0, kept = 0;
      for (size_t i = 0; i < vc.size(); ++i) {
        mismatched += (vc[i] != 0.f) != (vg[i] != 0.f);
        kept += vc[i] != 0.f;
      }
      REQUIRE(mismatched == 0);
      if (vc.size() >= 1000) {  // the mask really drops about p of the elements
        const double kept_frac = double(kept) / double(vc.size());
        REQUIRE(std::abs(kept_frac - (1.0 - p)) < 0.05);
      }
      REQUIRE_CLOSE(all_close(yg, yc, tolerance(Compare::cpu_vs_cuda)));
      REQUIRE(xc.grad().defined());
      REQUIRE(xg.grad().defined());
      REQUIRE_CLOSE(all_close(xg.grad(), xc.grad(), tolerance(Compare::cpu_vs_cuda)));
    }
  }
  // Eval mode is the identity on CUDA too.
  const Tensor x = ones({5, 5}, TensorOptions(DType::f32, cuda));
  REQUIRE_CLOSE(bit_equal(dropout(x, 0.5, false), x));
}

TEST_CASE("CUDA vs CPU: rand and randn replay the same numbers for the same seed", "[cuda][random]") {
  const Device cuda = cuda_device();
  for (const Shape& s : std::vector<Shape>{{1003}, {1}, {0}, {33, 65}, {5, 4099}}) {
    INFO("shape " << shape_str(s));
    manual_seed(42);
    const Tensor uc1 = rand(s), nc1 = randn(s), uc2 = rand(s);
    manual_seed(42);
    const Tensor ug1 = rand(s, cuda), ng1 = randn(s, cuda), ug2 = rand(s, cuda);
    REQUIRE(ug1.device() == cuda);
    REQUIRE_CLOSE(bit_equal(ug1, uc1));
    REQUIRE_CLOSE(bit_equal(ug2, uc2));
    REQUIRE_CLOSE(all_close(ng1, nc1, Tolerance{1e-6, 1e-6}));
    for (float u : ug1.to(kCPU).to_vector<float>()) {
      REQUIRE(u >= 0.f);
      REQUIRE(u < 1.f);
    }
    for (float v : ng1.to(kCPU).to_vector<float>()) REQUIRE(std::isfinite(v));
  }
  // Consecutive draws differ (the generator advances on CUDA as on the CPU).
  manual_seed(3);
  const Tensor a = rand({256}, cuda), b = rand({256}, cuda);
  REQUIRE_FALSE(bit_equal(a, b).ok);
}
