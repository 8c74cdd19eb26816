// Background batch loader: one worker thread assembles the batches of any Dataset (apps/data/dataset.h) into a
// bounded queue.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "apps/data/dataset.h"

namespace mixgrad::data {

struct LoaderConfig {
  int64_t batch_size = 128;
  bool shuffle = true;     // permute the index list with shuffle_for_epoch(seed, epoch); false keeps its order
  bool augment = true;     // the data set's training transform (e.g. random crop/flip); false = evaluation's
  bool drop_last = false;  // drop a final batch smaller than batch_size
  uint64_t seed = 0;
  uint64_t epoch = 0;
  int64_t start_batch = 0;     // resume: first batch to produce; batches k.. equal those of an uninterrupted epoch
  int64_t queue_capacity = 3;  // batches prepared ahead, 1..64
  // Data-parallel training: each batch is the contiguous part shard_rank of shard_count (sizes differing by at most
  // one, possibly empty) of the global batch of batch_size rows that one process would get.
  int64_t shard_rank = 0, shard_count = 1;
  // Optional extra step run on the worker thread for each assembled batch; an exception it throws (like any
  // other in the worker) is rethrown by next().
  std::function<void(Batch&)> on_batch;
};

// Yields the batches of one epoch over `indices` (dataset positions). The dataset must outlive the loader.
// All arguments are validated in the constructor; the worker thread starts immediately.
class BatchLoader {
 public:
  BatchLoader(const Dataset& dataset, std::vector<int64_t> indices, LoaderConfig config);
  ~BatchLoader();  // stops and joins the worker, also mid-epoch; never throws
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The next batch, std::nullopt after the last one. Rethrows an exception raised by the worker (every call
  // after it rethrows it again).
  std::optional<Batch> next();

  int64_t num_batches() const { return num_batches_; }          // in the whole epoch, counting skipped ones
  const std::vector<int64_t>& order() const { return order_; }  // the epoch's index order

 private:
  void run() noexcept;
  Batch make_batch(int64_t b) const;

  const Dataset& dataset_;
  LoaderConfig config_;
  std::vector<int64_t> order_;
  int64_t num_batches_ = 0;

  std::mutex mutex_;
  std::condition_variable not_empty_, not_full_;
  std::deque<Batch> queue_;
  bool stop_ = false;
  bool finished_ = false;  // the worker has produced its last batch (or failed)
  std::exception_ptr error_;
  std::thread worker_;
};

}  // namespace mixgrad::data
