// The adaptive OpenMP thread count (apps/common/thread_governor.h).
#include "apps/common/thread_governor.h"

#include <fmt/format.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace mixgrad::app {

namespace {

constexpr double kWindowSeconds = 0.5;

// The aggregate "cpu" line of /proc/stat: user nice system idle iowait irq softirq steal (guest time is inside user).
std::optional<double> machine_busy_ticks() {
  std::ifstream f("/proc/stat");
  std::string label;
  double v[8] = {};
  if (!(f >> label) || label != "cpu") return std::nullopt;
  for (double& x : v)
    if (!(f >> x)) return std::nullopt;
  return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

// utime and stime (fields 14 and 15) of /proc/self/stat; the command name (field 2) may hold spaces, so fields are
// counted after its closing parenthesis.
std::optional<double> own_ticks() {
  std::ifstream f("/proc/self/stat");
  std::string line;
  if (!std::getline(f, line)) return std::nullopt;
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15; ++i) {  // fields 3 .. 15
    if (!(rest >> field)) return std::nullopt;
    if (i == 14) utime = std::strtod(field.c_str(), nullptr);
    if (i == 15) stime = std::strtod(field.c_str(), nullptr);
  }
  return utime + stime;
}

bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}

}  // namespace

std::optional<CpuTimes> read_cpu_times() {
  const std::optional<double> busy = machine_busy_ticks(), own = own_ticks();
  if (!busy || !own) return std::nullopt;
  return CpuTimes{*busy, *own};
}

int threads_for_free_cores(int cores, int max_threads, double other_busy_cores) {
  const double free_cores = double(cores) - std::max(0.0, other_busy_cores);
  const int t = int(std::lround(free_cores));
  return std::clamp(t, 1, std::max(1, max_threads));
}

ThreadGovernor::ThreadGovernor(bool enabled, int cores, int max_threads, double ticks_per_s, Sampler sampler)
    : enabled_(enabled && cores > 1 && max_threads > 1 && ticks_per_s > 0),
      cores_(cores),
      max_threads_(max_threads),
      threads_(max_threads),
      ticks_per_s_(ticks_per_s),
      sampler_(std::move(sampler)) {}

ThreadGovernor ThreadGovernor::from_environment(bool cpu_device) {
  const bool user_fixed = std::getenv("OMP_NUM_THREADS") != nullptr || env_is("MIXGRAD_ADAPTIVE_THREADS", "0");
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const long ticks = sysconf(_SC_CLK_TCK);
  return ThreadGovernor(cpu_device && !user_fixed, int(std::max(1L, cores)), omp_get_max_threads(),
                        double(std::max(0L, ticks)));
}

std::optional<int> ThreadGovernor::after_step() {
  if (!enabled_) return std::nullopt;
  const Clock::time_point now = Clock::now();
  if (last_ && std::chrono::duration<double>(now - last_time_).count() < kWindowSeconds) return std::nullopt;
  const std::optional<CpuTimes> sample = sampler_();
  if (!sample) {
    enabled_ = false;  // /proc unreadable: keep the starting count
    return std::nullopt;
  }
  const double elapsed = last_ ? std::chrono::duration<double>(now - last_time_).count() : 0.0;
  last_time_ = now;
  return observe(*sample, elapsed);
}

std::optional<int> ThreadGovernor::observe(const CpuTimes& now, double elapsed_s) {
  if (!enabled_) return std::nullopt;
  const std::optional<CpuTimes> prev = last_;
  last_ = now;
  if (!prev || elapsed_s <= 0) return std::nullopt;
  const double other_ticks = (now.machine_busy - prev->machine_busy) - (now.own - prev->own);
  last_other_cores_ = std::max(0.0, other_ticks / (ticks_per_s_ * elapsed_s));
  const int want = threads_for_free_cores(cores_, max_threads_, last_other_cores_);
  if (want == threads_) {
    pending_ = 0;
    return std::nullopt;
  }
  if (want != pending_) {  // the first window asking for a change: wait for a second one
    pending_ = want;
    return std::nullopt;
  }
  pending_ = 0;
  threads_ = want;
  omp_set_num_threads(threads_);
  return threads_;
}

std::string ThreadGovernor::describe_change(int threads) const {
  return fmt::format(
      "other processes keep {:.1f} of {} cores busy: training with {} OpenMP thread{} (set OMP_NUM_THREADS to fix "
      "the count)",
      last_other_cores_, cores_, threads, threads == 1 ? "" : "s");
}

}  // namespace mixgrad::app
