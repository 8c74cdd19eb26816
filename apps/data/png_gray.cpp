// Gray PNG codec (see png_gray.h). This file holds the project's only stb_image implementation (PNG and JPEG; the
// image-folder reader, apps/data/image_folder.cpp, decodes JPEG through it); the writer's implementation lives in
// apps/common/report.cpp, so only its declarations are included here.
#include "apps/data/png_gray.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <stdexcept>

#include "engine/error.h"

#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#include <stb_image.h>
#pragma GCC diagnostic pop
#include <stb_image_write.h>

namespace mixgrad::data {
namespace {

uint32_t read_be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

// stb_image skips chunk CRCs, so a flipped bit inside the pixel data could decode to wrong pixels without a word;
// walking the chunks first also turns truncation into a precise reason. Returns "" when the layout is sound.
std::string check_png_chunks(std::span<const uint8_t> b) {
  static constexpr uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.empty()) return "empty input (0 bytes), expected a PNG file";
  const size_t head = std::min<size_t>(b.size(), 8);
  if (!std::equal(kSignature, kSignature + head, b.begin()))
    return "not a PNG file: the first " + std::to_string(head) +
           " bytes are not the PNG signature 89 50 4E 47 0D 0A 1A 0A";
  if (b.size() < 8) return "truncated: " + std::to_string(b.size()) + " bytes, less than the PNG signature";
  size_t at = 8;
  while (true) {
    if (b.size() - at < 12)
      return "truncated: " + std::to_string(b.size()) + " bytes end inside the chunk header at byte " +
             std::to_string(at) + " before the IEND chunk";
    const uint32_t length = read_be32(&b[at]);
    const std::string type(reinterpret_cast<const char*>(&b[at + 4]), 4);
    if (length > 0x7fffffffu || b.size() - at - 12 < length)
      return "truncated: chunk " + type + " at byte " + std::to_string(at) + " declares " + std::to_string(length) +
             " data bytes, only " + std::to_string(b.size() - at - 12) + " remain";
    const uint32_t crc = static_cast<uint32_t>(crc32(0L, &b[at + 4], static_cast<uInt>(length + 4)));
    if (crc != read_be32(&b[at + 8 + length]))
      return "corrupt: CRC mismatch in chunk " + type + " at byte " + std::to_string(at);
    at += 12 + size_t(length);
    if (type == "IEND") return "";
  }
}

void append_bytes(void* ctx, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(ctx);
  const auto* p = static_cast<const uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

}  // namespace

std::vector<uint8_t> encode_png_gray(std::span<const uint8_t> pixels, int width, int height) {
  if (width <= 0 || height <= 0 || int64_t(width) * height > INT_MAX)
    throw Error("encode_png_gray: image size " + std::to_string(width) + "×" + std::to_string(height) +
                " is not a positive size below 2^31 pixels");
  if (pixels.size() != size_t(width) * size_t(height))
    throw Error("encode_png_gray: " + std::to_string(pixels.size()) + " pixels for a " + std::to_string(width) + "×" +
                std::to_string(height) + " image, expected " + std::to_string(size_t(width) * size_t(height)));
  std::vector<uint8_t> out;
  if (stbi_write_png_to_func(append_bytes, &out, width, height, 1, pixels.data(), width) == 0 || out.empty())
    throw Error("encode_png_gray: stb_image_write failed on a " + std::to_string(width) + "×" + std::to_string(height) +
                " image (out of memory?)");
  return out;
}

GrayDecode decode_png_gray(std::span<const uint8_t> bytes) {
  GrayDecode result;
  result.error = check_png_chunks(bytes);
  if (!result.error.empty()) return result;
  if (bytes.size() > size_t(INT_MAX)) {
    result.error = "PNG of " + std::to_string(bytes.size()) + " bytes is larger than the 2 GiB stb_image accepts";
    return result;
  }
  int w = 0, h = 0, channels = 0;
  // The header first: a tiny file may announce a huge image, which stb_image would allocate before failing.
  if (stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &channels) != 0 &&
      int64_t(w) * int64_t(h) > kMaxPngPixels) {
    result.error = "PNG header announces " + std::to_string(w) + "×" + std::to_string(h) + " pixels, more than the " +
                   std::to_string(kMaxPngPixels) + " this reader decodes";
    return result;
  }
  stbi_uc* px = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &channels, 0);
  if (px == nullptr) {
    const char* why = stbi_failure_reason();
    result.error = std::string("undecodable PNG (stb_image: ") + (why ? why : "unknown reason") + ")";
    return result;
  }
  GrayImage& img = result.image;
  img.width = w;
  img.height = h;
  img.pixels.resize(size_t(w) * size_t(h));
  for (size_t i = 0; i < img.pixels.size(); ++i) {
    const stbi_uc* p = px + i * size_t(channels);
    img.pixels[i] = channels >= 3 ? luma_u8(p[0], p[1], p[2]) : p[0];
  }
  stbi_image_free(px);
  return result;
}

}  // namespace mixgrad::data
