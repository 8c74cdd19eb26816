// Module registration, traversal, device moves and state_dict.
#include "nn/module.h"

#include <set>

namespace mixgrad::nn {

void Module::check_name(const std::string& name) const {
  MIXGRAD_CHECK(!name.empty() && name.find('.') == std::string::npos,
                "{}: invalid member name \"{}\" (non-empty, no dots)", type_name_, name);
  for (const auto& [n, p] : params_) MIXGRAD_CHECK(n != name, "{}: \"{}\" is already registered", type_name_, name);
  for (const auto& [n, p] : buffers_) MIXGRAD_CHECK(n != name, "{}: \"{}\" is already registered", type_name_, name);
  for (const auto& [n, p] : children_) MIXGRAD_CHECK(n != name, "{}: \"{}\" is already registered", type_name_, name);
}

Tensor& Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_name(name);
  MIXGRAD_CHECK(t.defined(), "{}: parameter \"{}\" is undefined", type_name_, name);
  Tensor p = t.detach();
  if (requires_grad) p.requires_grad_();
  params_.emplace_back(name, std::make_unique<Tensor>(p));
  return *params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name);
  buffers_.emplace_back(name, std::make_unique<Tensor>(t.detach()));
  return *buffers_.back().second;
}

void Module::collect(const std::string& prefix, bool params, bool recurse, NamedTensors& out) const {
  for (const auto& [n, t] : params ? params_ : buffers_) out.emplace_back(prefix + n, *t);
  if (!recurse) return;
  for (const auto& [n, m] : children_) m->collect(prefix + n + ".", params, true, out);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  collect("", true, recurse, out);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  collect("", false, recurse, out);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, m] : children_) m->train(on);
}

namespace {
// Replaces the data behind `dst` (keeping its identity, requires_grad and leaf status) with `src`'s.
void rebind(Tensor& dst, const Tensor& src) {
  TensorImpl& d = dst.impl();
  const TensorImpl& s = src.impl();
  d.storage = s.storage;
  d.offset = s.offset;
  d.dtype = s.dtype;
  d.grad = nullptr;
}
}  // namespace

void Module::to(Device device) {
  NoGradGuard ng;
  for (auto& [n, t] : params_) rebind(*t, t->detach().to(device));
  for (auto& [n, t] : buffers_) rebind(*t, t->detach().to(device));
  for (auto& [n, m] : children_) m->to(device);
}

void Module::to(DType dtype) {
  NoGradGuard ng;
  for (auto& [n, t] : params_) rebind(*t, t->detach().to(dtype));
  for (auto& [n, t] : buffers_)
    if (is_floating(t->dtype())) rebind(*t, t->detach().to(dtype));
  for (auto& [n, m] : children_) m->to(dtype);
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.zero_grad();
}

NamedTensors Module::state_dict() const {
  NamedTensors out = named_parameters();
  NamedTensors b = named_buffers();
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

void Module::load_state_dict(const NamedTensors& state, bool strict) {
  NoGradGuard ng;
  std::map<std::string, const Tensor*> given;
  for (const auto& [n, t] : state) {
    MIXGRAD_CHECK(given.emplace(n, &t).second, "load_state_dict: \"{}\" appears twice", n);
  }
  // Validate everything first, so a failed load leaves the model untouched.
  std::set<std::string> used;
  std::vector<std::string> missing;
  std::vector<std::pair<Tensor, const Tensor*>> copies;
  for (auto& [name, dst] : state_dict()) {
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
      continue;
    }
    const Tensor& src = *it->second;
    MIXGRAD_CHECK(src.shape() == dst.shape(), "load_state_dict: \"{}\" has shape {} in the checkpoint, the model expects {}",
                  name, shape_str(src.shape()), shape_str(dst.shape()));
    MIXGRAD_CHECK(src.dtype() == dst.dtype(), "load_state_dict: \"{}\" is {} in the checkpoint, the model expects {}", name,
                  src.dtype(), dst.dtype());
    copies.emplace_back(dst, &src);
    used.insert(name);
  }
  if (strict) {
    std::vector<std::string> unexpected;
    for (const auto& [n, t] : state)
      if (!used.count(n)) unexpected.push_back(n);
    MIXGRAD_CHECK(missing.empty() && unexpected.empty(), "load_state_dict: missing keys [{}]; unexpected keys [{}]",
                  fmt::join(missing, ", "), fmt::join(unexpected, ", "));
  }
  for (auto& [dst, src] : copies) dst.copy_(*src);
}

std::string Module::summary() const {
  std::string s;
  for (const auto& [n, t] : named_parameters()) s += fmt::format("  {:<40} {}\n", n, shape_str(t.shape()));
  s += fmt::format("  total parameters: {}\n", num_parameters());
  return s;
}

}  // namespace mixgrad::nn
