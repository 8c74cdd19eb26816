// The fused LSTM op (engine/lstm.h) and nn::LSTM against a naive float64 step-by-step implementation written
// here with explicit loops (PyTorch nn.LSTM semantics: gates i, f, g, o; packed-sequence lengths), float64 finite
// differences for x and every weight and bias, padding invariance (garbage, NaN included, in padded positions leaves
// every valid output and every weight gradient bit-identical), h_n, PyTorch 1.13 values on fixed weights (constants
// computed offline, the script is quoted below), parameter names/initialisation and errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "engine/lstm.h"
#include "engine/mixgrad.h"
#include "nn/lstm.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using Catch::Matchers::Contains;
using Vec = std::vector<double>;

double sigm(double v) { return 1.0 / (1.0 + std::exp(-v)); }

struct RefDir {
  Vec w_ih, w_hh, b_ih, b_hh;  // [4H, D], [4H, H], [4H], [4H]
};

// One layer, step by step: y [B, L, dirs·H] and h_n [dirs, B, H].
void ref_layer(const Vec& x, int64_t B, int64_t L, int64_t D, int64_t H, const std::vector<RefDir>& dirs,
               const std::vector<int32_t>& len, Vec& y, Vec& h_n) {
  const int64_t nd = int64_t(dirs.size());
  y.assign(size_t(B * L * nd * H), 0.0);
  h_n.assign(size_t(nd * B * H), 0.0);
  for (int64_t d = 0; d < nd; ++d) {
    const RefDir& w = dirs[size_t(d)];
    for (int64_t b = 0; b < B; ++b) {
      Vec h(size_t(H), 0.0), c(size_t(H), 0.0);
      const int64_t n = len[size_t(b)];
      for (int64_t t = 0; t < n; ++t) {
        const int64_t pos = d == 0 ? t : n - 1 - t;
        Vec a(size_t(4 * H));
        for (int64_t r = 0; r < 4 * H; ++r) {
          double s = w.b_ih[size_t(r)] + w.b_hh[size_t(r)];
          for (int64_t k = 0; k < D; ++k) s += w.w_ih[size_t(r * D + k)] * x[size_t((b * L + pos) * D + k)];
          for (int64_t k = 0; k < H; ++k) s += w.w_hh[size_t(r * H + k)] * h[size_t(k)];
          a[size_t(r)] = s;
        }
        for (int64_t j = 0; j < H; ++j) {
          const double i = sigm(a[size_t(j)]), f = sigm(a[size_t(H + j)]), g = std::tanh(a[size_t(2 * H + j)]),
                       o = sigm(a[size_t(3 * H + j)]);
          c[size_t(j)] = f * c[size_t(j)] + i * g;
          h[size_t(j)] = o * std::tanh(c[size_t(j)]);
          y[size_t((b * L + pos) * nd * H + d * H + j)] = h[size_t(j)];
        }
      }
      for (int64_t j = 0; j < H; ++j) h_n[size_t((d * B + b) * H + j)] = h[size_t(j)];
    }
  }
}

Vec host(const Tensor& t) { return t.detach().to(kCPU).to(DType::f64).to_vector<double>(); }

// The whole stack through the reference: y of the last layer and h_n [layers·dirs, B, H].
void ref_lstm(nn::LSTM& m, const Tensor& x, const std::vector<int32_t>& len, Vec& y, Vec& h_n) {
  const int64_t B = x.size(0), L = x.size(1), H = m.hidden_size;
  Vec in = host(x);
  int64_t D = x.size(2);
  h_n.clear();
  for (int64_t k = 0; k < m.num_layers; ++k) {
    std::vector<RefDir> dirs;
    for (const LstmDirection& w : m.layer(k)) dirs.push_back({host(w.w_ih), host(w.w_hh), host(w.b_ih), host(w.b_hh)});
    Vec hn;
    ref_layer(in, B, L, D, H, dirs, len, y, hn);
    h_n.insert(h_n.end(), hn.begin(), hn.end());
    in = y;
    D = int64_t(dirs.size()) * H;
  }
}

Tensor as_tensor(const Vec& v, const Shape& s) { return from_vector<double>(v, s, TensorOptions(DType::f64)); }

struct Config {
  int64_t layers;
  bool bidirectional;
};
const Config kConfigs[] = {{1, false}, {1, true}, {2, false}, {2, true}};

}  // namespace

TEST_CASE("lstm: forward equals the step-by-step float64 reference (lengths L, L-2, 1; y and h_n)", "[lstm]") {
  const int64_t B = 3, L = 6, D = 3, H = 4;
  const std::vector<int32_t> len{6, 4, 1};
  const Tensor lengths = from_vector<int32_t>(len, {B}, TensorOptions(DType::i32));
  for (const Config& cfg : kConfigs) {
    for (DType dt : {DType::f64, DType::f32}) {
      CAPTURE(cfg.layers, cfg.bidirectional, dt);
      manual_seed(7);
      nn::LSTM m(D, H, cfg.layers, cfg.bidirectional);
      m.to(dt);
      const Tensor x = randn({B, L, D}).to(dt);
      const nn::LSTM::Output out = m.forward(x, lengths);
      const int64_t dirs = cfg.bidirectional ? 2 : 1;
      REQUIRE(out.y.shape() == Shape{B, L, dirs * H});
      REQUIRE(out.h_n.shape() == Shape{cfg.layers * dirs, B, H});
      Vec y, h_n;
      ref_lstm(m, x, len, y, h_n);
      const auto tol =
          testing::tolerance(dt == DType::f64 ? testing::Compare::forward_f64 : testing::Compare::forward_f32);
      REQUIRE_CLOSE(testing::all_close(out.y.to(DType::f64), as_tensor(y, out.y.shape()), tol));
      REQUIRE_CLOSE(testing::all_close(out.h_n.to(DType::f64), as_tensor(h_n, out.h_n.shape()), tol));
      // Padded outputs are exactly zero; h_n of the forward direction is y at the last valid token.
      const Vec yv = host(out.y), hv = host(out.h_n);
      const int64_t last = (cfg.layers - 1) * dirs;
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t t = len[size_t(b)]; t < L; ++t)
          for (int64_t j = 0; j < dirs * H; ++j) REQUIRE(yv[size_t((b * L + t) * dirs * H + j)] == 0.0);
        for (int64_t j = 0; j < H; ++j) {
          REQUIRE(hv[size_t((last * B + b) * H + j)] == yv[size_t((b * L + len[size_t(b)] - 1) * dirs * H + j)]);
          if (dirs == 2) REQUIRE(hv[size_t(((last + 1) * B + b) * H + j)] == yv[size_t(b * L * dirs * H + H + j)]);
        }
      }
    }
  }
}

TEST_CASE("lstm: without lengths every sample runs the full sequence", "[lstm]") {
  const int64_t B = 2, L = 5, D = 2, H = 3;
  manual_seed(11);
  nn::LSTM m(D, H, 2, true);
  m.to(DType::f64);
  const Tensor x = randn({B, L, D}).to(DType::f64);
  const nn::LSTM::Output a = m.forward(x);
  const nn::LSTM::Output b = m.forward(x, from_vector<int32_t>({5, 5}, {B}, TensorOptions(DType::i32)));
  Vec y, h_n;
  ref_lstm(m, x, {5, 5}, y, h_n);
  REQUIRE_CLOSE(testing::all_close(a.y, as_tensor(y, a.y.shape()), testing::tolerance(testing::Compare::forward_f64)));
  REQUIRE_CLOSE(testing::bit_equal(a.y, b.y));
  REQUIRE_CLOSE(testing::bit_equal(a.h_n, b.h_n));
}

TEST_CASE("lstm: gradients of x and every weight and bias match central finite differences (float64)", "[lstm]") {
  const int64_t B = 3, L = 5, D = 2, H = 3;
  const Tensor lengths = from_vector<int32_t>({5, 3, 1}, {B}, TensorOptions(DType::i32));
  for (const Config& cfg : kConfigs) {
    CAPTURE(cfg.layers, cfg.bidirectional);
    manual_seed(23);
    const int64_t dirs = cfg.bidirectional ? 2 : 1;
    std::vector<Tensor> inputs{testing::rand_f64({B, L, D})};
    for (int64_t k = 0; k < cfg.layers; ++k) {
      const int64_t in = k == 0 ? D : dirs * H;
      for (int64_t d = 0; d < dirs; ++d) {
        inputs.push_back(testing::rand_f64({4 * H, in}, -0.6, 0.6));
        inputs.push_back(testing::rand_f64({4 * H, H}, -0.6, 0.6));
        inputs.push_back(testing::rand_f64({4 * H}, -0.6, 0.6));
        inputs.push_back(testing::rand_f64({4 * H}, -0.6, 0.6));
      }
    }
    auto f = [&](const std::vector<Tensor>& in) {
      Tensor h = in[0];
      std::vector<Tensor> parts;
      size_t next = 1;
      for (int64_t k = 0; k < cfg.layers; ++k) {
        std::vector<LstmDirection> w;
        for (int64_t d = 0; d < dirs; ++d, next += 4) w.push_back({in[next], in[next + 1], in[next + 2], in[next + 3]});
        LstmLayerOutput out = lstm_layer(h, w, lengths);
        parts.push_back(out.h_n.flatten());
        h = out.y;
      }
      parts.push_back(h.flatten());
      return cat(parts, 0);
    };
    REQUIRE_CLOSE(testing::gradcheck(f, inputs));
  }
}

TEST_CASE("lstm: garbage in padded positions leaves outputs and weight gradients bit-identical", "[lstm]") {
  const int64_t B = 3, L = 6, D = 3, H = 4;
  const std::vector<int32_t> len{6, 4, 1};
  const Tensor lengths = from_vector<int32_t>(len, {B}, TensorOptions(DType::i32));
  for (const Config& cfg : kConfigs) {
    for (DType dt : {DType::f64, DType::f32}) {
      CAPTURE(cfg.layers, cfg.bidirectional, dt);
      manual_seed(5);
      nn::LSTM m(D, H, cfg.layers, cfg.bidirectional);
      m.to(dt);
      Vec clean = host(randn({B, L, D}));
      Vec dirty = clean;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = len[size_t(b)]; t < L; ++t)
          for (int64_t k = 0; k < D; ++k)
            dirty[size_t((b * L + t) * D + k)] =
                (t + k) % 3 == 0 ? std::numeric_limits<double>::quiet_NaN() : 1e4 * double(t - k - 1);
      std::vector<Vec> grads[2];
      Vec ys[2], hs[2], dxs[2];
      for (int run = 0; run < 2; ++run) {
        m.zero_grad();
        Tensor x = as_tensor(run == 0 ? clean : dirty, {B, L, D}).to(dt).requires_grad_();
        const nn::LSTM::Output out = m.forward(x, lengths);
        const Tensor loss = add(sum(mul(out.y, out.y)), sum(out.h_n));
        autograd::backward(loss);
        ys[run] = host(out.y);
        hs[run] = host(out.h_n);
        dxs[run] = host(x.grad());
        for (const Tensor& p : m.parameters()) grads[run].push_back(host(p.grad()));
      }
      REQUIRE(ys[0] == ys[1]);
      REQUIRE(hs[0] == hs[1]);
      REQUIRE(dxs[0] == dxs[1]);
      for (size_t i = 0; i < grads[0].size(); ++i) REQUIRE(grads[0][i] == grads[1][i]);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = len[size_t(b)]; t < L; ++t)
          for (int64_t k = 0; k < D; ++k) REQUIRE(dxs[1][size_t((b * L + t) * D + k)] == 0.0);
    }
  }
}

TEST_CASE("lstm: nn::LSTM registers PyTorch's parameter names, shapes and U(-1/sqrt(H), 1/sqrt(H)) init", "[lstm]") {
  nn::LSTM m(5, 16, 2, true, 0.1);
  const std::vector<std::string> names{
      "weight_ih_l0",         "weight_hh_l0",         "bias_ih_l0",         "bias_hh_l0",
      "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
      "weight_ih_l1",         "weight_hh_l1",         "bias_ih_l1",         "bias_hh_l1",
      "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse"};
  const nn::NamedTensors params = m.named_parameters();
  REQUIRE(params.size() == names.size());
  for (size_t i = 0; i < names.size(); ++i) REQUIRE(params[i].first == names[i]);
  REQUIRE(params[0].second.shape() == Shape{64, 5});
  REQUIRE(params[1].second.shape() == Shape{64, 16});
  REQUIRE(params[2].second.shape() == Shape{64});
  REQUIRE(params[8].second.shape() == Shape{64, 32});
  double lo = 1, hi = -1;
  for (const auto& [name, t] : params)
    for (double v : host(t)) lo = std::min(lo, v), hi = std::max(hi, v);
  REQUIRE(lo >= -0.25);
  REQUIRE(hi <= 0.25);
  REQUIRE(lo < -0.2);  // the whole range is used
  REQUIRE(hi > 0.2);
  // Dropout between layers only in training: eval output is deterministic and equals a dropout-free stack.
  m.eval();
  manual_seed(3);
  const Tensor x = randn({2, 4, 5});
  REQUIRE_CLOSE(testing::bit_equal(m.forward(x).y, m.forward(x).y));
  REQUIRE_THROWS_WITH(nn::LSTM(0, 4), Contains("input_size = 0"));
  REQUIRE_THROWS_WITH(nn::LSTM(3, 4, 1, false, 1.0), Contains("dropout = 1"));
  REQUIRE_THROWS_WITH(m.forward(randn({2, 4, 6})), Contains("expected [B, L, input_size = 5]"));
}

TEST_CASE("lstm: bad arguments are errors naming what was expected", "[lstm]") {
  const int64_t H = 2;
  const LstmDirection w{zeros({4 * H, 3}), zeros({4 * H, H}), zeros({4 * H}), zeros({4 * H})};
  const Tensor x = zeros({2, 4, 3});
  REQUIRE_THROWS_WITH(lstm_layer(zeros({2, 4}), {w}), Contains("x must be 3-D [B, L, D]"));
  REQUIRE_THROWS_WITH(lstm_layer(x, {}), Contains("expected 1 (unidirectional) or 2"));
  REQUIRE_THROWS_WITH(lstm_layer(x, {w, w, w}), Contains("3 directions given"));
  REQUIRE_THROWS_WITH(lstm_layer(zeros({2, 4, 5}), {w}),
                      Contains("direction 0 w_ih has shape [8, 3], expected [8, 5]"));
  LstmDirection bad = w;
  bad.b_hh = zeros({5});
  REQUIRE_THROWS_WITH(lstm_layer(x, {w, bad}), Contains("direction 1 b_hh has shape [5], expected [8]"));
  bad = w;
  bad.w_hh = zeros({8, 3});
  REQUIRE_THROWS_WITH(lstm_layer(x, {bad}), Contains("expected [4H, H]"));
  bad = w;
  bad.w_ih = zeros({8, 3}, TensorOptions(DType::f64));
  REQUIRE_THROWS_WITH(lstm_layer(x, {bad}), Contains("expected x's dtype"));
  REQUIRE_THROWS_WITH(lstm_layer(x, {w}, from_vector<int32_t>({4, 0}, {2}, TensorOptions(DType::i32))),
                      Contains("lengths[1] = 0 is outside [1, L] = [1, 4]"));
  REQUIRE_THROWS_WITH(lstm_layer(x, {w}, from_vector<int32_t>({4, 5}, {2}, TensorOptions(DType::i32))),
                      Contains("lengths[1] = 5 is outside [1, L] = [1, 4]"));
  REQUIRE_THROWS_WITH(lstm_layer(x, {w}, zeros({3}, TensorOptions(DType::i32))),
                      Contains("lengths has shape [3], expected [B] = [2]"));
  REQUIRE_THROWS_WITH(lstm_layer(x, {w}, zeros({2})), Contains("lengths has dtype"));
}

TEST_CASE("lstm: the tape node applied to y's gradient alone treats h_n's gradient as zero", "[lstm]") {
  manual_seed(17);
  nn::LSTM m(3, 4, 1, true);
  m.to(DType::f64);
  const Tensor lengths = from_vector<int32_t>({5, 2}, {2}, TensorOptions(DType::i32));
  const Tensor x = randn({2, 5, 3}).to(DType::f64).requires_grad_();
  const Tensor dy = randn({2, 5, 8}).to(DType::f64);
  // Through the tape: the loss touches y only, so autograd fills h_n's gradient with zeros.
  const nn::LSTM::Output out = m.forward(x, lengths);
  autograd::backward(sum(mul(out.y, dy)));
  const Tensor want = x.grad();
  // The node itself (as apps/bench times it), given one gradient.
  const Tensor y = m.forward(x, lengths).y;
  const std::shared_ptr<autograd::Node> node = y.impl().grad_fn.lock();
  REQUIRE(node);
  const std::vector<Tensor> grads = node->apply({dy});
  autograd::clear_tape();
  REQUIRE(grads.size() == 9);  // x, then w_ih, w_hh, b_ih, b_hh per direction
  REQUIRE_CLOSE(testing::bit_equal(grads[0], want));
}

// PyTorch 1.13.0 (float64) reference values for a fixed 2-layer bidirectional nn.LSTM(3, 2, batch_first=True) with
// lengths {4, 2} through pack_padded_sequence / pad_packed_sequence, computed offline once (not at test time) by this
// script run with /usr/bin/python3 (torch 1.13.0a0, torch.set_default_dtype(torch.float64)):
//   m = nn.LSTM(3, 2, num_layers=2, bidirectional=True, batch_first=True)
//   parameter p_idx (named_parameters order), flat element e  <- 0.5·sin(1.3·e + 0.7·p_idx + 0.1)
//   x[b, t, k] = cos(0.9·((b·4 + t)·3 + k)), lengths = [4, 2] (enforce_sorted=False)
//   out, (h_n, c_n) = m(packed); y = pad_packed_sequence(out, batch_first=True, total_length=4)
//   (y.sum() + h_n.sum()).backward(); printed y, h_n, x.grad, weight_hh_l0_reverse.grad, bias_ih_l1.grad (%.17g).
namespace {
const Vec kTorchY{0.14384267094692776,
                  0.11492315736010136,
                  -0.052619350880488011,
                  -0.37474649265870053,
                  0.15121123305313047,
                  0.14718869883213437,
                  -0.034243881608972716,
                  -0.33625382586769631,
                  0.12867673570328494,
                  0.1686317544917087,
                  -0.0085560754891354385,
                  -0.27240097357057197,
                  0.10870102434151185,
                  0.17733167154760285,
                  0.0050262637077875243,
                  -0.15888534810676713,
                  0.12343248876593271,
                  0.12481623134265728,
                  -0.011270255799495388,
                  -0.27575499986998619,
                  0.12230340865946912,
                  0.15888608813218641,
                  1.2130964323016113e-06,
                  -0.16903418485658703,
                  0,
                  0,
                  0,
                  0,
                  0,
                  0,
                  0,
                  0};
const Vec kTorchHn{0.19654036902517003,   0.14305661022678884,  0.14192980647225723,   0.17938755879939053,
                   -0.21487627873245682,  -0.38823048155763606, -0.072191806362036176, -0.41034780189472753,
                   0.10870102434151185,   0.17733167154760285,  0.12230340865946912,   0.15888608813218641,
                   -0.052619350880488011, -0.37474649265870053, -0.011270255799495388, -0.27575499986998619};
const Vec kTorchDx{0.0026810009713213508,
                   0.00823616763884015,
                   0.0017253294201697404,
                   -0.075552155486375505,
                   -0.025686082552082119,
                   0.061810161497102833,
                   -0.029803541217491909,
                   -0.07804067149923688,
                   -0.011948035204752197,
                   -0.033015596359786153,
                   -0.026124499656359507,
                   0.019039050246826995,
                   -0.065848437517269612,
                   -0.12148616222060597,
                   0.00085362534105234067,
                   -0.071415472198291377,
                   -0.081190748149891662,
                   0.027978612147791675,
                   0,
                   0,
                   0,
                   0,
                   0,
                   0};
const Vec kTorchDWhhL0Rev{0.0091854192380427472, 0.032713010344575938, 0.051826663641425838,  0.062068250789999495,
                          0.013951788012752538,  0.025589184313870857, 0.022468902149342954,  0.047896922339550244,
                          -0.039492884981506958, -0.07771289928030771, -0.048165354751215556, -0.091809434680284033,
                          0.016794930963817348,  0.032480639043126633, 0.04170777701825007,   0.079255977727168483};
const Vec kTorchDBihL1{0.24550418069446983, 0.37258312560793405, 0.17983152486015117, 0.15887367669164437,
                       3.1930278273748725,  0.34912408993626165, 0.3746938255472379,  0.82364447438159316};
}  // namespace

TEST_CASE("lstm: matches PyTorch 1.13 nn.LSTM with packed sequences on fixed weights (constants computed offline)",
          "[lstm]") {
  const int64_t B = 2, L = 4, D = 3, H = 2;
  nn::LSTM m(D, H, 2, true);
  m.to(DType::f64);
  nn::NamedTensors state;
  int p_idx = 0;
  for (const auto& [name, t] : m.named_parameters()) {
    Vec v(size_t(t.numel()));
    for (size_t e = 0; e < v.size(); ++e) v[e] = 0.5 * std::sin(1.3 * double(e) + 0.7 * p_idx + 0.1);
    state.emplace_back(name, as_tensor(v, t.shape()));
    ++p_idx;
  }
  m.load_state_dict(state);
  Vec xv(size_t(B * L * D));
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = std::cos(0.9 * double(i));
  const Tensor x = as_tensor(xv, {B, L, D}).requires_grad_();
  const nn::LSTM::Output out = m.forward(x, from_vector<int32_t>({4, 2}, {B}, TensorOptions(DType::i32)));
  autograd::backward(add(sum(out.y), sum(out.h_n)));
  const testing::Tolerance tol{1e-10, 1e-12};
  const nn::NamedTensors params = m.named_parameters();
  REQUIRE(params[5].first == "weight_hh_l0_reverse");
  REQUIRE(params[10].first == "bias_ih_l1");
  REQUIRE_CLOSE(testing::all_close(out.y, as_tensor(kTorchY, out.y.shape()), tol));
  REQUIRE_CLOSE(testing::all_close(out.h_n, as_tensor(kTorchHn, out.h_n.shape()), tol));
  REQUIRE_CLOSE(testing::all_close(x.grad(), as_tensor(kTorchDx, x.shape()), tol));
  REQUIRE_CLOSE(testing::all_close(params[5].second.grad(), as_tensor(kTorchDWhhL0Rev, {4 * H, H}), tol));
  REQUIRE_CLOSE(testing::all_close(params[10].second.grad(), as_tensor(kTorchDBihL1, {4 * H}), tol));
}
