// ImageBatches: per-image augmentation or normalisation into the batch's float buffer.
#include "apps/data/image_batches.h"

#include <stdexcept>
#include <string>
#include <utility>

#include "engine/error.h"

namespace mixgrad::data {

ImageBatches::ImageBatches(const ImageDataset& images, AugmentConfig augmentation)
    : images_(images), augmenter_(std::move(augmentation), images.channels, images.height, images.width) {
  const int64_t numel = images.image_numel();
  if (static_cast<int64_t>(images.pixels.size()) != images.n * numel ||
      static_cast<int64_t>(images.labels.size()) != images.n)
    throw Error("ImageBatches: data set of " + std::to_string(images.n) + " images holds " +
                std::to_string(images.pixels.size()) + " pixel bytes and " + std::to_string(images.labels.size()) +
                " labels, expected " + std::to_string(images.n * numel) + " and " + std::to_string(images.n));
}

void ImageBatches::fill(Batch& batch, const std::vector<int64_t>& indices, const BatchRequest& request) const {
  const int64_t numel = images_.image_numel();
  batch.images.resize(indices.size() * size_t(numel));
  for (size_t r = 0; r < indices.size(); ++r) {
    float* dst = batch.images.data() + int64_t(r) * numel;
    if (request.augment)
      augmenter_.augment(images_.image(indices[r]), request.seed, request.epoch, indices[r], dst);
    else
      augmenter_.normalize(images_.image(indices[r]), dst);
  }
}

}  // namespace mixgrad::data
