// bench: op throughput (GEMM GFLOP/s, memory-bound ops GB/s), forward and backward, on the CPU and CUDA; prints a
// table and writes JSON records {op, pass, device, shape, dtype, ms, gbps, gflops}.
#include <CLI/CLI.hpp>
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "apps/bench/allreduce_case.h"
#include "apps/bench/mega_train_case.h"
#include "apps/bench/measure.h"
#include "apps/common/blas_core.h"
#include "apps/common/options.h"
#include "engine/file_io.h"
#include "apps/bench/op_cases.h"

using namespace mixgrad;
using namespace mixgrad::bench;

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<Device> resolve_devices(const std::string& spec) {
  if (spec == "all") {
    std::vector<Device> ds{kCPU};
    if (cuda_is_available()) ds.emplace_back(DeviceType::cuda, 0);
    return ds;
  }
  const Device d(spec);
  MIXGRAD_CHECK(d.is_cpu() || cuda_is_available(), "bench: --device {} requested but CUDA is unavailable: {}", spec,
                cuda_compiled() ? cuda_unavailable_reason() : "this build has no CUDA backend");
  return {d};
}

nlohmann::ordered_json rate_or_null(double work, double ms) {
  if (work <= 0 || ms <= 0) return nullptr;
  return work / (ms * 1e6);  // per-ms work -> GB/s or GFLOP/s
}

// bench --allreduce: one line per size (rank 0 prints).
int run_allreduce_bench(const std::vector<int64_t>& bytes, const MeasureConfig& cfg) {
  try {
    dist::Communicator& comm = dist::world();
    const auto times = time_all_reduce(comm, bytes, cfg.repeats, cfg.warmup);
    if (!comm.is_root()) return 0;
    fmt::print("all-reduce ({}, {} ranks, f32 sum in place, median of {} after {} warm-up)\n", comm.backend(),
               comm.size(), cfg.repeats, cfg.warmup);
    fmt::print("{:>12} {:>10} {:>12} {:>12}\n", "bytes", "ms", "algbw GB/s", "busbw GB/s");
    for (const AllReduceTime& t : times)
      fmt::print("{:>12} {:>10.4f} {:>12.3f} {:>12.3f}\n", t.bytes, t.ms, t.algbw_gbps, t.busbw_gbps);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench: {}\n", e.what());
    return 1;
  }
  return 0;
}

// bench --mega-train: MEGA training steps on random tokens, one line and (with --json) one record in the PyTorch
// peer's format (apps/bench/peers/mega_train_torch.py takes the same sizes).
int run_mega_train_bench(const MegaTrainOptions& o, const std::string& device_spec, const std::string& json_path) {
  try {
    nlohmann::ordered_json records = nlohmann::ordered_json::array();
    for (const Device& device : resolve_devices(device_spec)) {
      const MegaTrainResult r = run_mega_train(o, device);
      fmt::print("mega_train {} {}: {:.1f} ms/step (median {:.1f}), {:.0f} tokens/s, {} parameters, peak {:.1f} MiB, "
                 "loss {:.4f} -> {:.4f}\n",
                 device.str(), mega_train_shape(o), r.ms_mean, r.ms_median, r.tokens_per_s, r.params,
                 double(r.peak_bytes) / (1 << 20), r.loss_first, r.loss_last);
      records.push_back({{"op", "mega_train"}, {"pass", "train_step"}, {"device", device.str()},
                         {"shape", mega_train_shape(o)}, {"dtype", "float32"}, {"ms", r.ms_mean},
                         {"ms_median", r.ms_median}, {"tokens_per_s", r.tokens_per_s}, {"params", r.params},
                         {"peak_bytes", r.peak_bytes}, {"threads", omp_get_max_threads()}});
    }
    if (!json_path.empty()) io::write_file_atomic(json_path, records.dump(1) + "\n");
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench: {}\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mixgrad::app::ensure_fast_blas_kernels(argv);
  const std::vector<std::string> known = op_names();
  std::string known_list;
  for (const auto& n : known) known_list += (known_list.empty() ? "" : ",") + n;

  CLI::App app{"mixgrad bench: per-op throughput, forward and backward, CPU and CUDA (see docs/benchmarks/README.md)"};
  std::string device_spec = "all", ops_spec = known_list, json_path;
  int threads = 0;
  bool no_backward = false, smoke = false;
  MeasureConfig cfg;
  app.add_option("--device", device_spec, "cpu, cuda, cuda:N or all (the CPU plus CUDA when a device is usable)")
      ->capture_default_str();
  app.add_option("--ops", ops_spec, "Comma-separated ops to run")->capture_default_str();
  app.add_option("--repeats", cfg.repeats, "Timed samples per op and pass; the median is reported")
      ->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--warmup", cfg.warmup, "Untimed samples before the timed ones")
      ->check(CLI::Range(0, 100000))->capture_default_str();
  app.add_option("--min-sample-ms", cfg.min_sample_ms,
                 "Each sample repeats a short call until it lasts about this long (amortises launch + synchronize)")
      ->check(CLI::Range(0.0, 10000.0))->capture_default_str();
  app.add_option("--cold-mib", cfg.cold_mib,
                 "Cycle through copies of the inputs spanning at least this many MiB, so calls miss the cache "
                 "(0 = one copy: warm cache)")
      ->check(CLI::Range(0.0, 65536.0))->capture_default_str();
  app.add_option("--threads", threads, "OpenMP threads (0 = OMP_NUM_THREADS or the core count)")
      ->check(CLI::Range(0, 4096))->capture_default_str();
  app.add_flag("--no-backward", no_backward, "Time forward passes only");
  // CUDA records get "precision" and, unless fp32, "-tf32" / "-bf16" appended to their impl, as the PyTorch peers
  // do; the CPU runs stay fp32 (docs/benchmarks/README.md).
  bool tf32 = false;
  std::string precision_name = "fp32";
  mixgrad::app::add_precision_flags(&app, precision_name, tf32);
  app.add_flag("--smoke", smoke,
               "Run the AFT, EMA, LSTM and gated-attention cases at tiny sizes: checks that they run (the numbers "
               "mean nothing)");
  app.add_option("--json", json_path, "Write the records to this JSON file");
  std::vector<int64_t> allreduce_bytes;
  app.add_option("--allreduce", allreduce_bytes,
                 "Instead of the ops: time the trainer's all-reduce of f32 buffers of these byte sizes over this "
                 "process's ranks (run under mpirun)")
      ->check(CLI::Range(int64_t(4), int64_t(1) << 31));
  bool mega_train = false;
  MegaTrainOptions mega;
  app.add_flag("--mega-train", mega_train,
               "Instead of the ops: time training steps of the MEGA LRA model on random tokens (defaults: MEGA's "
               "ListOps sizes at L 2000, batch 4, as apps/bench/peers/mega_train_torch.py)");
  app.add_option("--mega-length", mega.length, "--mega-train: tokens per sample")->check(CLI::Range(2, 1 << 16));
  app.add_option("--mega-batch", mega.batch, "--mega-train: samples per step")->check(CLI::Range(1, 4096));
  app.add_option("--mega-steps", mega.steps, "--mega-train: timed steps")->check(CLI::Range(1, 100000));
  app.add_option("--mega-warmup", mega.warmup_steps, "--mega-train: untimed steps first")->check(CLI::Range(0, 1000));
  app.add_option("--mega-attention", mega.attention, "--mega-train: softmax, laplace or relu2")
      ->check(CLI::IsMember({"softmax", "laplace", "relu2"}));
  app.add_option("--mega-chunk", mega.chunk, "--mega-train: attention chunk (-1: full)")->check(CLI::Range(-1, 1 << 16));
  CLI11_PARSE(app, argc, argv);
  if (!allreduce_bytes.empty()) return run_allreduce_bench(allreduce_bytes, cfg);
  if (mega_train) {
    if (threads > 0) omp_set_num_threads(threads);
    return run_mega_train_bench(mega, device_spec, json_path);
  }

  try {
    std::set<std::string> wanted;
    for (const std::string& op : split_list(ops_spec)) {
      MIXGRAD_CHECK(std::find(known.begin(), known.end(), op) != known.end(), "bench: unknown op '{}' (known: {})", op,
                    known_list);
      wanted.insert(op);
    }
    if (threads > 0) omp_set_num_threads(threads);
    const MatmulPrecision precision = mixgrad::app::precision_from_flags(precision_name, tf32);
    const char* precision_str = kernels::precision_name(precision);
    const std::vector<Device> devices = resolve_devices(device_spec);
    fmt::print("mixgrad bench: OpenMP threads {}, OpenBLAS {} (called single-threaded: mixgrad's GEMM splits the "
               "work over OpenMP); median of {} samples after {} warm-up; inputs rotated over >= {} MiB; "
               "CUDA products {}\n",
               omp_get_max_threads(), openblas_get_config(), cfg.repeats, cfg.warmup, cfg.cold_mib, precision_str);
    fmt::print("{:<7} {:<14} {:<24} {:<8} {:>10} {:>9} {:>9} {:>6}\n", "device", "op", "shape", "pass", "ms", "GB/s",
               "GFLOP/s", "calls");
    std::fflush(stdout);  // progress shows at once when stdout is a file

    nlohmann::ordered_json records = nlohmann::ordered_json::array();
    for (const Device& device : devices) {
      // The precision applies to CUDA runs; the CPU baseline stays fp32 (its bf16 is an emulation, not a speed-up).
      set_matmul_precision(device.is_cpu() ? MatmulPrecision::fp32 : precision);
      for (const OpCase& c : all_op_cases(smoke)) {
        if (!wanted.count(c.op) || (device.is_cpu() ? !c.on_cpu : !c.on_cuda)) continue;
        const CaseTimes t = measure(c, device, cfg, !no_backward);
        const PeakMemory peak = c.report_peak_memory ? measure_peak_memory(c, device, !no_backward) : PeakMemory{};
        auto emit = [&](const char* pass, const PassTime& p, double bytes, double flops, int64_t peak_bytes) {
          nlohmann::ordered_json r = {{"op", c.op},           {"pass", pass},
                              {"device", device.str()}, {"shape", c.shape},
                              {"dtype", "float32"},    {"ms", p.ms},
                              {"gbps", rate_or_null(bytes, p.ms)}, {"gflops", rate_or_null(flops, p.ms)}};
          const bool reduced = precision != MatmulPrecision::fp32 && !device.is_cpu();
          const std::string impl = reduced ? (c.impl.empty() ? "" : c.impl + "-") + precision_str : c.impl;
          if (!impl.empty()) r["impl"] = impl;
          if (!device.is_cpu()) r["precision"] = precision_str;
          if (c.tokens > 0) r["tokens_per_s"] = p.ms > 0 ? nlohmann::ordered_json(c.tokens / (p.ms * 1e-3)) : nullptr;
          if (peak_bytes >= 0) r["peak_bytes"] = peak_bytes;
          auto show = [](const nlohmann::ordered_json& v) { return v.is_null() ? std::string("-") : fmt::format("{:.1f}", v.get<double>()); };
          const std::string name = impl.empty() ? c.op : c.op + "/" + impl;
          fmt::print("{:<7} {:<14} {:<24} {:<8} {:>10.4f} {:>9} {:>9} {:>6}", device.str(), name, c.shape, pass, p.ms,
                     show(r["gbps"]), show(r["gflops"]), p.calls);
          if (c.tokens > 0 && p.ms > 0) fmt::print("  {:.0f} tok/s", c.tokens / (p.ms * 1e-3));
          if (peak_bytes >= 0) fmt::print("  peak {:.1f} MiB", double(peak_bytes) / 1048576.0);
          fmt::print("\n");
          std::fflush(stdout);
          records.push_back(std::move(r));
        };
        emit("forward", t.forward, c.forward_bytes, c.forward_flops, peak.forward);
        if (t.has_backward) emit("backward", t.backward, c.backward_bytes, c.backward_flops, -1);
        if (t.has_backward && c.report_forward_backward) {
          const PassTime both{t.forward.ms + t.backward.ms, t.backward.calls, t.backward.input_sets};
          emit("forward+backward", both, c.forward_bytes + c.backward_bytes, c.forward_flops + c.backward_flops,
               peak.forward_backward);
        }
      }
    }
    if (!json_path.empty()) {
      std::ofstream f(json_path);
      MIXGRAD_CHECK(f.good(), "bench: cannot write {}", json_path);
      f << records.dump(1) << "\n";
      MIXGRAD_CHECK(f.good(), "bench: error writing {}", json_path);
      fmt::print("wrote {} records to {}\n", records.size(), json_path);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
