// Reads a Pathfinder tree (the LRA release's or one written by pathfinder_write.cpp) into a SequenceSet, skipping
// and counting bad records (lra.md §3.5), and the §9.3 split.
#include <algorithm>
#include <charconv>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include "apps/data/file_bytes.h"
#include "apps/data/pathfinder.h"
#include "apps/data/png_gray.h"
#include "apps/data/random.h"

namespace mixgrad::data {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSplitStream = 0x70617468'73706c74ull;  // "pathsplt": keeps the split off image streams

// One usable metadata line: where the image is, its label, and "<metadata file>:<line>" for messages.
struct Entry {
  fs::path image;
  int64_t label = 0;
  std::string where;
};

struct MetadataFile {
  int64_t stem = 0;
  fs::path path;
};

// `root` may hold pathfinder<W>/ or be that folder itself (it then holds <difficulty>/ directly).
fs::path difficulty_dir(const fs::path& root, int size, const std::string& folder) {
  std::error_code ec;
  const fs::path nested = root / ("pathfinder" + std::to_string(size));
  if (!fs::is_directory(nested, ec) && fs::is_directory(root / folder, ec)) return root / folder;
  return nested / folder;
}

// metadata/*.npy sorted by integer stem; other *.npy names are reported and left out, other files ignored.
std::vector<MetadataFile> list_metadata(const fs::path& dir, ReadReport& report) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw file_error(dir,
                     "metadata folder not found; expected the release layout <root>/pathfinder<W>/<difficulty>/"
                     "{imgs,metadata} with metadata/<batch>.npy text files");
  std::vector<MetadataFile> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec) || e.path().extension() != ".npy") continue;
    const std::string stem = e.path().stem().string();
    int64_t value = 0;
    const auto res = std::from_chars(stem.data(), stem.data() + stem.size(), value);
    if (stem.empty() || res.ec != std::errc() || res.ptr != stem.data() + stem.size() || value < 0)
      report.skip(e.path().string() + ": file name is not <batch number>.npy; file ignored");
    else
      files.push_back({value, e.path()});
  }
  if (ec) throw file_error(dir, "cannot list the metadata folder: " + ec.message());
  std::sort(files.begin(), files.end(),
            [](const auto& a, const auto& b) { return a.stem != b.stem ? a.stem < b.stem : a.path < b.path; });
  return files;
}

// True for a relative path without ".." components (metadata must not point outside the data set's folder).
bool inside_tree(const std::string& field) {
  const fs::path p(field);
  if (p.is_absolute()) return false;
  for (const fs::path& part : p)
    if (part == "..") return false;
  return true;
}

// Appends the usable lines of one metadata file; short lines and bad labels are skipped with file:line, an
// unreadable file as a whole.
void parse_metadata(const MetadataFile& file, const fs::path& dir, std::vector<Entry>& out, ReadReport& report) {
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file_bytes(file.path);
  } catch (const std::exception& e) {
    report.skip(std::string(e.what()) + "; metadata file ignored");
    return;
  }
  std::istringstream text(std::string(bytes.begin(), bytes.end()));
  std::string line;
  for (int64_t number = 1; std::getline(text, line); ++number) {
    std::istringstream fields_in(line);
    std::vector<std::string> fields;
    for (std::string f; fields_in >> f;) fields.push_back(f);
    if (fields.empty()) continue;  // blank lines, e.g. after a final "\n" or "\r\n"
    ++report.records;
    const std::string where = file.path.string() + ":" + std::to_string(number);
    if (fields.size() < 4) {
      report.skip(where + ": " + std::to_string(fields.size()) +
                  " fields, expected 11 (at least 4: image folder, file name, index, label)");
    } else if (!inside_tree(fields[0]) || !inside_tree(fields[1])) {
      report.skip(where + ": image path '" + fields[0] + "/" + fields[1] +
                  "' leaves the data set folder; expected a relative path such as imgs/0 sample_0.png");
    } else if (fields[3] != "0" && fields[3] != "1") {
      report.skip(where + ": label '" + fields[3] + "' (field 3), expected 0 or 1");
    } else {
      out.push_back({dir / fields[0] / fields[1], fields[3] == "1" ? 1 : 0, where});
    }
  }
}

// "" when the image at e.image is a readable size × size PNG (its pixels then in `pixels`), else the reason.
std::string load_image(const Entry& e, int size, int32_t* pixels) {
  std::error_code ec;
  if (!fs::exists(e.image, ec)) return e.image.string() + ": no such image file";
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file_bytes(e.image);  // a FIFO, directory or device: "not a regular file"
  } catch (const Error& err) {
    return err.what();
  }
  if (bytes.empty()) return e.image.string() + ": empty image file (0 bytes)";
  const GrayDecode d = decode_png_gray(bytes);
  if (!d.ok()) return e.image.string() + ": " + d.error;
  if (d.image.width != size || d.image.height != size)
    return e.image.string() + ": image is " + std::to_string(d.image.width) + "×" + std::to_string(d.image.height) +
           ", expected " + std::to_string(size) + "×" + std::to_string(size);
  std::copy(d.image.pixels.begin(), d.image.pixels.end(), pixels);
  return "";
}

// Decodes every entry in parallel into its slot, then packs the good ones in entry order.
SequenceSet load_images(const std::vector<Entry>& entries, int size, ReadReport& report) {
  const size_t n = entries.size(), numel = size_t(size) * size_t(size);
  SequenceSet set;
  set.num_classes = 2;
  set.vocab_size = 256;
  set.tokens.resize(n * numel);
  std::vector<std::string> problems(n);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < int64_t(n); ++i) {
    try {
      problems[size_t(i)] = load_image(entries[size_t(i)], size, set.tokens.data() + size_t(i) * numel);
    } catch (const std::exception& ex) {  // unreadable file; exceptions must not leave the OpenMP region
      problems[size_t(i)] = ex.what();
    }
  }
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!problems[i].empty()) {
      report.skip(entries[i].where + ": " + problems[i]);
      continue;
    }
    if (kept != i)
      std::copy_n(set.tokens.begin() + ptrdiff_t(i * numel), numel, set.tokens.begin() + ptrdiff_t(kept * numel));
    set.labels.push_back(entries[i].label);
    set.offsets.push_back(int64_t(++kept * numel));
  }
  set.tokens.resize(kept * numel);
  return set;
}

}  // namespace

SequenceSet read_pathfinder_tree(const fs::path& root, int size, std::string_view difficulty, ReadReport* report) {
  if (size <= 0) throw Error("read_pathfinder_tree: size " + std::to_string(size) + " must be > 0");
  ReadReport local;
  ReadReport& r = report ? *report : local;
  const fs::path dir = difficulty_dir(root, size, pathfinder_difficulty_folder(difficulty));
  const std::vector<MetadataFile> files = list_metadata(dir / "metadata", r);
  std::vector<Entry> entries;
  for (const MetadataFile& f : files) parse_metadata(f, dir, entries, r);
  SequenceSet set = load_images(entries, size, r);
  if (set.size() == 0)
    throw file_error(dir, "no readable Pathfinder sample: " + std::to_string(files.size()) + " metadata files, " +
                              std::to_string(r.records) + " lines, " + std::to_string(r.skipped) + " skipped" +
                              (r.problems.empty() ? std::string() : "; first problem: " + r.problems.front()));
  return set;
}

TrainValTestSplit split_pathfinder(int64_t n, uint64_t seed) {
  if (n < 0) throw Error("split_pathfinder: n " + std::to_string(n) + " must be >= 0");
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  DataRng rng(seed, kSplitStream);
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(rng.randint(0, i))]);
  const auto n_train = ptrdiff_t(n * 8 / 10), n_val = ptrdiff_t(n / 10);
  TrainValTestSplit split;
  split.train.assign(order.begin(), order.begin() + n_train);
  split.val.assign(order.begin() + n_train, order.begin() + n_train + n_val);
  split.test.assign(order.begin() + n_train + n_val, order.end());
  for (auto* part : {&split.train, &split.val, &split.test}) std::sort(part->begin(), part->end());
  return split;
}

}  // namespace mixgrad::data
