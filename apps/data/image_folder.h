// ImageNet-style image folders (root/<split>/<class>/<image>): JPEG / PNG decoding through stb_image (the one
// implementation is compiled in png_gray.cpp), resize of the shorter side plus a centre crop to a square, and the
// whole split read into an in-memory ImageDataset at the model's size (what the ViT app's loaders, augmentation and
// evaluation already take). Unreadable images are counted and skipped; a missing split, no class folders or an
// empty class are errors.
#pragma once
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "apps/data/augment.h"
#include "apps/data/idx.h"
#include "apps/data/split.h"

namespace mixgrad::data {

// An 8-bit image with interleaved channels: pixels [height, width, channels].
struct PixelImage {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
};
struct PixelDecode {
  PixelImage image;
  std::string error;  // non-empty: why the bytes could not be decoded
  bool ok() const { return error.empty(); }
};

// JPEG or PNG bytes -> `channels` (1 or 3) channels: RGB to grey by luma_u8 (as CIFAR and Pathfinder), grey to RGB by
// replication, alpha dropped. Never throws on bad bytes: `error` names stb_image's reason.
PixelDecode decode_image(std::span<const uint8_t> bytes, int channels);

// Resizes `img` so that its shorter side is `size` (a separable triangle filter whose support widens by the scale
// factor when shrinking, so downscaling averages every source pixel: bilinear with antialiasing; edges replicate),
// then crops the central size × size square. Returns planar pixels [channels, size, size].
std::vector<uint8_t> resize_center_crop(const PixelImage& img, int size);

// Whether a file name looks like an image this reader decodes (.jpg, .jpeg, .png, any case).
bool is_image_file_name(const std::filesystem::path& p);

// The class folders of `split_dir`, sorted by name. Errors: the folder is missing or holds no class folders.
std::vector<std::string> list_class_folders(const std::filesystem::path& split_dir);

struct ImageFolderReport {
  int64_t files = 0, skipped = 0;             // image files found, of which unreadable (skipped)
  std::vector<std::string> skipped_examples;  // the first few "path: reason"
};

struct ImageFolder {
  ImageDataset images;  // [n, channels, size, size], labels = index in class_names
  std::vector<std::string> class_names;
  std::vector<std::string> files;  // the path of each image kept, in dataset order
  ImageFolderReport report;
};

// Reads root/<split>/<class>/* (image files by extension, sorted; other files and sub-folders are ignored) with
// `threads` decoding threads (0: the hardware's). When `expected_classes` is not empty the split's class folders must
// be exactly these. Errors name the folder: missing split, no class folders, a class folder without image files, or
// a class whose every image is unreadable.
ImageFolder load_image_folder(const std::filesystem::path& root, const std::string& split, int channels, int size,
                              const std::vector<std::string>& expected_classes = {}, int threads = 0);

// Decodes and resizes every image file of `paths` (files, or folders whose image files are taken sorted); an
// unreadable file is an error naming it. Labels are 0.
ImageFolder load_image_files(const std::vector<std::filesystem::path>& paths, int channels, int size);

// Per-channel mean and standard deviation (x/255 scale) over every pixel of the data set.
ChannelStats channel_stats(const ImageDataset& images);

// The last ceil(fraction · n_c) images of each class c (at least 1) go to validation, the rest to training. A class
// with fewer than 2 images is an error (it cannot be both trained and validated on).
TrainValSplit split_fraction_per_class(const std::vector<int64_t>& labels, int64_t num_classes, double fraction,
                                       const std::vector<std::string>& class_names);

// "3 unreadable images skipped in DIR: a.jpg: reason; ... (and N more)", or "" when none was skipped.
std::string describe_skipped(const ImageFolderReport& report, const std::string& where);

}  // namespace mixgrad::data
