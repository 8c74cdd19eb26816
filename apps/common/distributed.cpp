// The communicator backends (local, MPI, NCCL bootstrapped through MPI), gradient buckets and sharded evaluation.
#include "apps/common/distributed.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/error.h"
#include "engine/mixgrad.h"

#ifdef MIXGRAD_WITH_MPI
#include <mpi.h>
#endif
#ifdef MIXGRAD_WITH_NCCL
#include <nccl.h>

#include "engine/cuda_backend.h"
#endif

namespace mixgrad::dist {

namespace {

void check_dtype(DType dtype, const char* op) {
  MIXGRAD_CHECK(dtype == DType::f32 || dtype == DType::f64 || dtype == DType::i64,
                "{}: dtype {} is not supported (expected f32, f64 or i64)", op, dtype_name(dtype));
}

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* backend() const override { return "local"; }
  void all_reduce_sum(void*, int64_t, DType dtype, Device) override { check_dtype(dtype, "all_reduce_sum"); }
  void broadcast(void*, int64_t, DType dtype, Device, int root) override {
    check_dtype(dtype, "broadcast");
    MIXGRAD_CHECK(root == 0, "broadcast: root rank {} of a single process (expected 0)", root);
  }
  void barrier() override {}
};

#ifdef MIXGRAD_WITH_MPI
void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(fmt::format("{} failed: {}", what, std::string(text, size_t(len))));
}

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    default:
      return MPI_INT64_T;
  }
}

// Sum of the ranks' buffers in rank order on rank 0, then broadcast: the same bits for any MPI algorithm.
template <class T>
void ordered_sum(T* data, int64_t count, int size) {
  std::vector<T> all(size_t(count) * size_t(size));
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const MPI_Datatype t = mpi_type(std::is_same_v<T, float>    ? DType::f32
                                  : std::is_same_v<T, double> ? DType::f64
                                                              : DType::i64);
  mpi_check(MPI_Gather(data, int(count), t, all.data(), int(count), t, 0, MPI_COMM_WORLD), "MPI_Gather");
  if (rank == 0)
    for (int64_t i = 0; i < count; ++i) {
      T s = all[size_t(i)];
      for (int r = 1; r < size; ++r) s += all[size_t(r) * size_t(count) + size_t(i)];
      data[i] = s;
    }
  mpi_check(MPI_Bcast(data, int(count), t, 0, MPI_COMM_WORLD), "MPI_Bcast");
}

// CUDA buffers go through NCCL even on one rank, so that `mpirun -np 1` exercises it.
#ifdef MIXGRAD_WITH_NCCL
constexpr bool kNccl = true;
#else
constexpr bool kNccl = false;
#endif

#ifdef MIXGRAD_WITH_NCCL
void nccl_check(ncclResult_t rc, const char* what) {
  MIXGRAD_CHECK(rc == ncclSuccess, "{} failed: {}", what, ncclGetErrorString(rc));
}
ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    default:
      return ncclInt64;
  }
}
#endif

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) mpi_check(MPI_Init(nullptr, nullptr), "MPI_Init");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiCommunicator() override {
#ifdef MIXGRAD_WITH_NCCL
    if (nccl_) ncclCommDestroy(nccl_);
#endif
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override {
#ifdef MIXGRAD_WITH_NCCL
    return "mpi+nccl";
#else
    return "mpi";
#endif
  }

  void all_reduce_sum(void* data, int64_t count, DType dtype, Device device) override {
    check_dtype(dtype, "all_reduce_sum");
    check_count(count, "all_reduce_sum");
    if (count == 0) return;
    if (kNccl && device.is_cuda()) return cuda_all_reduce(data, count, dtype, device);  // also one rank (tests)
    if (size_ == 1) return;
    if (device.is_cuda()) return cuda_all_reduce(data, count, dtype, device);
    if (deterministic()) {
      if (dtype == DType::f32) return ordered_sum(static_cast<float*>(data), count, size_);
      if (dtype == DType::f64) return ordered_sum(static_cast<double*>(data), count, size_);
      return ordered_sum(static_cast<int64_t*>(data), count, size_);
    }
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, data, int(count), mpi_type(dtype), MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  }

  void broadcast(void* data, int64_t count, DType dtype, Device device, int root) override {
    check_dtype(dtype, "broadcast");
    check_count(count, "broadcast");
    MIXGRAD_CHECK(root >= 0 && root < size_, "broadcast: root rank {} (expected 0 .. {})", root, size_ - 1);
    if (count == 0) return;
    if (kNccl && device.is_cuda()) return cuda_broadcast(data, count, dtype, device, root);
    if (size_ == 1) return;
    if (device.is_cuda()) return cuda_broadcast(data, count, dtype, device, root);
    mpi_check(MPI_Bcast(data, int(count), mpi_type(dtype), root, MPI_COMM_WORLD), "MPI_Bcast");
  }

  void barrier() override { mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

 private:
  static void check_count(int64_t count, const char* op) {
    MIXGRAD_CHECK(count >= 0 && count <= INT32_MAX, "{}: {} elements (expected 0 .. 2^31-1 per call)", op, count);
  }

#ifdef MIXGRAD_WITH_NCCL
  // The NCCL communicator of `device`: rank 0 makes the unique id, MPI broadcasts it, every rank joins.
  ncclComm_t nccl(const Device& device) {
    if (nccl_) {
      MIXGRAD_CHECK(device == nccl_device_, "NCCL: this rank's communicator is on {}, not {} (one device per rank)",
                    nccl_device_.str(), device.str());
      return nccl_;
    }
    ncclUniqueId id;
    if (rank_ == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    mpi_check(MPI_Bcast(&id, int(sizeof(id)), MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast of the ncclUniqueId");
    cuda::set_device(device);
    nccl_check(ncclCommInitRank(&nccl_, size_, id, rank_), "ncclCommInitRank");
    nccl_device_ = device;
    return nccl_;
  }
  void cuda_all_reduce(void* data, int64_t count, DType dtype, Device device) {
    ncclComm_t c = nccl(device);
    cudaStream_t s = cuda::stream(device);
    if (!deterministic()) {
      nccl_check(ncclAllReduce(data, data, size_t(count), nccl_type(dtype), ncclSum, c, s), "ncclAllReduce");
      return;
    }
    // Deterministic: every rank gathers all buffers and sums them in rank order with the engine's own kernels.
    const size_t bytes = size_t(count) * dtype_size(dtype);
    Tensor all = empty({int64_t(size_), count}, TensorOptions{dtype, device});
    nccl_check(ncclAllGather(data, all.raw_data(), size_t(count), nccl_type(dtype), c, s), "ncclAllGather");
    Tensor acc = narrow(all, 0, 0, 1);
    for (int r = 1; r < size_; ++r) acc = add(acc, narrow(all, 0, r, 1));
    const cudaError_t rc = cudaMemcpyAsync(data, acc.raw_data(), bytes, cudaMemcpyDeviceToDevice, s);
    MIXGRAD_CHECK(rc == cudaSuccess, "deterministic all_reduce_sum: cudaMemcpyAsync failed: {}",
                  cudaGetErrorString(rc));
  }
  void cuda_broadcast(void* data, int64_t count, DType dtype, Device device, int root) {
    nccl_check(ncclBroadcast(data, data, size_t(count), nccl_type(dtype), root, nccl(device), cuda::stream(device)),
               "ncclBroadcast");
  }
  ncclComm_t nccl_ = nullptr;
  Device nccl_device_ = kCPU;
#else
  // Without NCCL a CUDA buffer goes through a host copy.
  void cuda_all_reduce(void* data, int64_t count, DType dtype, Device device) {
    Tensor host = via_host(data, count, dtype, device);
    all_reduce_sum(host.raw_data(), count, dtype, kCPU);
    back_to_device(host, data, count, dtype, device);
  }
  void cuda_broadcast(void* data, int64_t count, DType dtype, Device device, int root) {
    Tensor host = via_host(data, count, dtype, device);
    broadcast(host.raw_data(), count, dtype, kCPU, root);
    back_to_device(host, data, count, dtype, device);
  }
  static Tensor device_view(void* data, int64_t count, DType dtype, Device device);
  static Tensor via_host(void* data, int64_t count, DType dtype, Device device) {
    return device_view(data, count, dtype, device).to(kCPU);
  }
  static void back_to_device(const Tensor& host, void* data, int64_t count, DType dtype, Device device) {
    Tensor d = device_view(data, count, dtype, device);
    d.copy_(host);
  }
#endif

  int rank_ = 0, size_ = 1;
};

#ifndef MIXGRAD_WITH_NCCL
Tensor MpiCommunicator::device_view(void*, int64_t, DType, Device device) {
  throw Error(
      fmt::format("all_reduce_sum / broadcast of a buffer on {}: this build has MPI but no NCCL; pass a "
                  "tensor (Communicator::all_reduce_sum(Tensor&)) or build with NCCL",
                  device.str()));
}
#endif

// An MPI launcher started this process.
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}
#endif

std::unique_ptr<Communicator> make_world() {
  std::unique_ptr<Communicator> c;
#ifdef MIXGRAD_WITH_MPI
  if (launched_by_mpi()) c = std::make_unique<MpiCommunicator>();
#endif
  if (!c) c = make_local();
  const char* det = std::getenv("MIXGRAD_DETERMINISTIC_REDUCE");
  c->set_deterministic(det && std::string(det) == "1");
  return c;
}

Communicator* g_current = nullptr;

}  // namespace

std::unique_ptr<Communicator> make_local() { return std::make_unique<LocalCommunicator>(); }

Communicator& world() {
  static const std::unique_ptr<Communicator> w = make_world();
  return *w;
}

Communicator& current() { return g_current ? *g_current : world(); }

ScopedCommunicator::ScopedCommunicator(Communicator& comm) : previous_(g_current) { g_current = &comm; }
ScopedCommunicator::~ScopedCommunicator() { g_current = previous_; }

void Communicator::all_reduce_sum(Tensor& t) { all_reduce_sum(t.raw_data(), t.numel(), t.dtype(), t.device()); }
void Communicator::broadcast(Tensor& t, int root) { broadcast(t.raw_data(), t.numel(), t.dtype(), t.device(), root); }

Shard shard_of(int64_t n, int rank, int size) {
  MIXGRAD_CHECK(size >= 1 && rank >= 0 && rank < size && n >= 0, "shard_of: rank {} of {} over {} items", rank, size,
                n);
  return {n * rank / size, n * (rank + 1) / size};
}

// ---- gradient buckets -------------------------------------------------------------------------------------------
GradientBuckets::GradientBuckets(std::vector<Tensor> params, int64_t bucket_bytes) : params_(std::move(params)) {
  MIXGRAD_CHECK(bucket_bytes >= 1, "GradientBuckets: bucket size {} bytes (expected >= 1)", bucket_bytes);
  int64_t bytes = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    check_dtype(p.dtype(), "GradientBuckets");
    const int64_t b = int64_t(p.nbytes());
    const bool fits = !buckets_.empty() && bytes + b <= bucket_bytes &&
                      params_[buckets_.back().front()].dtype() == p.dtype() &&
                      params_[buckets_.back().front()].device() == p.device();
    if (!fits) buckets_.emplace_back(), numels_.push_back(0), bytes = 0;
    buckets_.back().push_back(i);
    numels_.back() += p.numel();
    bytes += b;
  }
}

void GradientBuckets::all_reduce(Communicator& comm) {
  if (comm.size() == 1) return;  // one process: the gradients are already the batch's
  NoGradGuard ng;
  for (Tensor& p : params_)
    if (!p.grad().defined()) p.set_grad(zeros_like(p));
  for (const std::vector<size_t>& bucket : buckets_) {
    std::vector<Tensor> parts;
    for (size_t i : bucket) parts.push_back(reshape(params_[i].grad(), {params_[i].numel()}));
    Tensor flat = cat(parts, 0);  // a new flat buffer (a copy even for one tensor)
    comm.all_reduce_sum(flat);
    int64_t off = 0;
    for (size_t i : bucket) {
      Tensor g = params_[i].grad();
      g.copy_(reshape(narrow(flat, 0, off, g.numel()), g.shape()));
      off += g.numel();
    }
  }
}

void broadcast_tensors(Communicator& comm, const std::vector<Tensor>& tensors) {
  if (comm.size() == 1) return;
  for (Tensor t : tensors) comm.broadcast(t, 0);
}

app::EvalResult reduce_eval(Communicator& comm, const app::EvalResult& local, int64_t k) {
  if (comm.size() == 1) return local;
  std::vector<int64_t> counts{local.n, local.correct};
  for (int64_t t = 0; t < k; ++t)
    for (int64_t p = 0; p < k; ++p)
      counts.push_back(local.confusion.empty() ? 0 : local.confusion[size_t(t)][size_t(p)]);
  std::vector<double> loss{local.loss * double(local.n)};
  comm.all_reduce_sum(counts);
  comm.all_reduce_sum(loss);
  app::EvalResult r;
  r.n = counts[0], r.correct = counts[1];
  r.confusion.assign(size_t(k), std::vector<int64_t>(size_t(k), 0));
  for (int64_t t = 0; t < k; ++t)
    for (int64_t p = 0; p < k; ++p) r.confusion[size_t(t)][size_t(p)] = counts[size_t(2 + t * k + p)];
  r.accuracy = r.n ? double(r.correct) / double(r.n) : 0.0;
  r.loss = r.n ? loss[0] / double(r.n) : 0.0;
  for (int64_t c = 0; c < k; ++c) {
    int64_t tot = 0;
    for (int64_t v : r.confusion[size_t(c)]) tot += v;
    r.per_class_accuracy.push_back(tot ? double(r.confusion[size_t(c)][size_t(c)]) / double(tot) : 0.0);
  }
  return r;
}

}  // namespace mixgrad::dist
