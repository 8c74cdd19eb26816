// Training-image pre-processing (vit.md §7): random crop with zero padding, horizontal flip, /255 and per-channel
// normalisation into a float buffer. Each image's random draw is keyed by (seed, epoch, image index) only.
#pragma once
#include <cstdint>
#include <vector>

namespace mixgrad::data {

// Per-channel mean and standard deviation on the [0, 1] scale (x/255).
struct ChannelStats {
  std::vector<float> mean, stddev;
};
ChannelStats fashion_mnist_stats();  // (0.2860, 0.3530), vit.md §5.3
ChannelStats mnist_stats();          // (0.1307, 0.3081)
ChannelStats cifar10_stats();        // (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010), vit.md §3.2
ChannelStats cifar100_stats();       // (0.5071, 0.4867, 0.4408) / (0.2675, 0.2565, 0.2761)

struct AugmentConfig {
  int64_t crop_padding = 0;      // P: zero-pad P pixels per side, crop H×W at (dy, dx) uniform in [0, 2P]²; 0 = off
  bool horizontal_flip = false;  // flip with probability 0.5 (never for MNIST digits)
  ChannelStats stats{{0.0f}, {1.0f}};  // one value per channel, or a single value for all channels
};

// The random choices for one image.
struct AugmentDraw {
  int64_t dy = 0, dx = 0;  // crop offsets in the padded image, each in [0, 2P]
  bool flip = false;
};

// Validates the config against an image shape once and precomputes per-channel lookup tables, so applying it
// costs one table read per pixel. Thread-safe to share between threads (all methods are const).
class Augmenter {
 public:
  Augmenter(AugmentConfig config, int64_t channels, int64_t height, int64_t width);

  // Crop offsets and flip for image `index` in epoch `epoch`: philox keyed by (seed, epoch, index), so the
  // draw does not depend on the batch, the order of calls or the number of threads.
  AugmentDraw draw(uint64_t seed, uint64_t epoch, int64_t index) const;

  // Training transform: crop/flip as drawn, then normalise. src uint8 [C,H,W] -> dst float [C,H,W].
  void apply(const uint8_t* src, const AugmentDraw& draw, float* dst) const;
  void augment(const uint8_t* src, uint64_t seed, uint64_t epoch, int64_t index, float* dst) const {
    apply(src, draw(seed, epoch, index), dst);
  }
  // Evaluation transform: normalisation only.
  void normalize(const uint8_t* src, float* dst) const;

  const AugmentConfig& config() const { return config_; }
  int64_t image_numel() const { return channels_ * height_ * width_; }

 private:
  AugmentConfig config_;
  int64_t channels_, height_, width_;
  std::vector<float> lut_;  // [C, 256]: (v/255 - mean[c]) / std[c]
};

}  // namespace mixgrad::data
