// Augmentation: philox draws per image, lookup-table normalisation, crop and flip by index arithmetic.
#include "apps/data/augment.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/error.h"
#include "kernels/philox.h"

namespace mixgrad::data {
namespace {

// Xor-ed into the user's seed so augmentation draws never coincide with other philox streams of the same seed.
constexpr uint64_t kAugmentStreamKey = 0x6175676d656e7421ull;  // "augment!"

uint32_t uniform_below(uint32_t bits, uint32_t n) {
  return static_cast<uint32_t>((uint64_t(bits) * n) >> 32);
}

}  // namespace

ChannelStats fashion_mnist_stats() { return {{0.2860f}, {0.3530f}}; }
ChannelStats mnist_stats() { return {{0.1307f}, {0.3081f}}; }
ChannelStats cifar10_stats() { return {{0.4914f, 0.4822f, 0.4465f}, {0.2023f, 0.1994f, 0.2010f}}; }
ChannelStats cifar100_stats() { return {{0.5071f, 0.4867f, 0.4408f}, {0.2675f, 0.2565f, 0.2761f}}; }

Augmenter::Augmenter(AugmentConfig config, int64_t channels, int64_t height, int64_t width)
    : config_(std::move(config)), channels_(channels), height_(height), width_(width) {
  if (channels <= 0 || height <= 0 || width <= 0)
    throw Error("Augmenter: image shape [" + std::to_string(channels) + ", " + std::to_string(height) + ", " +
                std::to_string(width) + "] must be positive");
  if (config_.crop_padding < 0 || config_.crop_padding > (int64_t(1) << 20))
    throw Error("Augmenter: crop_padding " + std::to_string(config_.crop_padding) + " must be in [0, 2^20]");
  const auto check_size = [&](const std::vector<float>& v, const char* what) {
    if (v.size() != 1 && static_cast<int64_t>(v.size()) != channels)
      throw Error("Augmenter: " + std::string(what) + " has " + std::to_string(v.size()) + " values, expected 1 or " +
                  std::to_string(channels) + " (one per channel)");
  };
  check_size(config_.stats.mean, "mean");
  check_size(config_.stats.stddev, "stddev");
  lut_.resize(static_cast<size_t>(channels * 256));
  for (int64_t c = 0; c < channels; ++c) {
    const float mean = config_.stats.mean.size() == 1 ? config_.stats.mean[0] : config_.stats.mean[c];
    const float sd = config_.stats.stddev.size() == 1 ? config_.stats.stddev[0] : config_.stats.stddev[c];
    if (!(sd > 0.0f) || !std::isfinite(sd) || !std::isfinite(mean))
      throw Error("Augmenter: channel " + std::to_string(c) + " has mean " + std::to_string(mean) + " and stddev " +
                  std::to_string(sd) + ", expected finite values with stddev > 0");
    // Same arithmetic as torchvision's ToTensor (x/255) then Normalize ((x - mean) / std), in float.
    for (int v = 0; v < 256; ++v) lut_[static_cast<size_t>(c * 256 + v)] = (static_cast<float>(v) / 255.0f - mean) / sd;
  }
}

AugmentDraw Augmenter::draw(uint64_t seed, uint64_t epoch, int64_t index) const {
  const uint64_t key = seed ^ kAugmentStreamKey;
  const uint64_t i = static_cast<uint64_t>(index) * 4;  // one philox block (4 lanes) per image
  const uint32_t crop_range = static_cast<uint32_t>(2 * config_.crop_padding + 1);
  AugmentDraw d;
  // Every lane is drawn whatever the config, so turning one option on does not change the others' draws.
  const uint32_t ry = kernels::philox_u32(key, epoch, i + 0);
  const uint32_t rx = kernels::philox_u32(key, epoch, i + 1);
  const uint32_t rf = kernels::philox_u32(key, epoch, i + 2);
  d.dy = uniform_below(ry, crop_range);
  d.dx = uniform_below(rx, crop_range);
  d.flip = config_.horizontal_flip && (rf >> 31) != 0;
  return d;
}

void Augmenter::apply(const uint8_t* src, const AugmentDraw& draw, float* dst) const {
  const int64_t P = config_.crop_padding, H = height_, W = width_;
  if (draw.dy < 0 || draw.dy > 2 * P || draw.dx < 0 || draw.dx > 2 * P)
    throw Error("Augmenter::apply: crop offsets (" + std::to_string(draw.dy) + ", " + std::to_string(draw.dx) +
                ") outside [0, " + std::to_string(2 * P) + "]");
  const int64_t oy = draw.dy - P, ox = draw.dx - P;  // source = output + offset
  for (int64_t c = 0; c < channels_; ++c) {
    const float* lut = lut_.data() + c * 256;
    const uint8_t* plane = src + c * H * W;
    float* out_plane = dst + c * H * W;
    for (int64_t y = 0; y < H; ++y) {
      float* out = out_plane + y * W;
      const int64_t sy = y + oy;
      if (sy < 0 || sy >= H) {
        for (int64_t x = 0; x < W; ++x) out[x] = lut[0];  // zero padding (raw value 0)
        continue;
      }
      const uint8_t* row = plane + sy * W;
      for (int64_t x = 0; x < W; ++x) {
        const int64_t cx = draw.flip ? W - 1 - x : x;  // column in the cropped image
        const int64_t sx = cx + ox;
        out[x] = (sx >= 0 && sx < W) ? lut[row[sx]] : lut[0];
      }
    }
  }
}

void Augmenter::normalize(const uint8_t* src, float* dst) const {
  const int64_t plane = height_ * width_;
  for (int64_t c = 0; c < channels_; ++c) {
    const float* lut = lut_.data() + c * 256;
    for (int64_t k = 0; k < plane; ++k) dst[c * plane + k] = lut[src[c * plane + k]];
  }
}

}  // namespace mixgrad::data
