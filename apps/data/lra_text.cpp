// IMDb tree and AAN TSV readers for the byte-level LRA tasks (see lra_text.h).
#include "apps/data/lra_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include "apps/data/file_bytes.h"
#include "apps/data/record_log.h"
#include "apps/data/text_lines.h"

namespace mixgrad::data {
namespace {

namespace fs = std::filesystem;

void check_max_len(const char* who, int64_t max_len) {
  if (max_len < 1) throw Error(std::string(who) + ": max_len " + std::to_string(max_len) + ", expected >= 1");
}

// Appends the first max_len bytes of `text` as ids to `out`; true when the text was longer.
bool append_bytes(std::string_view text, int64_t max_len, std::vector<int32_t>& out) {
  const size_t n = std::min(text.size(), static_cast<size_t>(max_len));
  out.clear();
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<int32_t>(static_cast<unsigned char>(text[i])) + 1);
  return text.size() > n;
}

// The folder holding {train,test}/{neg,pos}: `root` or `root`/aclImdb.
fs::path locate_imdb(const fs::path& root, const std::string& split) {
  std::error_code ec;
  if (fs::is_directory(root / split, ec)) return root;
  if (fs::is_directory(root / "aclImdb" / split, ec)) return root / "aclImdb";
  throw Error("IMDb split folder not found: tried " + (root / split).string() + " and " +
              (root / "aclImdb" / split).string() +
              "; expected the aclImdb tree (aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt)");
}

// The `*.txt` entries of a class folder in sorted name order (byte order, as Python's sorted(os.listdir())).
std::vector<fs::path> review_files(const fs::path& folder) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec))
    throw Error("IMDb class folder not found: " + folder.string() +
                "; expected both neg/ and pos/ in the split folder");
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(folder))
    if (e.path().extension() == ".txt" && !e.is_directory(ec)) files.push_back(e.path());
  std::sort(files.begin(), files.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  if (files.empty())
    throw Error("IMDb class folder " + folder.string() + " has no *.txt review files, expected one per review");
  return files;
}

// Appends one class folder's reviews to `set`; returns how many were cut to max_len.
int64_t read_imdb_class(const fs::path& folder, int64_t label, int64_t max_len, ReadReport* report, SequenceSet& set) {
  RecordLog log(folder, report);
  std::vector<int32_t> tokens;
  int64_t cut = 0, added = 0;
  for (const fs::path& file : review_files(folder)) {
    log.seen();
    std::string where = "/";  // appended, not `"/" + name`: GCC 12 -O3 misreports that as -Wrestrict
    where += file.filename().string();
    std::vector<uint8_t> bytes;
    try {
      bytes = read_file_bytes(file);
    } catch (const std::exception& e) {
      log.skip(where, e.what());
      continue;
    }
    if (bytes.empty()) {
      log.skip(where, "empty file, expected the review's text");
      continue;
    }
    cut += append_bytes({reinterpret_cast<const char*>(bytes.data()), bytes.size()}, max_len, tokens);
    set.add(tokens, label);
    ++added;
  }
  log.finish(added);
  return cut;
}

// AAN's label column read as LRA does (a number, then int): only a value of exactly 0 or 1 is accepted.
bool parse_aan_label(std::string_view s, int64_t& label) {
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !(v == 0.0 || v == 1.0)) return false;
  label = v == 1.0 ? 1 : 0;
  return true;
}

// Why an AAN row is unusable, or "".
std::string check_aan_row(const std::vector<std::string_view>& fields, int64_t& label) {
  if (fields.size() != 5)
    return std::to_string(fields.size()) + " tab-separated field(s), expected 5 (label, id1, id2, text1, text2)";
  if (!parse_aan_label(fields[0], label)) return "label " + quoted_field(fields[0]) + " is not 0 or 1 (also 0.0 / 1.0)";
  if (fields[3].empty()) return "empty text1, expected the first document";
  if (fields[4].empty()) return "empty text2, expected the second document";
  return "";
}

}  // namespace

std::vector<int32_t> encode_bytes(std::string_view text, int64_t max_len) {
  if (max_len < 0) throw Error("encode_bytes: max_len " + std::to_string(max_len) + ", expected >= 0");
  std::vector<int32_t> out;
  append_bytes(text, max_len, out);
  return out;
}

SequenceSet read_imdb_tree(const fs::path& root, const std::string& split, int64_t max_len, ReadReport* report,
                           int64_t* truncated) {
  check_max_len("read_imdb_tree", max_len);
  if (split != "train" && split != "test")
    throw Error("read_imdb_tree: split \"" + split + "\", expected \"train\" or \"test\"");
  const fs::path base = locate_imdb(root, split) / split;
  SequenceSet set;
  set.num_classes = 2;
  set.vocab_size = kByteVocab;
  int64_t cut = read_imdb_class(base / "neg", 0, max_len, report, set);
  cut += read_imdb_class(base / "pos", 1, max_len, report, set);
  if (truncated != nullptr) *truncated += cut;
  return set;
}

TrainValSplit imdb_validation_split(const SequenceSet& train, double fraction) {
  if (!(fraction > 0.0 && fraction < 1.0))
    throw Error("imdb_validation_split: fraction " + std::to_string(fraction) + ", expected 0 < f < 1");
  std::vector<int64_t> count(static_cast<size_t>(std::max<int64_t>(train.num_classes, 0)), 0);
  for (int64_t label : train.labels) {
    if (label < 0 || label >= train.num_classes)
      throw Error("imdb_validation_split: label " + std::to_string(label) + " outside [0, " +
                  std::to_string(train.num_classes) + ")");
    ++count[static_cast<size_t>(label)];
  }
  std::vector<int64_t> held(count.size());
  for (size_t c = 0; c < count.size(); ++c) {
    if (count[c] < 2)
      throw Error("imdb_validation_split: class " + std::to_string(c) + " has " + std::to_string(count[c]) +
                  " sample(s), expected at least 2 (train and validation)");
    held[c] = std::clamp<int64_t>(std::llround(static_cast<double>(count[c]) * fraction), 1, count[c] - 1);
  }
  std::vector<char> is_val(train.labels.size(), 0);
  for (size_t i = train.labels.size(); i-- > 0;) {  // backwards: "the last held[c]" is a countdown
    int64_t& left = held[static_cast<size_t>(train.labels[i])];
    if (left > 0) {
      --left;
      is_val[i] = 1;
    }
  }
  TrainValSplit split;
  for (size_t i = 0; i < is_val.size(); ++i) (is_val[i] ? split.val : split.train).push_back(static_cast<int64_t>(i));
  return split;
}

SequenceSet read_aan_tsv(const fs::path& path, int64_t max_len, ReadReport* report, int64_t* truncated) {
  check_max_len("read_aan_tsv", max_len);
  SequenceSet set;
  set.num_classes = 2;
  set.vocab_size = kByteVocab;
  RecordLog log(path, report);
  std::vector<std::string_view> fields;
  std::vector<int32_t> a, b;
  int64_t label = 0, cut = 0;
  const int64_t lines = for_each_file_line(path, [&](int64_t number, std::string_view line) {
    log.seen();
    split_tabs(line, fields);
    const std::string why = check_aan_row(fields, label);
    if (!why.empty()) return log.skip_line(number, why);
    cut += append_bytes(fields[3], max_len, a);
    cut += append_bytes(fields[4], max_len, b);
    set.add_pair(a, b, label);
  });
  if (lines == 0) throw file_error(path, "file is empty, expected rows of label, id1, id2, text1, text2");
  log.finish(set.size());
  if (truncated != nullptr) *truncated += cut;
  return set;
}

}  // namespace mixgrad::data
