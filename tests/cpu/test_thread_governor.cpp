// The adaptive OpenMP thread count of CPU training (apps/common/thread_governor.h): the decision rule, the two-window
// confirmation, the switches that turn it off, the /proc reader, and that a fmnist-tiny ViT step's gradients agree
// across thread counts to float rounding.
#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "apps/common/thread_governor.h"
#include "engine/mixgrad.h"
#include "models/vit.h"

using namespace mixgrad;
using app::CpuTimes;
using app::ThreadGovernor;

namespace {

// Restores omp_get_max_threads() and an environment variable when a test ends.
struct ThreadsGuard {
  int saved = omp_get_max_threads();
  ~ThreadsGuard() { omp_set_num_threads(saved); }
};

struct EnvGuard {
  std::string name;
  std::optional<std::string> saved;
  explicit EnvGuard(const char* n) : name(n) {
    if (const char* v = std::getenv(n)) saved = v;
  }
  ~EnvGuard() {
    if (saved)
      setenv(name.c_str(), saved->c_str(), 1);
    else
      unsetenv(name.c_str());
  }
};

// Samples of a 2-core machine at 100 ticks/s: this process used `own_cores` and the others `other_cores` over each
// 0.5 s window.
struct FakeMachine {
  CpuTimes t;
  CpuTimes next(double own_cores, double other_cores) {
    t.own += own_cores * 50, t.machine_busy += (own_cores + other_cores) * 50;
    return t;
  }
};

std::vector<float> gradients_of_one_step(int threads) {
  omp_set_num_threads(threads);
  manual_seed(7);
  models::VisionTransformer m(models::vit_preset("fmnist-tiny"));
  manual_seed(8);
  const Tensor images = randn({32, 1, 28, 28});
  std::vector<int64_t> labels(32);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = int64_t(i % 10);
  cross_entropy(m.forward(images), from_vector<int64_t>(labels, {32})).backward();
  std::vector<float> all;
  for (const auto& [name, p] : m.named_parameters()) {
    const std::vector<float> g = p.grad().to_vector<float>();
    all.insert(all.end(), g.begin(), g.end());
  }
  return all;
}

}  // namespace

TEST_CASE("threads_for_free_cores: the cores others leave, rounded, within [1, max]") {
  CHECK(app::threads_for_free_cores(2, 2, 0.0) == 2);
  CHECK(app::threads_for_free_cores(2, 2, 0.3) == 2);   // light background load: keep both
  CHECK(app::threads_for_free_cores(2, 2, 0.67) == 1);  // one busy process sharing two cores with two threads
  CHECK(app::threads_for_free_cores(2, 2, 1.0) == 1);
  CHECK(app::threads_for_free_cores(2, 2, 5.0) == 1);  // never below one
  CHECK(app::threads_for_free_cores(16, 16, 3.2) == 13);
  CHECK(app::threads_for_free_cores(16, 8, 0.0) == 8);  // never above the starting count
  CHECK(app::threads_for_free_cores(2, 2, -1.0) == 2);  // a negative estimate (tick rounding) counts as idle
}

TEST_CASE("ThreadGovernor changes the count after two windows that agree, and back") {
  ThreadsGuard restore;
  omp_set_num_threads(2);
  ThreadGovernor g(true, 2, 2, 100.0, [] { return std::optional<CpuTimes>(); });
  REQUIRE(g.enabled());
  FakeMachine fm;
  CHECK_FALSE(g.observe(fm.next(0, 0), 0.5));      // the first sample only starts a window
  CHECK_FALSE(g.observe(fm.next(1.3, 0.7), 0.5));  // busy: the first window asking for 1 thread waits
  CHECK_FALSE(g.observe(fm.next(2.0, 0.0), 0.5));  // an idle window in between cancels it
  CHECK_FALSE(g.observe(fm.next(1.3, 0.7), 0.5));
  const std::optional<int> down = g.observe(fm.next(1.3, 0.7), 0.5);
  REQUIRE(down);
  CHECK(*down == 1);
  CHECK(g.threads() == 1);
  CHECK(omp_get_max_threads() == 1);
  CHECK_THAT(g.describe_change(1), Catch::Contains("0.7 of 2 cores") && Catch::Contains("OMP_NUM_THREADS"));
  CHECK_FALSE(g.observe(fm.next(1.0, 1.0), 0.5));  // one thread beside one busy process: stays
  CHECK_FALSE(g.observe(fm.next(1.0, 0.0), 0.5));  // the other process ended: first window
  const std::optional<int> up = g.observe(fm.next(1.0, 0.0), 0.5);
  REQUIRE(up);
  CHECK(*up == 2);
  CHECK(omp_get_max_threads() == 2);
}

TEST_CASE("ThreadGovernor is off when the count is fixed, on other devices, and with one thread or core") {
  EnvGuard omp("OMP_NUM_THREADS"), adaptive("MIXGRAD_ADAPTIVE_THREADS");
  ThreadsGuard restore;
  omp_set_num_threads(2);
  unsetenv("OMP_NUM_THREADS");
  unsetenv("MIXGRAD_ADAPTIVE_THREADS");
  const bool can_adapt = app::read_cpu_times().has_value() && sysconf(_SC_NPROCESSORS_ONLN) > 1;
  CHECK(ThreadGovernor::from_environment(true).enabled() == can_adapt);
  CHECK_FALSE(ThreadGovernor::from_environment(false).enabled());
  setenv("MIXGRAD_ADAPTIVE_THREADS", "0", 1);
  CHECK_FALSE(ThreadGovernor::from_environment(true).enabled());
  unsetenv("MIXGRAD_ADAPTIVE_THREADS");
  setenv("OMP_NUM_THREADS", "2", 1);
  CHECK_FALSE(ThreadGovernor::from_environment(true).enabled());
  CHECK_FALSE(ThreadGovernor(true, 1, 2, 100.0).enabled());
  CHECK_FALSE(ThreadGovernor(true, 2, 1, 100.0).enabled());
  ThreadGovernor off(false, 2, 2, 100.0);
  FakeMachine fm;
  CHECK_FALSE(off.observe(fm.next(0, 0), 0.5));
  CHECK_FALSE(off.observe(fm.next(0, 2), 0.5));
  CHECK_FALSE(off.observe(fm.next(0, 2), 0.5));
  CHECK(off.threads() == 2);
}

TEST_CASE("ThreadGovernor gives up (keeps the count) when /proc cannot be read") {
  ThreadsGuard restore;
  omp_set_num_threads(2);
  ThreadGovernor g(true, 2, 2, 100.0, [] { return std::optional<CpuTimes>(); });
  CHECK_FALSE(g.after_step());
  CHECK_FALSE(g.enabled());
  CHECK(omp_get_max_threads() == 2);
}

TEST_CASE("read_cpu_times counts this process's work") {
  const std::optional<CpuTimes> a = app::read_cpu_times();
  REQUIRE(a);
  // Spin until the kernel has charged a few ticks to this process (at most 5 s of wall time).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  volatile double sink = 0;
  while (app::read_cpu_times()->own < a->own + 3 && std::chrono::steady_clock::now() < until)
    for (int i = 0; i < 100000; ++i) sink = sink + 1e-9 * double(i);
  const std::optional<CpuTimes> b = app::read_cpu_times();
  REQUIRE(b);
  CHECK(b->own > a->own);
  CHECK(b->machine_busy >= b->own - a->own + a->machine_busy - 1);  // the machine's busy time includes ours
}

TEST_CASE("a fmnist-tiny ViT step's gradients with one and two threads agree to float rounding") {
  // Not bit for bit: some CPU kernels split their sums by thread count (the header says so).
  ThreadsGuard restore;
  const std::vector<float> one = gradients_of_one_step(1), two = gradients_of_one_step(2);
  REQUIRE(one.size() == two.size());
  float scale = 0;
  for (float g : one) scale = std::max(scale, std::abs(g));
  REQUIRE(scale > 0);
  size_t worst = 0;
  for (size_t i = 0; i < one.size(); ++i)
    if (std::abs(one[i] - two[i]) > std::abs(one[worst] - two[worst])) worst = i;
  INFO("worst flat index " << worst << ": " << one[worst] << " (1 thread) vs " << two[worst] << " (2 threads), largest |g| "
                           << scale);
  CHECK(std::abs(one[worst] - two[worst]) <= 1e-4f * scale);
}
