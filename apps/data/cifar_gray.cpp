// CIFAR-10 as grey-level sequences for the LRA Image task (see cifar_gray.h).
#include "apps/data/cifar_gray.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "apps/data/cifar.h"
#include "engine/error.h"

namespace mixgrad::data {

SequenceSet gray_sequences(const ImageDataset& rgb) {
  if (rgb.channels != 3)
    throw Error("gray_sequences: images have " + std::to_string(rgb.channels) +
                " channel(s), expected 3 (R, G, B planes)");
  const int64_t plane = rgb.height * rgb.width;
  SequenceSet set;
  set.num_classes = rgb.num_classes;
  set.vocab_size = kGrayVocab;
  set.tokens.reserve(static_cast<size_t>(rgb.n * plane));
  set.offsets.reserve(static_cast<size_t>(rgb.n + 1));
  set.labels.reserve(static_cast<size_t>(rgb.n));
  std::vector<int32_t> gray(static_cast<size_t>(plane));
  for (int64_t i = 0; i < rgb.n; ++i) {
    const uint8_t* r = rgb.image(i);
    const uint8_t *g = r + plane, *b = g + plane;
    for (int64_t p = 0; p < plane; ++p) gray[static_cast<size_t>(p)] = gray_level(r[p], g[p], b[p]);
    set.add(gray, rgb.labels[static_cast<size_t>(i)]);
  }
  return set;
}

SequenceSet load_cifar10_gray(const std::filesystem::path& dir, bool train) {
  return gray_sequences(load_cifar10(dir, train));
}

}  // namespace mixgrad::data
