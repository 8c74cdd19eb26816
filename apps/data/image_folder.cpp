// Image folders: decoding (stb_image declarations only; the implementation is compiled in png_gray.cpp), the
// resize + centre crop, the folder scan and the parallel read.
#include "apps/data/image_folder.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <thread>

#include "apps/data/file_bytes.h"
#include "apps/data/png_gray.h"
#include "engine/error.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_image.h>
#pragma GCC diagnostic pop

namespace mixgrad::data {

namespace fs = std::filesystem;

PixelDecode decode_image(std::span<const uint8_t> bytes, int channels) {
  MIXGRAD_CHECK(channels == 1 || channels == 3, "decode_image: channels = {} (expected 1 or 3)", channels);
  PixelDecode r;
  if (bytes.empty()) {
    r.error = "empty file (0 bytes), expected a JPEG or PNG image";
    return r;
  }
  if (bytes.size() > size_t(INT_MAX)) {
    r.error = fmt::format("{} bytes is larger than the 2 GiB stb_image accepts", bytes.size());
    return r;
  }
  int w = 0, h = 0, have = 0;
  stbi_uc* px = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &have, 0);
  if (px == nullptr) {
    const char* why = stbi_failure_reason();
    r.error = fmt::format("not a decodable JPEG or PNG image (stb_image: {})", why ? why : "unknown reason");
    return r;
  }
  PixelImage& img = r.image;
  img.width = w, img.height = h, img.channels = channels;
  img.pixels.resize(size_t(w) * size_t(h) * size_t(channels));
  const size_t n = size_t(w) * size_t(h);
  for (size_t i = 0; i < n; ++i) {
    const stbi_uc* p = px + i * size_t(have);
    const bool colour = have >= 3;  // 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA
    if (channels == 1) {
      img.pixels[i] = colour ? luma_u8(p[0], p[1], p[2]) : p[0];
    } else {
      for (int c = 0; c < 3; ++c) img.pixels[i * 3 + size_t(c)] = colour ? p[c] : p[0];
    }
  }
  stbi_image_free(px);
  return r;
}

namespace {

// The source taps of each output position along one axis: output o (of the crop, at position o + offset of the
// resized axis of length `resized`) reads source pixels first[o] .. first[o] + taps - 1 with weights w[o * taps + t].
struct AxisTaps {
  int taps = 0;
  std::vector<int> first;
  std::vector<float> w;
};

AxisTaps axis_taps(int in, int resized, int offset, int out) {
  const double scale = double(in) / double(resized);
  const double support = std::max(1.0, scale);  // triangle half-width in source pixels
  AxisTaps a;
  a.taps = int(std::ceil(support)) * 2 + 1;
  a.first.resize(size_t(out));
  a.w.assign(size_t(out) * size_t(a.taps), 0.0f);
  for (int o = 0; o < out; ++o) {
    const double centre = (double(o + offset) + 0.5) * scale - 0.5;
    const int lo = int(std::floor(centre - support)) + 1;
    a.first[size_t(o)] = lo;
    double sum = 0;
    for (int t = 0; t < a.taps; ++t) sum += std::max(0.0, 1.0 - std::abs(double(lo + t) - centre) / support);
    for (int t = 0; t < a.taps; ++t) {
      const double wt = std::max(0.0, 1.0 - std::abs(double(lo + t) - centre) / support);
      a.w[size_t(o) * size_t(a.taps) + size_t(t)] = float(wt / sum);
    }
  }
  return a;
}

int clamp_index(int i, int n) { return std::min(std::max(i, 0), n - 1); }

}  // namespace

std::vector<uint8_t> resize_center_crop(const PixelImage& img, int size) {
  MIXGRAD_CHECK(size > 0 && img.width > 0 && img.height > 0 && img.channels > 0 &&
                    img.pixels.size() == size_t(img.width) * size_t(img.height) * size_t(img.channels),
                "resize_center_crop: a {}x{}x{} image holding {} bytes cannot be cropped to {}", img.width, img.height,
                img.channels, img.pixels.size(), size);
  const int W = img.width, H = img.height, C = img.channels;
  const int shorter = std::min(W, H);
  const int rw = W == shorter ? size : std::max(size, int(std::lround(double(W) * size / shorter)));
  const int rh = H == shorter ? size : std::max(size, int(std::lround(double(H) * size / shorter)));
  const AxisTaps tx = axis_taps(W, rw, (rw - size) / 2, size), ty = axis_taps(H, rh, (rh - size) / 2, size);
  // Horizontal pass over every source row: tmp [H, size, C].
  std::vector<float> tmp(size_t(H) * size_t(size) * size_t(C));
  for (int y = 0; y < H; ++y)
    for (int o = 0; o < size; ++o)
      for (int c = 0; c < C; ++c) {
        float acc = 0;
        for (int t = 0; t < tx.taps; ++t) {
          const int x = clamp_index(tx.first[size_t(o)] + t, W);
          acc += tx.w[size_t(o) * size_t(tx.taps) + size_t(t)] *
                 float(img.pixels[(size_t(y) * size_t(W) + size_t(x)) * size_t(C) + size_t(c)]);
        }
        tmp[(size_t(y) * size_t(size) + size_t(o)) * size_t(C) + size_t(c)] = acc;
      }
  // Vertical pass into planar [C, size, size].
  std::vector<uint8_t> out(size_t(C) * size_t(size) * size_t(size));
  for (int o = 0; o < size; ++o)
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < C; ++c) {
        float acc = 0;
        for (int t = 0; t < ty.taps; ++t) {
          const int y = clamp_index(ty.first[size_t(o)] + t, H);
          acc += ty.w[size_t(o) * size_t(ty.taps) + size_t(t)] *
                 tmp[(size_t(y) * size_t(size) + size_t(x)) * size_t(C) + size_t(c)];
        }
        out[(size_t(c) * size_t(size) + size_t(o)) * size_t(size) + size_t(x)] =
            uint8_t(std::clamp(std::lround(acc), 0L, 255L));
      }
  return out;
}

bool is_image_file_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

std::vector<std::string> list_class_folders(const fs::path& split_dir) {
  MIXGRAD_CHECK(fs::is_directory(split_dir),
                "image folder: {} is missing (expected the ImageNet layout DIR/train/<class>/*, DIR/val/<class>/*)",
                split_dir.string());
  std::vector<std::string> classes;
  for (const fs::directory_entry& e : fs::directory_iterator(split_dir))
    if (e.is_directory() && e.path().filename().string().rfind('.', 0) != 0)
      classes.push_back(e.path().filename().string());
  std::sort(classes.begin(), classes.end());
  MIXGRAD_CHECK(!classes.empty(),
                "image folder: {} holds no class folders (expected {}/<class>/<image>; a flat folder of images must "
                "first be sorted into one folder per class)",
                split_dir.string(), split_dir.string());
  return classes;
}

namespace {

std::vector<fs::path> image_files_in(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && is_image_file_name(e.path())) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

struct Decoded {
  std::vector<uint8_t> pixels;  // [C, size, size]; empty when unreadable
  std::string error;
};

Decoded read_one(const fs::path& file, int channels, int size) {
  Decoded d;
  try {
    const std::vector<uint8_t> bytes = read_file_bytes(file);
    PixelDecode p = decode_image(bytes, channels);
    if (!p.ok()) {
      d.error = p.error;
      return d;
    }
    d.pixels = resize_center_crop(p.image, size);
  } catch (const std::exception& e) {
    d.error = e.what();
  }
  return d;
}

// Decodes every file on `threads` threads (work handed out one file at a time).
std::vector<Decoded> read_all(const std::vector<fs::path>& files, int channels, int size, int threads) {
  std::vector<Decoded> out(files.size());
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::max(1, std::min<int>(threads, int(files.size())));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < files.size(); i = next++) out[i] = read_one(files[i], channels, size);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  return out;
}

constexpr size_t kSkippedExamples = 5;

// Keeps the decoded images (in file order) and records the skipped ones.
void collect(ImageFolder& f, const std::vector<fs::path>& files, const std::vector<int64_t>& labels,
             std::vector<Decoded>& decoded, int channels, int size) {
  ImageDataset& ds = f.images;
  ds.channels = channels, ds.height = size, ds.width = size;
  f.report.files += int64_t(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    if (decoded[i].pixels.empty()) {
      ++f.report.skipped;
      if (f.report.skipped_examples.size() < kSkippedExamples)
        f.report.skipped_examples.push_back(files[i].string() + ": " + decoded[i].error);
      continue;
    }
    ds.pixels.insert(ds.pixels.end(), decoded[i].pixels.begin(), decoded[i].pixels.end());
    ds.labels.push_back(labels[i]);
    f.files.push_back(files[i].string());
    decoded[i] = Decoded{};
  }
  ds.n = int64_t(ds.labels.size());
}

}  // namespace

ImageFolder load_image_folder(const fs::path& root, const std::string& split, int channels, int size,
                              const std::vector<std::string>& expected_classes, int threads) {
  MIXGRAD_CHECK(channels == 1 || channels == 3, "image folder: channels = {} (expected 1 or 3)", channels);
  MIXGRAD_CHECK(size > 0, "image folder: image size {} must be positive", size);
  const fs::path dir = root / split;
  ImageFolder f;
  f.class_names = list_class_folders(dir);
  if (!expected_classes.empty())
    MIXGRAD_CHECK(f.class_names == expected_classes,
                  "image folder: the class folders of {} ({}) differ from the expected classes ({})", dir.string(),
                  fmt::join(f.class_names, ", "), fmt::join(expected_classes, ", "));
  std::vector<fs::path> files;
  std::vector<int64_t> labels;
  for (size_t c = 0; c < f.class_names.size(); ++c) {
    const std::vector<fs::path> in_class = image_files_in(dir / f.class_names[c]);
    MIXGRAD_CHECK(!in_class.empty(), "image folder: class folder {} holds no image files (*.jpg, *.jpeg, *.png)",
                  (dir / f.class_names[c]).string());
    files.insert(files.end(), in_class.begin(), in_class.end());
    labels.insert(labels.end(), in_class.size(), int64_t(c));
  }
  std::vector<Decoded> decoded = read_all(files, channels, size, threads);
  collect(f, files, labels, decoded, channels, size);
  f.images.num_classes = int64_t(f.class_names.size());
  std::vector<int64_t> per_class(f.class_names.size(), 0);
  for (int64_t l : f.images.labels) ++per_class[size_t(l)];
  for (size_t c = 0; c < per_class.size(); ++c)
    MIXGRAD_CHECK(per_class[c] > 0, "image folder: no image of class folder {} could be read ({})",
                  (dir / f.class_names[c]).string(), describe_skipped(f.report, dir.string()));
  return f;
}

ImageFolder load_image_files(const std::vector<fs::path>& paths, int channels, int size) {
  std::vector<fs::path> files;
  for (const fs::path& p : paths) {
    MIXGRAD_CHECK(fs::exists(p), "image {} does not exist", p.string());
    if (fs::is_directory(p)) {
      const std::vector<fs::path> in_dir = image_files_in(p);
      MIXGRAD_CHECK(!in_dir.empty(), "folder {} holds no image files (*.jpg, *.jpeg, *.png)", p.string());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else {
      files.push_back(p);
    }
  }
  std::vector<Decoded> decoded = read_all(files, channels, size, 0);
  for (size_t i = 0; i < files.size(); ++i)
    MIXGRAD_CHECK(!decoded[i].pixels.empty(), "cannot read image {}: {}", files[i].string(), decoded[i].error);
  ImageFolder f;
  collect(f, files, std::vector<int64_t>(files.size(), 0), decoded, channels, size);
  f.images.num_classes = 1;
  return f;
}

ChannelStats channel_stats(const ImageDataset& ds) {
  MIXGRAD_CHECK(ds.n > 0 && ds.channels > 0, "channel_stats: the data set is empty");
  const int64_t plane = ds.height * ds.width;
  ChannelStats st;
  for (int64_t c = 0; c < ds.channels; ++c) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < ds.n; ++i) {
      const uint8_t* p = ds.image(i) + c * plane;
      for (int64_t k = 0; k < plane; ++k) {
        const double v = double(p[k]) / 255.0;
        sum += v, sq += v * v;
      }
    }
    const double count = double(ds.n) * double(plane);
    const double mean = sum / count;
    const double var = std::max(0.0, sq / count - mean * mean);
    st.mean.push_back(float(mean));
    st.stddev.push_back(float(std::max(std::sqrt(var), 1e-3)));  // a constant channel must not divide by 0
  }
  return st;
}

TrainValSplit split_fraction_per_class(const std::vector<int64_t>& labels, int64_t num_classes, double fraction,
                                       const std::vector<std::string>& class_names) {
  MIXGRAD_CHECK(num_classes > 0 && fraction > 0 && fraction < 1,
                "split_fraction_per_class: {} classes, fraction {} (expected > 0 classes and a fraction in (0, 1))",
                num_classes, fraction);
  std::vector<int64_t> count(size_t(num_classes), 0), seen(size_t(num_classes), 0);
  for (int64_t l : labels) {
    MIXGRAD_CHECK(l >= 0 && l < num_classes, "split_fraction_per_class: label {} outside [0, {})", l, num_classes);
    ++count[size_t(l)];
  }
  for (int64_t c = 0; c < num_classes; ++c)
    MIXGRAD_CHECK(count[size_t(c)] >= 2,
                  "class '{}' has {} readable training image(s); at least 2 are needed (one is held out for "
                  "validation)",
                  size_t(c) < class_names.size() ? class_names[size_t(c)] : std::to_string(c), count[size_t(c)]);
  TrainValSplit s;
  for (size_t i = 0; i < labels.size(); ++i) {
    const size_t c = size_t(labels[i]);
    const int64_t val = std::min(count[c] - 1, std::max<int64_t>(1, int64_t(std::ceil(fraction * double(count[c])))));
    (seen[c]++ < count[c] - val ? s.train : s.val).push_back(int64_t(i));
  }
  return s;
}

std::string describe_skipped(const ImageFolderReport& r, const std::string& where) {
  if (r.skipped == 0) return "";
  std::string s = fmt::format("{} of {} image files in {} unreadable, skipped: {}", r.skipped, r.files, where,
                              fmt::join(r.skipped_examples, "; "));
  if (r.skipped > int64_t(r.skipped_examples.size()))
    s += fmt::format(" (and {} more)", r.skipped - int64_t(r.skipped_examples.size()));
  return s;
}

}  // namespace mixgrad::data
