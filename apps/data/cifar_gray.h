// CIFAR-10 for the LRA Image task (specs/lra.md §3.4): every image as 1024 grey-level tokens, row-major 32×32.
#pragma once
#include <cstdint>
#include <filesystem>

#include "apps/data/idx.h"  // ImageDataset
#include "apps/data/sequences.h"

namespace mixgrad::data {

inline constexpr int64_t kGrayVocab = 256;

// The project's grey level: (299 R + 587 G + 114 B + 500) / 1000 in integers (PIL's "L" weights, rounded), 0..255.
constexpr uint8_t gray_level(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((299 * r + 587 * g + 114 * b + 500) / 1000);
}

// One sequence of height × width grey levels per image of a 3-channel [n, 3, h, w] data set; labels and
// num_classes carried over, vocab_size 256. Throws when the data set does not have 3 channels.
SequenceSet gray_sequences(const ImageDataset& rgb);

// load_cifar10(dir, train) as grey-level sequences: 10 classes, 1024 tokens per image, vocab 256.
SequenceSet load_cifar10_gray(const std::filesystem::path& dir, bool train);

}  // namespace mixgrad::data
