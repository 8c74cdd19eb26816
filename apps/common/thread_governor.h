// The OpenMP thread count of a CPU training run, fitted to the cores other processes leave free.
//
// mixgrad's CPU kernels are many short OpenMP regions (about 200 per fmnist-tiny ViT step). When another process
// competes for the cores, one of the run's threads is regularly descheduled and every region waits for it: with
// two threads and one busy process on two cores a step runs at about a third of its idle speed, slower than one
// thread alone (apps/bench/under_load.py, docs/benchmarks/vit-cpu.md "Speed under load"). The governor measures,
// over windows of about half a second, how many cores the rest of the machine keeps busy (/proc/stat minus this
// process's own time) and trains with the cores that are left (at least one thread, at most the starting count).
// A change needs two windows in a row that agree. Some CPU kernels split their sums by thread count, so a change
// can move the last bits of a result (tests/cpu/test_thread_governor.cpp bounds the difference of a ViT step's
// gradients); runs that must repeat bit for bit on a busy machine set OMP_NUM_THREADS, which turns the governor off.
//
// Off when the user fixed the count (OMP_NUM_THREADS set), when MIXGRAD_ADAPTIVE_THREADS=0, on other devices, with
// one thread, and where /proc cannot be read.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace mixgrad::app {

// CPU time counters at one moment, in clock ticks (sysconf(_SC_CLK_TCK)).
struct CpuTimes {
  double machine_busy = 0;  // all CPUs: user + nice + system + irq + softirq + steal
  double own = 0;           // this process: utime + stime (every thread)
};

// Reads /proc/stat and /proc/self/stat; nullopt when either cannot be read or parsed.
std::optional<CpuTimes> read_cpu_times();

// The thread count for `other_busy_cores` cores used by other processes on a machine of `cores` cores:
// round(cores − other_busy_cores), clamped to [1, max_threads].
int threads_for_free_cores(int cores, int max_threads, double other_busy_cores);

class ThreadGovernor {
 public:
  using Sampler = std::function<std::optional<CpuTimes>()>;
  // enabled: whether to adapt at all (see from_environment); cores: online CPUs; max_threads: the starting count.
  ThreadGovernor(bool enabled, int cores, int max_threads, double ticks_per_s, Sampler sampler = read_cpu_times);
  // Enabled for the CPU device unless OMP_NUM_THREADS is set or MIXGRAD_ADAPTIVE_THREADS=0.
  static ThreadGovernor from_environment(bool cpu_device);

  // Call between training steps: cheap (a clock read) except once per window. Returns the new thread count when it
  // changed (the caller may say so), and then it is already in effect (omp_set_num_threads).
  std::optional<int> after_step();
  // The same decision from explicit samples (tests): `elapsed_s` since the previous sample.
  std::optional<int> observe(const CpuTimes& now, double elapsed_s);

  bool enabled() const { return enabled_; }
  int threads() const { return threads_; }
  // One line for the progress output: why the count changed.
  std::string describe_change(int threads) const;

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_;
  int cores_, max_threads_, threads_;
  double ticks_per_s_;
  Sampler sampler_;
  std::optional<CpuTimes> last_;
  Clock::time_point last_time_{};
  int pending_ = 0;            // the count the last window asked for (0: none)
  double last_other_cores_ = 0;
};

}  // namespace mixgrad::app
