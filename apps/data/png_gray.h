// 8-bit grayscale PNG encoding and decoding (Pathfinder images, lra.md §3.6) on top of stb_image / stb_image_write.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace mixgrad::data {

struct GrayImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // [height, width], row-major
};

// A decode either fills `image` or says why it could not (`error` non-empty).
struct GrayDecode {
  GrayImage image;
  std::string error;
  bool ok() const { return error.empty(); }
};

// PNG bytes of an 8-bit gray (colour type 0) width × height image; `pixels` holds width·height bytes, row-major.
// Deterministic: the same pixels always give the same bytes. Throws std::invalid_argument on bad sizes.
std::vector<uint8_t> encode_png_gray(std::span<const uint8_t> pixels, int width, int height);

// Decodes PNG bytes to 8-bit gray. Colour types 0 (gray) and 4 (gray + alpha) keep the gray channel; 2 (RGB),
// 6 (RGBA) and 3 (palette, expanded to RGB(A)) become luma (299 R + 587 G + 114 B + 500) / 1000 as for CIFAR
// (lra.md §3.4); alpha is ignored. 16-bit samples keep their high byte; interlaced files are accepted.
// Never throws on bad input: empty, truncated, corrupt or non-PNG bytes give `error` (stb's reason included), and so
// does a header announcing more than kMaxPngPixels pixels (checked before anything is allocated).
constexpr int64_t kMaxPngPixels = int64_t(1) << 26;
GrayDecode decode_png_gray(std::span<const uint8_t> bytes);

// The luma of one RGB pixel, rounded to nearest (lra.md §3.4).
inline uint8_t luma_u8(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((299u * r + 587u * g + 114u * b + 500u) / 1000u);
}

}  // namespace mixgrad::data
