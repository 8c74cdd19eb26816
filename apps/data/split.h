// Train/validation splits (vit.md §9) and the seeded per-epoch shuffle of an index list.
#pragma once
#include <cstdint>
#include <vector>

namespace mixgrad::data {

struct TrainValSplit {
  std::vector<int64_t> train, val;  // dataset indices, each in increasing order
};

// MNIST / Fashion-MNIST: the last `per_class` images of each class in file order go to validation
// (500 × 10 = 5,000 by default). Throws if a class has fewer than `per_class` images or a label is out of range.
TrainValSplit split_last_per_class(const std::vector<int64_t>& labels, int64_t num_classes, int64_t per_class = 500);

// Indices [val_begin, val_end) go to validation, the rest to training (CIFAR: [45000, 50000) of 50,000).
TrainValSplit split_index_range(int64_t n, int64_t val_begin, int64_t val_end);
// CIFAR: images [45000, 50000) validate; fewer than 50000 images is an error saying so.
TrainValSplit split_cifar(int64_t n = 50000);

// Fisher–Yates permutation of `indices` driven by philox keyed by (seed, epoch): deterministic, the same on
// every machine and thread count.
std::vector<int64_t> shuffle_for_epoch(std::vector<int64_t> indices, uint64_t seed, uint64_t epoch);

}  // namespace mixgrad::data
