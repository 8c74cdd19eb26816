// The all-reduce timing loop.
#include "apps/bench/allreduce_case.h"

#include <algorithm>
#include <chrono>

#include "engine/error.h"

namespace mixgrad::bench {

std::vector<AllReduceTime> time_all_reduce(dist::Communicator& comm, const std::vector<int64_t>& bytes, int repeats,
                                           int warmup) {
  MIXGRAD_CHECK(repeats >= 1 && warmup >= 0, "bench --allreduce: repeats {} and warm-up {} (expected >= 1, >= 0)",
                repeats, warmup);
  std::vector<AllReduceTime> out;
  for (int64_t b : bytes) {
    MIXGRAD_CHECK(b >= 4 && b % 4 == 0, "bench --allreduce: {} bytes (expected a positive multiple of 4)", b);
    std::vector<float> buf(size_t(b / 4), 1.0f);
    const auto call = [&] { comm.all_reduce_sum(buf.data(), b / 4, DType::f32, kCPU); };
    for (int i = 0; i < warmup; ++i) call();
    std::vector<double> ms;
    for (int i = 0; i < repeats; ++i) {
      comm.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      call();
      std::vector<double> t{std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()};
      std::vector<double> all(size_t(comm.size()), 0.0);
      all[size_t(comm.rank())] = t[0];
      comm.all_reduce_sum(all);  // every rank's time, to take the slowest
      ms.push_back(*std::max_element(all.begin(), all.end()));
    }
    std::nth_element(ms.begin(), ms.begin() + ptrdiff_t(ms.size() / 2), ms.end());
    AllReduceTime r;
    r.bytes = b;
    r.ms = ms[ms.size() / 2];
    const int w = comm.size();
    r.algbw_gbps = r.ms > 0 ? double(b) / (r.ms * 1e6) : 0;
    r.busbw_gbps = r.algbw_gbps * 2.0 * double(w - 1) / double(w);
    out.push_back(r);
  }
  return out;
}

}  // namespace mixgrad::bench
