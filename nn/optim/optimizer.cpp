// SGD, AdamW, the learning-rate schedule and clipping on top of the engine's multi-tensor primitives.
#include "nn/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace mixgrad::nn {

Optimizer::Optimizer(std::vector<Tensor> params) : params_(std::move(params)) {
  for (size_t i = 0; i < params_.size(); ++i)
    MIXGRAD_CHECK(params_[i].defined() && params_[i].is_leaf() && is_floating(params_[i].dtype()),
                  "optimizer: parameter {} must be a floating-point leaf tensor", i);
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

namespace {
std::vector<Tensor> grads_of(const std::vector<Tensor>& params) {
  std::vector<Tensor> g;
  for (const Tensor& p : params) g.push_back(p.grad());
  return g;
}

Tensor step_tensor(int64_t steps) { return from_vector<int64_t>({steps}, {1}); }

int64_t read_step(const NamedTensors& state, const char* who) {
  for (const auto& [n, t] : state)
    if (n == "step") return t.to(kCPU).to_vector<int64_t>().at(0);
  throw Error(fmt::format("{}: optimizer state has no \"step\" entry", who));
}

void load_list(const NamedTensors& state, const std::string& prefix, std::vector<Tensor>& dst, const char* who) {
  for (size_t i = 0; i < dst.size(); ++i) {
    const std::string name = prefix + std::to_string(i);
    const Tensor* src = nullptr;
    for (const auto& [n, t] : state)
      if (n == name) src = &t;
    MIXGRAD_CHECK(src != nullptr, "{}: optimizer state is missing \"{}\"", who, name);
    MIXGRAD_CHECK(src->shape() == dst[i].shape(), "{}: \"{}\" has shape {}, expected {}", who, name,
                  shape_str(src->shape()), shape_str(dst[i].shape()));
    dst[i].copy_(*src);
  }
}
}  // namespace

AdamW::AdamW(std::vector<Tensor> params, AdamWHyper h, std::vector<bool> decay)
    : Optimizer(std::move(params)), hyper(h), decay_(std::move(decay)) {
  MIXGRAD_CHECK(decay_.empty() || decay_.size() == params_.size(),
                "AdamW: {} weight-decay flags for {} parameters (give one per parameter, or none)", decay_.size(),
                params_.size());
  lr_ = h.lr;
  for (const Tensor& p : params_) {
    exp_avg_.push_back(zeros_like(p));
    exp_avg_sq_.push_back(zeros_like(p));
  }
}

void AdamW::step() {
  NoGradGuard ng;
  ++steps_;
  AdamWHyper h = hyper;
  h.lr = lr_;
  const std::vector<Tensor> grads = grads_of(params_);
  if (decay_.empty()) {
    adamw_step_(params_, grads, exp_avg_, exp_avg_sq_, h, steps_);
    return;
  }
  // Two fused updates: the decayed parameters, then the exempt ones with weight decay 0.
  for (const bool decayed : {true, false}) {
    std::vector<Tensor> p, g, m, v;
    for (size_t i = 0; i < params_.size(); ++i)
      if (decay_[i] == decayed) {
        p.push_back(params_[i]), g.push_back(grads[i]), m.push_back(exp_avg_[i]), v.push_back(exp_avg_sq_[i]);
      }
    if (p.empty()) continue;
    AdamWHyper hg = h;
    if (!decayed) hg.weight_decay = 0;
    adamw_step_(p, g, m, v, hg, steps_);
  }
}

NamedTensors AdamW::state() const {
  NamedTensors s{{"step", step_tensor(steps_)}};
  for (size_t i = 0; i < params_.size(); ++i) s.emplace_back("exp_avg." + std::to_string(i), exp_avg_[i]);
  for (size_t i = 0; i < params_.size(); ++i) s.emplace_back("exp_avg_sq." + std::to_string(i), exp_avg_sq_[i]);
  return s;
}

void AdamW::load_state(const NamedTensors& state) {
  steps_ = read_step(state, "AdamW");
  load_list(state, "exp_avg.", exp_avg_, "AdamW");
  load_list(state, "exp_avg_sq.", exp_avg_sq_, "AdamW");
}

SGD::SGD(std::vector<Tensor> params, SGDHyper h) : Optimizer(std::move(params)), hyper(h) {
  lr_ = h.lr;
  MIXGRAD_CHECK(!h.nesterov || (h.momentum > 0 && h.dampening == 0), "SGD: Nesterov needs momentum > 0 and zero dampening");
  for (const Tensor& p : params_) momentum_.push_back(h.momentum != 0 ? zeros_like(p) : Tensor());
  started_.assign(params_.size(), false);
}

void SGD::step() {
  NoGradGuard ng;
  ++steps_;
  SGDHyper h = hyper;
  h.lr = lr_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    sgd_step_(params_[i], g, momentum_[i], h, !started_[i]);
    started_[i] = true;
  }
}

NamedTensors SGD::state() const {
  NamedTensors s{{"step", step_tensor(steps_)}};
  std::vector<uint8_t> started(started_.begin(), started_.end());
  s.emplace_back("started", from_vector<uint8_t>(started, {int64_t(started.size())}));
  if (hyper.momentum != 0)
    for (size_t i = 0; i < params_.size(); ++i) s.emplace_back("momentum." + std::to_string(i), momentum_[i]);
  return s;
}

void SGD::load_state(const NamedTensors& state) {
  steps_ = read_step(state, "SGD");
  for (const auto& [n, t] : state)
    if (n == "started") {
      std::vector<uint8_t> v = t.to(kCPU).to_vector<uint8_t>();
      MIXGRAD_CHECK(v.size() == started_.size(), "SGD: state has {} parameters, optimizer has {}", v.size(), started_.size());
      for (size_t i = 0; i < v.size(); ++i) started_[i] = v[i] != 0;
    }
  if (hyper.momentum != 0) load_list(state, "momentum.", momentum_, "SGD");
}

double WarmupCosine::operator()(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) return base_lr * double(step + 1) / double(warmup_steps);
  const int64_t decay = std::max<int64_t>(1, total_steps - warmup_steps);
  const double t = std::min(1.0, double(step - warmup_steps) / double(decay));
  return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + std::cos(std::numbers::pi * t));
}

double LrSchedule::operator()(int64_t step) const {
  if (kind == Kind::cosine) return WarmupCosine{peak, min_lr, warmup_steps, total_steps}(step);
  if (warmup_steps > 0 && step < warmup_steps) return peak * double(step + 1) / double(warmup_steps);
  const int64_t decay = std::max<int64_t>(1, total_steps - warmup_steps);
  const double t = std::clamp(double(step - warmup_steps) / double(decay), 0.0, 1.0);
  switch (kind) {
    case Kind::linear: return peak - (peak - min_lr) * t;
    case Kind::rsqrt: return peak * std::sqrt(double(std::max<int64_t>(warmup_steps, 1)) / double(step + 1));
    case Kind::constant:
    case Kind::cosine: break;
  }
  return peak;
}

LrSchedule::Kind LrSchedule::parse(const std::string& n) {
  for (Kind k : {Kind::cosine, Kind::linear, Kind::rsqrt, Kind::constant})
    if (n == name(k)) return k;
  throw Error(fmt::format("unknown learning-rate schedule \"{}\" (known: cosine, linear, rsqrt, constant)", n));
}

const char* LrSchedule::name(Kind k) {
  switch (k) {
    case Kind::cosine: return "cosine";
    case Kind::linear: return "linear";
    case Kind::rsqrt: return "rsqrt";
    case Kind::constant: return "constant";
  }
  return "cosine";
}

Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard ng;
  return clip_grad_norm_(grads_of(params), max_norm);
}

}  // namespace mixgrad::nn
