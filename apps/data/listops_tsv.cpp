// ListOps TSV files in the LRA release format (specs/lra.md §3.1): the generator's writer and the reader.
#include <array>
#include <charconv>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "apps/data/file_bytes.h"
#include "apps/data/listops.h"
#include "apps/data/listops_internal.h"
#include "apps/data/record_log.h"
#include "apps/data/text_lines.h"
#include "engine/file_io.h"

namespace mixgrad::data {
namespace {

constexpr std::string_view kHeader = "Source\tTarget";
const std::array<std::string, 3> kFileNames = {"basic_train.tsv", "basic_val.tsv", "basic_test.tsv"};

// Writes the three files under temporary names, then renames them; on any failure removes the temporaries.
class SplitFiles {
 public:
  explicit SplitFiles(const std::filesystem::path& dir) {
    for (size_t k = 0; k < 3; ++k) {
      final_[k] = dir / kFileNames[k];
      temp_[k] = dir / (kFileNames[k] + ".partial");
      out_[k].open(temp_[k], std::ios::binary | std::ios::trunc);
      if (!out_[k]) {
        discard();  // the destructor does not run when the constructor throws
        throw file_error(temp_[k], "cannot open for writing");
      }
      out_[k] << kHeader << "\r\n";
    }
  }
  ~SplitFiles() {
    if (!committed_) discard();
  }
  SplitFiles(const SplitFiles&) = delete;
  SplitFiles& operator=(const SplitFiles&) = delete;

  void write(ListOpsSplit split, const ListOpsExample& ex) {
    std::ofstream& out = out_[static_cast<size_t>(split)];
    out << ex.source << '\t' << ex.label << "\r\n";  // csv.writer's default line end, for byte compatibility
    if (!out) throw file_error(temp_[static_cast<size_t>(split)], "write failed (disk full?)");
  }
  void commit() {
    for (size_t k = 0; k < 3; ++k) {
      out_[k].close();
      if (!out_[k]) throw file_error(temp_[k], "write failed when closing the file");
    }
    for (size_t k = 0; k < 3; ++k) io::require_replaceable(final_[k]);
    for (size_t k = 0; k < 3; ++k) {
      std::error_code ec;
      std::filesystem::rename(temp_[k], final_[k], ec);
      if (ec) throw file_error(final_[k], "cannot rename " + temp_[k].string() + " into place: " + ec.message());
    }
    committed_ = true;
  }

 private:
  void discard() {
    std::error_code ec;
    for (size_t k = 0; k < 3; ++k) {
      out_[k].close();
      if (!temp_[k].empty()) std::filesystem::remove(temp_[k], ec);
    }
  }

  std::array<std::filesystem::path, 3> final_, temp_;
  std::array<std::ofstream, 3> out_;
  bool committed_ = false;
};

// Parses one data row; returns "" or why the row is unusable.
std::string parse_row(std::string_view line, std::vector<std::string_view>& fields, std::vector<int32_t>& tokens,
                      int64_t& label) {
  split_tabs(line, fields);
  if (fields.size() != 2) return std::to_string(fields.size()) + " tab-separated field(s), expected 2 (Source, Target)";
  const std::string_view target = fields[1];
  const auto [end, ec] = std::from_chars(target.data(), target.data() + target.size(), label);
  if (ec != std::errc() || end != target.data() + target.size() || label < 0 || label > 9)
    return "label " + quoted_field(target) + " is not an integer 0..9";
  std::string unknown;
  if (!tokenize_listops_into(fields[0], tokens, unknown))
    return "unknown token " + quoted_field(unknown) + ", expected a digit 0..9, [MIN, [MAX, [MED, [SM, ] or X";
  if (tokens.empty()) return "empty source, expected at least one token";
  return "";
}

}  // namespace

ListOpsStats write_listops_tsv(const std::filesystem::path& dir, const ListOpsConfig& cfg) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw file_error(dir, "cannot create the output directory: " + ec.message());
  SplitFiles files(dir);
  const ListOpsStats stats =
      generate_listops(cfg, [&](ListOpsSplit split, const ListOpsExample& ex) { files.write(split, ex); });
  files.commit();
  return stats;
}

SequenceSet read_listops_tsv(const std::filesystem::path& path, int64_t max_len, ReadReport* report,
                             int64_t* truncated) {
  if (max_len < 1) throw Error("read_listops_tsv: max_len " + std::to_string(max_len) + ", expected >= 1");
  SequenceSet set;
  set.num_classes = kListOpsClasses;
  set.vocab_size = kListOpsVocab;
  RecordLog log(path, report);
  std::vector<std::string_view> fields;
  std::vector<int32_t> tokens;
  int64_t label = 0, cut = 0;
  const int64_t lines = for_each_file_line(path, [&](int64_t number, std::string_view line) {
    if (number == 1) {
      if (line != kHeader)
        throw file_error(path, "line 1 is " + quoted_field(line) + ", expected the header \"Source<TAB>Target\"");
      return;
    }
    log.seen();
    const std::string why = parse_row(line, fields, tokens, label);
    if (!why.empty()) return log.skip_line(number, why);
    if (static_cast<int64_t>(tokens.size()) > max_len) {
      tokens.resize(static_cast<size_t>(max_len));
      ++cut;
    }
    set.add(tokens, label);
  });
  if (lines == 0) throw file_error(path, "file is empty, expected the header \"Source<TAB>Target\" and data rows");
  if (log.records() == 0) throw file_error(path, "only the header line, expected at least one data row");
  log.finish(set.size());
  if (truncated != nullptr) *truncated += cut;
  return set;
}

}  // namespace mixgrad::data
