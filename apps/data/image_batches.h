// An in-memory image data set (ImageDataset) as a Dataset: training batches are augmented (random crop / flip),
// every batch is normalised, by one Augmenter (apps/data/augment.h).
#pragma once
#include "apps/data/augment.h"
#include "apps/data/dataset.h"
#include "apps/data/idx.h"

namespace mixgrad::data {

class ImageBatches : public Dataset {
 public:
  // `images` must outlive this object; `augmentation` is validated against its image shape.
  ImageBatches(const ImageDataset& images, AugmentConfig augmentation);
  int64_t size() const override { return images_.n; }
  int64_t num_classes() const override { return images_.num_classes; }
  int64_t label(int64_t index) const override { return images_.labels[size_t(index)]; }
  void fill(Batch& batch, const std::vector<int64_t>& indices, const BatchRequest& request) const override;
  const ImageDataset& images() const { return images_; }
  const Augmenter& augmenter() const { return augmenter_; }

 private:
  const ImageDataset& images_;
  Augmenter augmenter_;
};

}  // namespace mixgrad::data
