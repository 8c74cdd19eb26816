// Writes generated Pathfinder images in the LRA release's tree (lra.md §3.5, §5.2 step 9): PNGs per batch folder and
// one plain-text metadata file per batch.
#include <charconv>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include "apps/data/file_bytes.h"
#include "apps/data/pathfinder.h"
#include "apps/data/png_gray.h"
#include "engine/file_io.h"

namespace mixgrad::data {
namespace {

namespace fs = std::filesystem;

// Python's str(float) for the values the metadata holds: the shortest round-trip digits, with ".0" on whole numbers
// ("1.0", "1.8", "0.5"), as in the release's example line.
std::string python_float(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

void write_bytes_to(const fs::path& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw file_error(path, "cannot open for writing");
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.flush();
  if (!out) throw file_error(path, "write of " + std::to_string(size) + " bytes failed (disk full?)");
}

// Through "<name>.tmp" and a rename, so a reader never sees half a metadata file (the reader ignores *.tmp).
void write_text_atomically(const fs::path& path, const std::string& text) { io::write_file_atomic(path, text); }

void make_dirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw file_error(dir, "cannot create directory: " + ec.message());
}

// Generates, encodes and writes batch b: images first, then its metadata file.
void write_batch(const fs::path& dir, const PathfinderConfig& config, int64_t b, int64_t first, int64_t count) {
  const std::vector<PathfinderSample> samples = generate_pathfinder_samples(config, first, count);
  std::vector<std::vector<uint8_t>> pngs(samples.size());
  std::vector<std::string> errors(samples.size());  // exceptions must not leave the OpenMP region
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t k = 0; k < count; ++k) {
    try {
      pngs[size_t(k)] = encode_png_gray(samples[size_t(k)].pixels, config.window, config.window);
    } catch (const std::exception& e) {
      errors[size_t(k)] = e.what();
    }
  }
  for (const std::string& e : errors)
    if (!e.empty()) throw Error(e);
  const fs::path img_dir = dir / "imgs" / std::to_string(b);
  make_dirs(img_dir);
  std::string metadata;
  for (int64_t k = 0; k < count; ++k) {
    const std::vector<uint8_t>& png = pngs[size_t(k)];
    write_bytes_to(img_dir / ("sample_" + std::to_string(k) + ".png"), png.data(), png.size());
    metadata += pathfinder_metadata_line(config, b, k, samples[size_t(k)]);
  }
  write_text_atomically(dir / "metadata" / (std::to_string(b) + ".npy"), metadata);
}

}  // namespace

std::string pathfinder_metadata_line(const PathfinderConfig& c, int64_t batch, int64_t k,
                                     const PathfinderSample& sample) {
  const std::string sep = " ";
  return "imgs/" + std::to_string(batch) + sep + "sample_" + std::to_string(k) + ".png" + sep + std::to_string(k) +
         sep + std::to_string(sample.label) + sep + python_float(c.continuity) + sep +
         std::to_string(c.contour_length) + sep + std::to_string(c.distractor_length) + sep +
         std::to_string(c.paddle_length) + sep + python_float(c.paddle_thickness) + sep +
         std::to_string(sample.margin) + sep + std::to_string(c.paddle_contrasts.size()) + "\n";
}

fs::path pathfinder_difficulty_dir(const fs::path& root, int size, std::string_view difficulty) {
  return root / ("pathfinder" + std::to_string(size)) / pathfinder_difficulty_folder(difficulty);
}

void write_pathfinder_tree(const fs::path& root, const PathfinderConfig& config,
                           const std::function<void(int64_t, int64_t)>& progress) {
  validate_pathfinder_config(config);
  const fs::path dir = pathfinder_difficulty_dir(root, config.window, config.difficulty);
  make_dirs(dir / "metadata");
  const int64_t per = config.images_per_batch, n = config.num_images;
  for (int64_t b = 0; b * per < n; ++b) {
    const int64_t first = b * per, count = std::min(per, n - first);
    write_batch(dir, config, b, first, count);
    if (progress) progress(first + count, n);
  }
}

}  // namespace mixgrad::data
