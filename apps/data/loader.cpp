// BatchLoader: producer/consumer over a bounded deque; the worker owns nothing the consumer touches unlocked.
#include "apps/data/loader.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "apps/data/split.h"
#include "engine/error.h"

namespace mixgrad::data {

BatchLoader::BatchLoader(const Dataset& dataset, std::vector<int64_t> indices, LoaderConfig config)
    : dataset_(dataset), config_(std::move(config)) {
  if (config_.batch_size <= 0)
    throw Error("BatchLoader: batch_size " + std::to_string(config_.batch_size) + " must be > 0");
  if (config_.queue_capacity < 1 || config_.queue_capacity > 64)
    throw Error("BatchLoader: queue_capacity " + std::to_string(config_.queue_capacity) + " must be in [1, 64]");
  if (config_.shard_count < 1 || config_.shard_rank < 0 || config_.shard_rank >= config_.shard_count)
    throw Error("BatchLoader: shard " + std::to_string(config_.shard_rank) + " of " +
                std::to_string(config_.shard_count) + " (expected 0 <= shard_rank < shard_count)");
  for (size_t i = 0; i < indices.size(); ++i)
    if (indices[i] < 0 || indices[i] >= dataset.size())
      throw Error("BatchLoader: index " + std::to_string(indices[i]) + " at position " + std::to_string(i) +
                  " is outside the dataset [0, " + std::to_string(dataset.size()) + ")");
  order_ = config_.shuffle ? shuffle_for_epoch(std::move(indices), config_.seed, config_.epoch) : std::move(indices);
  const int64_t n = static_cast<int64_t>(order_.size());
  num_batches_ = config_.drop_last ? n / config_.batch_size : (n + config_.batch_size - 1) / config_.batch_size;
  if (config_.start_batch < 0 || config_.start_batch > num_batches_)
    throw Error("BatchLoader: start_batch " + std::to_string(config_.start_batch) + " is outside [0, " +
                std::to_string(num_batches_) + "] (batches in the epoch)");
  worker_ = std::thread([this] { run(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  not_full_.notify_all();
  if (worker_.joinable()) worker_.join();
}

Batch BatchLoader::make_batch(int64_t b) const {
  const int64_t first = b * config_.batch_size;
  const int64_t n = std::min<int64_t>(first + config_.batch_size, static_cast<int64_t>(order_.size())) - first;
  const int64_t begin = first + n * config_.shard_rank / config_.shard_count;
  const int64_t end = first + n * (config_.shard_rank + 1) / config_.shard_count;
  Batch batch;
  batch.size = end - begin;
  batch.indices.assign(order_.begin() + begin, order_.begin() + end);
  batch.labels.resize(static_cast<size_t>(batch.size));
  for (int64_t r = 0; r < batch.size; ++r) batch.labels[size_t(r)] = dataset_.label(batch.indices[size_t(r)]);
  if (batch.size > 0)  // an empty shard of a short last batch has no inputs to fill
    dataset_.fill(batch, batch.indices, BatchRequest{config_.augment, config_.seed, config_.epoch});
  if (config_.on_batch) config_.on_batch(batch);
  return batch;
}

void BatchLoader::run() noexcept {
  try {
    for (int64_t b = config_.start_batch; b < num_batches_; ++b) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        not_full_.wait(lock, [&] { return stop_ || static_cast<int64_t>(queue_.size()) < config_.queue_capacity; });
        if (stop_) break;
      }
      Batch batch = make_batch(b);  // outside the lock: the consumer keeps draining meanwhile
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(batch));
      not_empty_.notify_one();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  finished_ = true;
  not_empty_.notify_all();
}

std::optional<Batch> BatchLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  not_empty_.wait(lock, [&] { return !queue_.empty() || finished_; });
  if (!queue_.empty()) {  // batches produced before a failure are still delivered, in order
    Batch batch = std::move(queue_.front());
    queue_.pop_front();
    not_full_.notify_one();
    return batch;
  }
  if (error_) std::rethrow_exception(error_);
  return std::nullopt;
}

}  // namespace mixgrad::data
