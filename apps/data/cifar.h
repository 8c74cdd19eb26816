// CIFAR-10 / CIFAR-100 binary-release readers (records of label byte(s) + 3×32×32 uint8 planes).
#pragma once
#include <filesystem>

#include "apps/data/idx.h"  // ImageDataset

namespace mixgrad::data {

// CIFAR-10 binary release: `data_batch_1..5.bin` (train, concatenated in order) or `test_batch.bin`, records of
// 1 label byte + 3072 pixel bytes (R, G, B planes of 32×32). Looks in `dir`, then in `dir/cifar-10-batches-bin`.
ImageDataset load_cifar10(const std::filesystem::path& dir, bool train);

// CIFAR-100 binary release: `train.bin` or `test.bin`, records of coarse label, fine label, 3072 pixel bytes;
// the fine label (100 classes) is used. Looks in `dir`, then in `dir/cifar-100-binary`.
ImageDataset load_cifar100(const std::filesystem::path& dir, bool train);

}  // namespace mixgrad::data
