#include "engine/deferred_checks.h"

#include <mutex>
#include <utility>
#include <vector>

#include "engine/error.h"
#ifdef MIXGRAD_WITH_CUDA
#include <cuda_runtime_api.h>

#include "engine/cuda_backend.h"
#include "kernels/cuda/check.h"
#endif

namespace mixgrad {
namespace {
constexpr size_t kMaxPending = 4096;

struct Pending {
  std::mutex mu;
  std::vector<std::pair<Tensor, std::string>> flags;
};
Pending& pending() {
  static Pending p;
  return p;
}
}  // namespace

namespace detail {
void defer_check(const Tensor& flag, std::string message) {
  MIXGRAD_CHECK(flag.defined() && flag.dtype() == DType::i32 && flag.numel() == 1,
                "defer_check: expected an int32 flag of one element");
  if (flag.device().is_cpu()) {
    MIXGRAD_CHECK(*flag.data<int32_t>() == 0, "{}", message);
    return;
  }
  size_t n = 0;
  {
    Pending& p = pending();
    std::lock_guard<std::mutex> lock(p.mu);
    p.flags.emplace_back(flag, std::move(message));
    n = p.flags.size();
  }
  if (n >= kMaxPending) run_deferred_checks();
}

void run_deferred_checks() {
  std::vector<std::pair<Tensor, std::string>> flags;
  {
    Pending& p = pending();
    std::lock_guard<std::mutex> lock(p.mu);
    if (p.flags.empty()) return;
    flags.swap(p.flags);
  }
#ifdef MIXGRAD_WITH_CUDA
  for (auto& [flag, message] : flags) {
    int32_t v = 0;
    // The flag's stream is waited for explicitly: the read-back that triggered this may have been on another device.
    MIXGRAD_CUDA_CHECK(cudaStreamSynchronize(cuda::stream(flag.device())));
    MIXGRAD_CUDA_CHECK(cudaMemcpy(&v, flag.raw_data(), sizeof v, cudaMemcpyDeviceToHost));
    if (v != 0) throw Error(message + " (raised on the device; reported at the first read-back after the call)");
  }
#endif
}
}  // namespace detail

void synchronize_and_check(Device d) {
  synchronize(d);
  detail::run_deferred_checks();
}

}  // namespace mixgrad
