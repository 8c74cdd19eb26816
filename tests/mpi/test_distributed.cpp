// The communicator and data-parallel training. Runs as one process (the local communicator) and under
// `mpirun -np 2` (MPI): every expectation is written for any number of ranks W.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>

#include "apps/common/distributed.h"
#include "engine/mixgrad.h"
#include "tests/common/temp_files.h"
#include "tests/common/trainer_runs.h"

using namespace mixgrad;
using mixgrad::testing::TempDir;

namespace {

dist::Communicator& comm() { return dist::world(); }

// Rank r's value at element i: (r + 1) * i + 0.25, so the sum over W ranks is i * W(W+1)/2 + W/4 (exact in f32
// for the sizes used: every partial sum is a multiple of 1/4 below 2^22).
double rank_value(int r, int64_t i) { return double(r + 1) * double(i % 1000) + 0.25; }
double expected_sum(int w, int64_t i) { return double(i % 1000) * w * (w + 1) / 2.0 + 0.25 * w; }

template <class T>
void check_all_reduce(int64_t n, bool deterministic) {
  dist::Communicator& c = comm();
  c.set_deterministic(deterministic);
  std::vector<T> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = T(rank_value(c.rank(), i) * (std::is_integral_v<T> ? 4 : 1));
  const DType dt = std::is_same_v<T, float> ? DType::f32 : std::is_same_v<T, double> ? DType::f64 : DType::i64;
  c.all_reduce_sum(v.data(), n, dt, kCPU);
  c.set_deterministic(false);
  for (int64_t i = 0; i < n; ++i) {
    const double want = expected_sum(c.size(), i) * (std::is_integral_v<T> ? 4 : 1);
    if (double(v[size_t(i)]) != want)
      FAIL("element " << i << " of " << n << ": " << double(v[size_t(i)]) << " != " << want);
  }
}

}  // namespace

TEST_CASE("communicator: all-reduce sums known values of every dtype and uneven sizes", "[dist]") {
  for (bool det : {false, true})
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(1000003)}) {
      INFO("n " << n << ", deterministic " << det);
      check_all_reduce<float>(n, det);
      check_all_reduce<double>(n, det);
      check_all_reduce<int64_t>(n, det);
    }
}

TEST_CASE("communicator: broadcast copies rank 0's values; a tensor all-reduce is in place", "[dist]") {
  dist::Communicator& c = comm();
  std::vector<float> v(1001);
  for (size_t i = 0; i < v.size(); ++i) v[i] = c.rank() == 0 ? float(i) * 0.5f : -1.0f;
  Tensor t = from_vector(v, {11, 91});
  c.broadcast(t, 0);
  const std::vector<float> got = t.to_vector<float>();
  for (size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == float(i) * 0.5f);
  Tensor ones = full({3, 5}, 1.0f);
  c.all_reduce_sum(ones);
  for (float x : ones.to_vector<float>()) REQUIRE(x == float(c.size()));
  c.barrier();
  REQUIRE_THROWS_WITH(c.broadcast(t, c.size()), Catch::Contains("root rank"));
  REQUIRE_THROWS_WITH(c.all_reduce_sum(v.data(), 1, DType::u8, kCPU), Catch::Contains("expected f32, f64 or i64"));
}

TEST_CASE("communicator: shards cover the rows once, sizes within one", "[dist]") {
  for (int64_t n : {0, 1, 5, 32, 33})
    for (int w : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int r = 0; r < w; ++r) {
        const dist::Shard s = dist::shard_of(n, r, w);
        REQUIRE(s.begin == next);
        REQUIRE(s.end - s.begin >= n / w);
        REQUIRE(s.end - s.begin <= n / w + 1);
        next = s.end;
      }
      REQUIRE(next == n);
    }
  REQUIRE_THROWS_WITH(dist::shard_of(4, 2, 2), Catch::Contains("rank 2 of 2"));
}

TEST_CASE("gradient buckets: uneven tensors packed by size, summed over the ranks, missing gradients as zeros",
          "[dist]") {
  dist::Communicator& c = comm();
  const std::vector<Shape> shapes{{3}, {1}, {50, 100}, {17}, {2, 2}, {9}};
  std::vector<Tensor> params;
  for (const Shape& s : shapes) params.push_back(zeros(s, TensorOptions(DType::f32, kCPU, true)));
  // 64-byte buckets: {3, 1, -} {5000 alone} {17 alone (68 bytes)} {4, 9 (52 bytes)}.
  dist::GradientBuckets buckets(params, 64);
  REQUIRE(buckets.num_buckets() == 4);
  REQUIRE(buckets.bucket_numels() == std::vector<int64_t>{4, 5000, 17, 13});
  for (size_t p = 0; p < params.size(); ++p) {
    if (p == 1) continue;  // no gradient on any rank
    std::vector<float> g(size_t(params[p].numel()));
    for (size_t i = 0; i < g.size(); ++i) g[i] = float(rank_value(c.rank(), int64_t(i + 10 * p)));
    params[p].set_grad(from_vector(g, params[p].shape()));
  }
  buckets.all_reduce(c);
  for (size_t p = 0; p < params.size(); ++p) {
    INFO("parameter " << p);
    if (p == 1 && c.size() == 1) {
      REQUIRE_FALSE(params[p].grad().defined());  // one process: the gradients are left as they are
      continue;
    }
    const std::vector<float> g = params[p].grad().to_vector<float>();
    for (size_t i = 0; i < g.size(); ++i)
      REQUIRE(g[i] == (p == 1 ? 0.0f : float(expected_sum(c.size(), int64_t(i + 10 * p)))));
  }
}

TEST_CASE("sharded evaluation results are summed: counts, confusion matrix and loss", "[dist]") {
  dist::Communicator& c = comm();
  app::ConfusionCounter cc(3);
  cc.add({0, 1, 2}, {0, 2, 2}, 1.5 * (c.rank() + 1));  // per rank: 3 samples, 2 correct
  const app::EvalResult r = dist::reduce_eval(c, cc.finish(), 3);
  const int w = c.size();
  REQUIRE(r.n == 3 * w);
  REQUIRE(r.correct == 2 * w);
  REQUIRE(r.confusion[1][2] == w);
  REQUIRE(r.per_class_accuracy == std::vector<double>{1.0, 0.0, 1.0});
  REQUIRE(r.loss == Approx(1.5 * w * (w + 1) / 2.0 / (3.0 * w)).epsilon(1e-12));
}

// ---- data-parallel training --------------------------------------------------------------------------------------
namespace {

// A tiny ViT run (tests/common/trainer_runs.h: 2 epochs x 6 steps of global batch 32) into `out`.
app::TrainSummary tiny_run(const std::filesystem::path& data, const std::filesystem::path& out, int64_t max_steps = 0,
                           bool resume = false, int64_t train_limit = 0) {
  app::TrainOptions o = mixgrad::testing::tiny_vit_run(data, out);
  if (train_limit > 0) o.train_limit = train_limit;
  o.max_steps = max_steps;
  o.resume = resume;
  return app::run_training(o);
}

// The same records, the losses within `rel_tol` (relative), the accuracies within `acc_tol`.
void require_close_metrics(const std::filesystem::path& a, const std::filesystem::path& b, double rel_tol,
                           double acc_tol) {
  const auto ra = mixgrad::testing::metrics_without_times(a), rb = mixgrad::testing::metrics_without_times(b);
  REQUIRE(ra.size() == rb.size());
  double worst = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    INFO("record " << i << ": " << ra[i].dump() << " vs " << rb[i].dump());
    REQUIRE(ra[i]["kind"] == rb[i]["kind"]);
    REQUIRE(ra[i]["step"] == rb[i]["step"]);
    const double la = ra[i]["loss"], lb = rb[i]["loss"];
    worst = std::max(worst, std::abs(la - lb) / std::abs(la));
    REQUIRE(std::abs(la - lb) <= rel_tol * std::abs(la));
    REQUIRE(std::abs(double(ra[i]["accuracy"]) - double(rb[i]["accuracy"])) <= acc_tol);
  }
  WARN("largest relative loss difference: " << worst);
}

}  // namespace

TEST_CASE("data-parallel training: the loss curve equals one process's within summation-order tolerance",
          "[dist][train]") {
  // 192 training images: 6 full global batches of 32; 161: the last global batch is 1 image, which leaves the
  // shards of ranks 1.. empty (zero gradients).
  const int64_t train_limit = GENERATE(192, 161);
  INFO("train_limit " << train_limit);
  dist::Communicator& c = comm();
  TempDir tmp("mixgrad_dist_");
  const auto data = mixgrad::testing::write_bar_dataset(tmp / "data");  // every rank its own identical copy
  // The single-process reference: rank 0 alone, with the local communicator.
  if (c.rank() == 0) {
    const auto local = dist::make_local();
    dist::ScopedCommunicator scope(*local);
    tiny_run(data, tmp / "one", 0, false, train_limit);
  }
  c.barrier();
  const app::TrainSummary s = tiny_run(data, tmp / "dp", 0, false, train_limit);
  REQUIRE(s.finished);
  REQUIRE(s.test.n == 60);  // the sharded test set was summed over the ranks
  if (c.rank() == 0) {
    // Rank 0 alone wrote the run folder.
    REQUIRE(std::filesystem::exists(tmp / "dp" / "summary.json"));
    REQUIRE(std::filesystem::exists(tmp / "dp" / "best.safetensors"));
    // Several ranks: each GEMM sums its rank's rows, then the ranks' sums are added (another float order than one
    // GEMM over the whole batch). Over these 12 AdamW steps the logged losses differ by ~5e-8 relative (2 ranks);
    // the bound is 1e-5, and the accuracies may differ by one sample of the 100 validation images (a flipped argmax).
    require_close_metrics(tmp / "one" / "metrics.jsonl", tmp / "dp" / "metrics.jsonl", 1e-5, 0.011);
  } else {
    REQUIRE_FALSE(std::filesystem::exists(tmp / "dp"));  // the other ranks write nothing
  }
  c.barrier();
}

TEST_CASE("data-parallel training: deterministic reduction repeats bit for bit; resume with another rank count",
          "[dist][train]") {
  dist::Communicator& c = comm();
  TempDir tmp("mixgrad_dist_");
  const auto data = mixgrad::testing::write_bar_dataset(tmp / "data");
  c.set_deterministic(true);
  tiny_run(data, tmp / "a");
  tiny_run(data, tmp / "b");
  c.set_deterministic(false);
  // Interrupted after 5 steps with W ranks, resumed by rank 0 alone: the same run within tolerance.
  tiny_run(data, tmp / "c", 5);
  c.barrier();
  if (c.rank() == 0) {
    mixgrad::testing::require_same_tensors(tmp / "a" / "last_state.safetensors", tmp / "b" / "last_state.safetensors");
    mixgrad::testing::require_same_metrics(tmp / "a" / "metrics.jsonl", tmp / "b" / "metrics.jsonl");
    const auto local = dist::make_local();
    dist::ScopedCommunicator scope(*local);
    REQUIRE(tiny_run(data, tmp / "c", 0, true).finished);
    require_close_metrics(tmp / "a" / "metrics.jsonl", tmp / "c" / "metrics.jsonl", 1e-5, 0.011);
  }
  c.barrier();
}

TEST_CASE("data-parallel training: a global batch not divisible by the ranks is refused (one process: taken)",
          "[dist][train]") {
  dist::Communicator& c = comm();
  TempDir tmp("mixgrad_dist_");
  app::TrainOptions o = mixgrad::testing::tiny_vit_run(mixgrad::testing::write_bar_dataset(tmp / "data"), tmp / "o");
  o.batch_size = 32 * c.size() + 1;
  if (c.size() == 1) {  // one process takes every batch whole
    o.max_steps = 1;
    REQUIRE_FALSE(app::run_training(o).finished);
    return;
  }
  REQUIRE_THROWS_WITH(app::run_training(o), Catch::Contains("is not divisible by the") &&
                                                Catch::Contains(fmt::format("expected a multiple of {}", c.size())));
  c.barrier();
}
