// Data-parallel training support: a small communicator (rank, size, broadcast, in-place all-reduce sum, barrier) on
// existing engines, and the pieces of a data-parallel step the trainer uses (gradient buckets, sharded evaluation).
//
// Backends:
//   local  one process (size 1): every collective is a no-op. Used when the process was not started by an MPI
//          launcher (mpirun sets OMPI_COMM_WORLD_SIZE / PMI_SIZE / PMIX_RANK), or when mixgrad is built without MPI.
//   MPI    (OpenMPI) host buffers: MPI_Bcast / MPI_Allreduce on MPI_COMM_WORLD.
//   NCCL   CUDA buffers, on the engine's stream of the tensor's device; its communicator is created on first use,
//          bootstrapped through MPI (rank 0 makes the ncclUniqueId and broadcasts it). Without NCCL, a CUDA buffer
//          travels through a host copy and MPI.
// Deterministic reduction (MIXGRAD_DETERMINISTIC_REDUCE=1, or set_deterministic): the buffers of all ranks are
// gathered to rank 0, summed there in rank order (((r0 + r1) + r2) + ...), and the sum is broadcast, so the result
// does not depend on the MPI library's reduction algorithm or on the message sizes; the plain path uses
// MPI_Allreduce / ncclAllReduce, whose order may depend on the algorithm the library picks.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "apps/common/metrics.h"
#include "engine/tensor.h"

namespace mixgrad::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;  // "local", "mpi", "mpi+nccl"
  // In-place sum over the ranks of `count` elements of `dtype` (f32, f64 or i64) at `data` on `device`.
  virtual void all_reduce_sum(void* data, int64_t count, DType dtype, Device device) = 0;
  // `count` elements of rank `root` copied to every rank.
  virtual void broadcast(void* data, int64_t count, DType dtype, Device device, int root) = 0;
  virtual void barrier() = 0;

  // The same on a contiguous tensor (its storage, on its device).
  void all_reduce_sum(Tensor& t);
  void broadcast(Tensor& t, int root = 0);
  void all_reduce_sum(std::vector<double>& v) { all_reduce_sum(v.data(), int64_t(v.size()), DType::f64, kCPU); }
  void all_reduce_sum(std::vector<int64_t>& v) { all_reduce_sum(v.data(), int64_t(v.size()), DType::i64, kCPU); }

  bool is_root() const { return rank() == 0; }
  bool deterministic() const { return deterministic_; }
  void set_deterministic(bool on) { deterministic_ = on; }

 private:
  bool deterministic_ = false;
};

// A single process: rank 0 of 1.
std::unique_ptr<Communicator> make_local();

// The communicator of this process: MPI's world when launched by an MPI launcher (MPI is initialised on the first
// call and finalised at exit), else a local one. Deterministic when MIXGRAD_DETERMINISTIC_REDUCE=1.
Communicator& world();
// What the trainer uses: world(), unless a ScopedCommunicator is active.
Communicator& current();
// Makes current() return `comm` for its lifetime (tests: a single-process run inside an MPI job).
class ScopedCommunicator {
 public:
  explicit ScopedCommunicator(Communicator& comm);
  ~ScopedCommunicator();
  ScopedCommunicator(const ScopedCommunicator&) = delete;
  ScopedCommunicator& operator=(const ScopedCommunicator&) = delete;

 private:
  Communicator* previous_;
};

// Rows [begin, end) of `n` items that rank `rank` of `size` takes: contiguous blocks, sizes differing by at most one.
struct Shard {
  int64_t begin = 0, end = 0;
};
Shard shard_of(int64_t n, int rank, int size);

// Gradient all-reduce in flat buckets: the parameters (each with a gradient of its own dtype, f32 or f64) are
// grouped in order into buckets of at most `bucket_bytes` (a tensor larger than that is a bucket of its own) of one
// dtype and device; each bucket is packed into a flat buffer, summed over the ranks in place, and unpacked.
class GradientBuckets {
 public:
  GradientBuckets(std::vector<Tensor> params, int64_t bucket_bytes = int64_t(4) << 20);
  // Sums every parameter's gradient over the ranks (with several ranks a missing gradient counts as zeros and
  // is created; with one nothing changes).
  void all_reduce(Communicator& comm);
  int64_t num_buckets() const { return int64_t(buckets_.size()); }
  const std::vector<int64_t>& bucket_numels() const { return numels_; }

 private:
  std::vector<Tensor> params_;
  std::vector<std::vector<size_t>> buckets_;  // parameter positions per bucket
  std::vector<int64_t> numels_;
};

// Broadcasts the tensors (weights and buffers) of rank 0 to every rank, in place.
void broadcast_tensors(Communicator& comm, const std::vector<Tensor>& tensors);

// The sum over the ranks of per-rank evaluation results (counts, confusion matrix and loss sum), with the accuracy,
// mean loss and per-class accuracy recomputed.
app::EvalResult reduce_eval(Communicator& comm, const app::EvalResult& local, int64_t num_classes);

}  // namespace mixgrad::dist
