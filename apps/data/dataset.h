// What the background loader assembles and what it reads from: a Batch (images, or padded token sequences with
// their lengths and an optional second document) and the Dataset interface every data set implements.
#pragma once
#include <cstdint>
#include <vector>

namespace mixgrad::data {

struct Batch {
  int64_t size = 0;
  std::vector<int64_t> labels;   // [size]
  std::vector<int64_t> indices;  // [size] data-set index of each row
  // Image data sets: normalised (and, in training, augmented) pixels [size, C, H, W].
  std::vector<float> images;
  // Sequence data sets: tokens [size, seq_len] int32, each row its sample's tokens then 0s; lengths [size] the
  // valid counts (the padding mask is j >= lengths[b], never token == 0: pixel tasks have black pixels of value 0).
  int64_t seq_len = 0;
  std::vector<int32_t> tokens, lengths;
  // The second document of a paired data set (Retrieval), same layout; empty otherwise.
  int64_t seq_len2 = 0;
  std::vector<int32_t> tokens2, lengths2;
};

// How a batch is to be made: training batches are augmented with draws keyed by (seed, epoch, index).
struct BatchRequest {
  bool augment = false;
  uint64_t seed = 0, epoch = 0;
};

// A labelled data set the loader can batch. Implementations are immutable after construction: fill() is called
// from the loader's worker thread (and may be called from several threads at once).
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int64_t num_classes() const = 0;
  virtual int64_t label(int64_t index) const = 0;
  // Fills the inputs of `batch` (images, or tokens and lengths) for the samples `indices`, in order; the loader
  // has already set size, labels and indices.
  virtual void fill(Batch& batch, const std::vector<int64_t>& indices, const BatchRequest& request) const = 0;
};

}  // namespace mixgrad::data
