// Splits and epoch shuffles: pure index arithmetic, no dataset access.
#include "apps/data/split.h"

#include <stdexcept>
#include <string>
#include <utility>

#include "engine/error.h"
#include "kernels/philox.h"

namespace mixgrad::data {
namespace {

constexpr uint64_t kShuffleStreamKey = 0x73687566666c6521ull;  // "shuffle!", xor-ed into the seed

// High 64 bits of the 128-bit product a * b.
uint64_t mul_high(uint64_t a, uint64_t b) {
  const uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32, b_lo = b & 0xffffffffu, b_hi = b >> 32;
  const uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
  const uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xffffffffu) + lo_hi;
  return hi_hi + (hi_lo >> 32) + (cross >> 32);
}

}  // namespace

TrainValSplit split_last_per_class(const std::vector<int64_t>& labels, int64_t num_classes, int64_t per_class) {
  if (num_classes <= 0 || per_class < 0)
    throw Error("split_last_per_class: num_classes " + std::to_string(num_classes) + " must be > 0 and per_class " +
                std::to_string(per_class) + " >= 0");
  std::vector<int64_t> count(static_cast<size_t>(num_classes), 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes)
      throw Error("split_last_per_class: label " + std::to_string(labels[i]) + " at index " + std::to_string(i) +
                  " is outside [0, " + std::to_string(num_classes) + ")");
    ++count[static_cast<size_t>(labels[i])];
  }
  for (int64_t c = 0; c < num_classes; ++c)
    if (count[static_cast<size_t>(c)] < per_class)
      throw Error("training set: class " + std::to_string(c) + " has " + std::to_string(count[static_cast<size_t>(c)]) +
                  " images, fewer than the " + std::to_string(per_class) +
                  " per class held out for validation; expected the full training set");
  // Walk backwards so "the last per_class of each class" is a simple countdown; then restore file order.
  std::vector<int64_t> taken(static_cast<size_t>(num_classes), 0);
  std::vector<char> is_val(labels.size(), 0);
  for (size_t i = labels.size(); i-- > 0;) {
    int64_t& t = taken[static_cast<size_t>(labels[i])];
    if (t < per_class) {
      ++t;
      is_val[i] = 1;
    }
  }
  TrainValSplit split;
  split.val.reserve(static_cast<size_t>(per_class * num_classes));
  split.train.reserve(labels.size() - split.val.capacity());
  for (size_t i = 0; i < labels.size(); ++i) (is_val[i] ? split.val : split.train).push_back(static_cast<int64_t>(i));
  if (split.train.empty())
    throw Error("training set: all " + std::to_string(labels.size()) + " images are held out for validation (" +
                std::to_string(per_class) + " per class); expected more images than that");
  return split;
}

TrainValSplit split_index_range(int64_t n, int64_t val_begin, int64_t val_end) {
  if (n < 0 || val_begin < 0 || val_begin > val_end || val_end > n)
    throw Error("split_index_range: validation range [" + std::to_string(val_begin) + ", " + std::to_string(val_end) +
                ") does not fit a dataset of " + std::to_string(n) + " images; expected 0 <= begin <= end <= n");
  TrainValSplit split;
  split.train.reserve(static_cast<size_t>(n - (val_end - val_begin)));
  split.val.reserve(static_cast<size_t>(val_end - val_begin));
  for (int64_t i = 0; i < n; ++i) (i >= val_begin && i < val_end ? split.val : split.train).push_back(i);
  return split;
}

TrainValSplit split_cifar(int64_t n) {
  if (n < 50000)
    throw Error("CIFAR training set has " + std::to_string(n) +
                " images, but the standard split holds out images 45000..49999 for validation; expected the full "
                "training set of 50000 images");
  return split_index_range(n, 45000, 50000);
}

std::vector<int64_t> shuffle_for_epoch(std::vector<int64_t> indices, uint64_t seed, uint64_t epoch) {
  const uint64_t key = seed ^ kShuffleStreamKey;
  for (size_t i = indices.size(); i-- > 1;) {
    // 64 random bits per position (lanes 0 and 1 of philox block i); (r * (i+1)) >> 64 is uniform on [0, i]
    // up to a bias of (i+1)/2^64.
    const uint64_t lo = kernels::philox_u32(key, epoch, 4 * uint64_t(i));
    const uint64_t hi = kernels::philox_u32(key, epoch, 4 * uint64_t(i) + 1);
    const size_t j = static_cast<size_t>(mul_high((hi << 32) | lo, uint64_t(i) + 1));
    std::swap(indices[i], indices[j]);
  }
  return indices;
}

}  // namespace mixgrad::data
