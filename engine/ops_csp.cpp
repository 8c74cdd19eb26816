// The csp op (validation, device dispatch, tape node) and the host-side shift schedules of specs/csp.md §4.
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/csp.h"
#include "engine/deferred_checks.h"
#include "engine/error.h"
#include "kernels/cpu/csp.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/csp.h"
#endif

namespace mixgrad {
namespace {

// Validated arguments of one csp call: sizes, and shifts/lengths as int32 tensors on V's device (the kernels'
// input). lengths is undefined when every sample is full length.
struct CspPlan {
  int64_t B = 0, N = 0, D = 0;
  int k = 2;
  Tensor shifts, lengths;
};

// The shift table on `device`. A model calls csp with the same few tables every step, so device copies are kept
// (content-compared, at most kCachedTables, the oldest dropped first): uploading a table per call costs a
// synchronous host-to-device copy, which dominated the op's time at ViT size on a GPU.
Tensor shift_table(const std::vector<int32_t>& shifts, Device device) {
  const Shape shape{int64_t(shifts.size())};
  if (device.is_cpu()) return from_vector<int32_t>(shifts, shape, TensorOptions(DType::i32, device));
  constexpr size_t kCachedTables = 64;
  struct Entry {
    Device device;
    std::vector<int32_t> shifts;
    Tensor table;
  };
  static std::mutex mu;
  static auto* cache_ptr = new std::deque<Entry>();  // never destroyed: no device frees after CUDA shuts down
  std::deque<Entry>& cache = *cache_ptr;
  const std::lock_guard<std::mutex> lock(mu);
  for (const Entry& e : cache)
    if (e.device == device && e.shifts == shifts) return e.table;
  Tensor table = from_vector<int32_t>(shifts, shape, TensorOptions(DType::i32, device));
  if (cache.size() == kCachedTables) cache.pop_front();
  cache.push_back({device, shifts, table});
  return table;
}

CspPlan plan_csp(const char* op, const Tensor& v, const std::vector<int32_t>& shifts, int k, const Tensor& lengths) {
  MIXGRAD_CHECK(v.defined(), "{}: V is undefined (expected a [B, N, D] tensor)", op);
  MIXGRAD_CHECK(is_floating(v.dtype()), "{}: V has dtype {}, expected float32 or float64", op, v.dtype());
  detail::check_cuda_float(op, v);
  MIXGRAD_CHECK(v.dim() == 3, "{}: V must be 3-D [B, N, D], got shape {}", op, shape_str(v.shape()));
  CspPlan p;
  p.B = v.size(0), p.N = v.size(1), p.D = v.size(2), p.k = k;
  MIXGRAD_CHECK(p.B >= 1 && p.N >= 1 && p.D >= 1, "{}: V has shape {}; expected B, N and D all >= 1", op,
                shape_str(v.shape()));
  MIXGRAD_CHECK(k == 2 || k == 4 || k == 8, "{}: K = {} is not supported (expected 2, 4 or 8)", op, k);
  MIXGRAD_CHECK(p.N % k == 0, "{}: N = {} is not a multiple of K = {} (V has shape {}; expected N % K == 0)", op, p.N,
                k, shape_str(v.shape()));
  MIXGRAD_CHECK(int64_t(shifts.size()) == p.D, "{}: shifts has {} values, expected D = {} (one per channel)", op,
                shifts.size(), p.D);
  MIXGRAD_CHECK(p.N <= std::numeric_limits<int32_t>::max(), "{}: N = {} is too large (expected N <= 2^31 - 1)", op,
                p.N);
  for (size_t c = 0; c < shifts.size(); ++c)
    MIXGRAD_CHECK(shifts[c] >= 0, "{}: shifts[{}] = {} is negative (expected a shift >= 0)", op, c, shifts[c]);
  const Device device = v.device();
  p.shifts = shift_table(shifts, device);
  if (lengths.defined()) {
    MIXGRAD_CHECK(lengths.dtype() == DType::i32 || lengths.dtype() == DType::i64,
                  "{}: lengths has dtype {}, expected int32 or int64", op, lengths.dtype());
    MIXGRAD_CHECK(lengths.dim() == 1 && lengths.size(0) == p.B, "{}: lengths has shape {}, expected [B] = [{}]", op,
                  shape_str(lengths.shape()), p.B);
    if (!device.is_cpu() && !lengths.device().is_cpu()) {
#ifdef MIXGRAD_WITH_CUDA
      // Lengths already on the GPU are validated there (a per-call read-back would make every LRA layer wait for
      // the GPU); an out-of-range length is clamped for the kernels and reported at the next read-back.
      MIXGRAD_CHECK(lengths.device() == device, "{}: lengths is on {}, V on {} (expected the same device)", op,
                    lengths.device(), device);
      Tensor flag = zeros({1}, TensorOptions(DType::i32, device));
      p.lengths = empty({p.B}, TensorOptions(DType::i32, device));
      kernels::cuda::csp_prepare_lengths(p.lengths.data<int32_t>(), lengths.raw_data(), lengths.dtype() == DType::i64,
                                         p.B, p.N, flag.data<int32_t>(), detail::stream_of(v));
      detail::defer_check(flag, fmt::format("{}: a length is outside [1, N] = [1, {}] (lengths holds each sample's "
                                            "valid token count)", op, p.N));
#endif
      return p;
    }
    Tensor host = lengths.to(kCPU);
    std::vector<int64_t> n(p.B);
    if (host.dtype() == DType::i32) {
      const auto h = host.to_vector<int32_t>();
      n.assign(h.begin(), h.end());
    } else {
      n = host.to_vector<int64_t>();
    }
    std::vector<int32_t> n32(p.B);
    for (int64_t b = 0; b < p.B; ++b) {
      MIXGRAD_CHECK(n[b] >= 1 && n[b] <= p.N, "{}: lengths[{}] = {} is outside [1, N] = [1, {}]", op, b, n[b], p.N);
      n32[b] = static_cast<int32_t>(n[b]);
    }
    p.lengths = from_vector<int32_t>(n32, {p.B}, TensorOptions(DType::i32, device));
  }
  return p;
}

const int32_t* lengths_ptr(const CspPlan& p) { return p.lengths.defined() ? p.lengths.data<int32_t>() : nullptr; }

Tensor run_forward(const Tensor& v, const CspPlan& p) {
  Tensor y = empty_like(v);
  if (v.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(v.dtype(), "csp", [&] {
      kernels::cpu::csp_forward(y.data<scalar_t>(), v.data<scalar_t>(), p.shifts.data<int32_t>(), lengths_ptr(p), p.B,
                                p.N, p.D, p.k);
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    kernels::cuda::csp_forward(y.data<float>(), v.data<float>(), p.shifts.data<int32_t>(), lengths_ptr(p), p.B, p.N,
                               p.D, p.k, detail::stream_of(v));
#else
    detail::no_cuda("csp");
#endif
  }
  return y;
}

Tensor run_backward(const Tensor& dy, const Tensor& v, const CspPlan& p) {
  Tensor dv = empty_like(v);
  if (v.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(v.dtype(), "csp_backward", [&] {
      kernels::cpu::csp_backward(dv.data<scalar_t>(), dy.data<scalar_t>(), v.data<scalar_t>(), p.shifts.data<int32_t>(),
                                 lengths_ptr(p), p.B, p.N, p.D, p.k);
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    kernels::cuda::csp_backward(dv.data<float>(), dy.data<float>(), v.data<float>(), p.shifts.data<int32_t>(),
                                lengths_ptr(p), p.B, p.N, p.D, p.k, detail::stream_of(v));
#else
    detail::no_cuda("csp_backward");
#endif
  }
  return dv;
}

void check_dy(const Tensor& dy, const Tensor& v) {
  MIXGRAD_CHECK(dy.defined(), "csp_backward: dY is undefined (expected V's shape {})", shape_str(v.shape()));
  MIXGRAD_CHECK(dy.shape() == v.shape(), "csp_backward: dY has shape {}, expected V's shape {}", shape_str(dy.shape()),
                shape_str(v.shape()));
  MIXGRAD_CHECK(dy.dtype() == v.dtype(), "csp_backward: dY has dtype {}, expected V's dtype {}", dy.dtype(),
                v.dtype());
  detail::common_device("csp_backward", {dy, v});
}

}  // namespace

Tensor csp_mask_lengths(const Tensor& mask, const std::string& who) {
  MIXGRAD_CHECK(mask.defined() && mask.dtype() == DType::u8 && mask.dim() == 2,
                "{}: key_padding_mask must be uint8 [B, N] (1 = valid), got {}", who,
                mask.defined() ? fmt::format("{} {}", mask.dtype(), shape_str(mask.shape())) : "an undefined tensor");
  const int64_t batch = mask.size(0), seq = mask.size(1);
  if (!mask.device().is_cpu()) {
#ifdef MIXGRAD_WITH_CUDA
    Tensor lengths = empty({batch}, TensorOptions(DType::i32, mask.device()));
    Tensor not_prefix = zeros({1}, TensorOptions(DType::i32, mask.device()));
    Tensor none_valid = zeros({1}, TensorOptions(DType::i32, mask.device()));
    kernels::cuda::csp_mask_lengths(lengths.data<int32_t>(), mask.data<uint8_t>(), batch, seq,
                                    not_prefix.data<int32_t>(), none_valid.data<int32_t>(), detail::stream_of(mask));
    detail::defer_check(not_prefix, fmt::format("{}: a key_padding_mask row is not a prefix mask (valid tokens "
                                                "first, then padding); CSP needs right padding", who));
    detail::defer_check(none_valid, fmt::format("{}: a key_padding_mask row has no valid token (CSP needs at least "
                                                "one)", who));
    return lengths;
#else
    detail::no_cuda("csp_mask_lengths");
#endif
  }
  std::vector<int32_t> lengths(static_cast<size_t>(batch));
  const uint8_t* m = mask.data<uint8_t>();
  for (int64_t b = 0; b < batch; ++b) {
    const uint8_t* row = m + b * seq;
    int64_t n = 0;
    while (n < seq && row[n]) ++n;
    for (int64_t j = n; j < seq; ++j)
      MIXGRAD_CHECK(!row[j],
                    "{}: key_padding_mask row {} is not a prefix mask (valid tokens first, then padding): position {} "
                    "is padding but position {} is valid; CSP needs right padding",
                    who, b, n, j);
    MIXGRAD_CHECK(n >= 1, "{}: key_padding_mask row {} has no valid token (CSP needs at least one)", who, b);
    lengths[size_t(b)] = int32_t(n);
  }
  return from_vector<int32_t>(lengths, {batch}, TensorOptions(DType::i32));
}

Tensor csp(const Tensor& v, const std::vector<int32_t>& shifts, int k, const Tensor& lengths) {
  CspPlan plan = plan_csp("csp", v, shifts, k, lengths);
  Tensor y = run_forward(v, plan);
  if (autograd::needs_grad({v})) {
    autograd::record("csp", {v}, {y},
                     [v = v.detach(), plan = std::move(plan)](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                       check_dy(g[0], v);
                       return {run_backward(g[0], v, plan)};
                     });
  }
  return y;
}

Tensor csp_backward(const Tensor& dy, const Tensor& v, const std::vector<int32_t>& shifts, int k,
                    const Tensor& lengths) {
  const CspPlan plan = plan_csp("csp_backward", v, shifts, k, lengths);
  check_dy(dy, v);
  return run_backward(dy, v, plan);
}

std::vector<int32_t> csp_shifts_constant(int64_t D, int64_t N, int K) {
  MIXGRAD_CHECK(D >= 1, "csp_shifts_constant: D = {} channels, expected D >= 1", D);
  MIXGRAD_CHECK(N >= 1 && N <= std::numeric_limits<int32_t>::max(),
                "csp_shifts_constant: N = {} tokens, expected 1 <= N <= 2^31 - 1", N);
  MIXGRAD_CHECK(K == 2 || K == 4 || K == 8, "csp_shifts_constant: K = {} is not supported (expected 2, 4 or 8)", K);
  std::vector<int32_t> s(D, 0);
  for (int64_t c = 1; c < D; ++c) s[c] = static_cast<int32_t>((int64_t(K) * (c - 1)) % N);
  return s;
}

std::vector<int32_t> csp_shifts_exponential(int64_t layer, int64_t num_layers, int64_t D, int64_t N_s) {
  MIXGRAD_CHECK(num_layers >= 1, "csp_shifts_exponential: num_layers L = {}, expected L >= 1", num_layers);
  MIXGRAD_CHECK(layer >= 0 && layer < num_layers, "csp_shifts_exponential: layer l = {} is outside [0, L) = [0, {})",
                layer, num_layers);
  MIXGRAD_CHECK(D >= 1, "csp_shifts_exponential: D = {} channels, expected D >= 1", D);
  MIXGRAD_CHECK(N_s >= 1 && N_s <= std::numeric_limits<int32_t>::max(),
                "csp_shifts_exponential: schedule length N_s = {}, expected 1 <= N_s <= 2^31 - 1", N_s);
  std::vector<int32_t> s(D);
  const double base = static_cast<double>(N_s), denom = static_cast<double>(num_layers * D);
  for (int64_t i = 0; i < D; ++i) {
    // Exactly the reference expression: IEEE double division, std::pow, std::ceil, then mod N_s.
    const double value = std::ceil(std::pow(base, static_cast<double>(layer * D + i) / denom));
    s[i] = static_cast<int32_t>(static_cast<int64_t>(value) % N_s);
  }
  return s;
}

std::vector<int32_t> csp_shifts(const std::string& schedule, int64_t D, int64_t N, int K, int64_t layer,
                                int64_t num_layers) {
  if (schedule == "constant") return csp_shifts_constant(D, N, K);
  if (schedule == "exponential") return csp_shifts_exponential(layer, num_layers, D, N);
  throw Error(fmt::format("csp_shifts: unknown schedule '{}' (expected \"constant\" or \"exponential\")", schedule));
}

}  // namespace mixgrad
