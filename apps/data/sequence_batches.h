// A SequenceSet (apps/data/sequences.h) as a Dataset: right-padded token batches with per-sample lengths.
#pragma once
#include <cstdint>

#include "apps/data/dataset.h"
#include "apps/data/sequences.h"

namespace mixgrad::data {

// How the batch length is chosen: every batch padded to `fixed_length` when it is > 0 (the LRA inputs; samples
// longer than it are an error), else to the longest sample of the batch rounded up to a multiple of `multiple`
// (what chunked attention and CSP's groups of K need; CSP-MEGA's text batches, csp.md §10.3).
struct SequencePadding {
  int64_t fixed_length = 0;
  int64_t multiple = 1;
};

class SequenceBatches : public Dataset {
 public:
  // `set` must outlive this object. Empty samples are an error (a mixer needs at least one valid token).
  SequenceBatches(const SequenceSet& set, SequencePadding padding);
  int64_t size() const override { return set_.size(); }
  int64_t num_classes() const override { return set_.num_classes; }
  int64_t label(int64_t index) const override { return set_.labels[size_t(index)]; }
  void fill(Batch& batch, const std::vector<int64_t>& indices, const BatchRequest& request) const override;
  const SequenceSet& set() const { return set_; }
  // The padded length of a batch whose longest sample has `longest` tokens.
  int64_t padded_length(int64_t longest) const;

 private:
  const SequenceSet& set_;
  SequencePadding padding_;
};

}  // namespace mixgrad::data
