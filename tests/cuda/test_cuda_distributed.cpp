// The communicator on CUDA tensors: as one process (the local communicator) in the CUDA suite, and under
// `mpirun -np 1` (CTest cuda:distributed_nccl_np1), where MPI builds with NCCL send CUDA buffers through a one-rank
// NCCL communicator (bootstrapped through MPI). Expectations hold for any number of ranks W.
#include <catch2/catch.hpp>

#include "apps/common/distributed.h"
#include "engine/mixgrad.h"

using namespace mixgrad;

TEST_CASE("cuda communicator: all-reduce (plain and deterministic), broadcast and buckets of CUDA tensors", "[dist]") {
  dist::Communicator& c = dist::world();
  const Device dev("cuda");
  const int w = c.size();
  for (bool det : {false, true}) {
    INFO("deterministic " << det << ", backend " << c.backend());
    c.set_deterministic(det);
    std::vector<float> v(100003);
    for (size_t i = 0; i < v.size(); ++i) v[i] = float(c.rank() + 1) * float(i % 97) + 0.25f;
    Tensor t = from_vector(v, {int64_t(v.size())}).to(dev);
    c.all_reduce_sum(t);
    const std::vector<float> got = t.to(kCPU).to_vector<float>();
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != float(i % 97) * float(w * (w + 1) / 2) + 0.25f * float(w)) FAIL("element " << i << ": " << got[i]);
  }
  c.set_deterministic(false);
  Tensor b = from_vector(std::vector<double>{c.rank() == 0 ? 1.5 : -7.0, 2.5}, {2}).to(dev);
  c.broadcast(b, 0);
  REQUIRE(b.to(kCPU).to_vector<double>() == std::vector<double>{1.5, 2.5});
  std::vector<Tensor> params{zeros({3, 4}, TensorOptions(DType::f32, dev, true)),
                             zeros({5}, TensorOptions(DType::f32, dev, true))};
  for (Tensor& p : params) p.set_grad(full(p.shape(), 2.0, TensorOptions(DType::f32, dev)));
  dist::GradientBuckets buckets(params, 32);
  REQUIRE(buckets.num_buckets() == 2);
  buckets.all_reduce(c);
  for (Tensor& p : params)
    for (float g : p.grad().to(kCPU).to_vector<float>()) REQUIRE(g == 2.0f * float(w));
}
