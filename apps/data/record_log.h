// The bad-record rule shared by the LRA readers: with a ReadReport a bad record is counted and skipped, without one
// it is an error (a caller that does not look at a report never loses data silently).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>

#include "apps/data/sequences.h"

namespace mixgrad::data {

// Bookkeeping for the records of one source (a file, or a folder of files): counts them, skips or throws on bad
// ones, and at the end merges its counts into the caller's report.
class RecordLog {
 public:
  RecordLog(std::filesystem::path source, ReadReport* report) : source_(std::move(source)), report_(report) {}

  void seen() { ++local_.records; }
  int64_t records() const { return local_.records; }

  // A bad record at `where` (appended to the source's name: ":17" for line 17, "/12_3.txt" for a file inside a
  // folder). Report: "<source name><where>: <why>"; no report: throws "<source path><where>: <why>".
  void skip(const std::string& where, const std::string& why);
  void skip_line(int64_t line, const std::string& why);  // skip(":<line>", why)

  // Throws when `samples` is 0 (naming how many records were seen and the first reason any was skipped), else
  // adds this source's counts and problems to the caller's report.
  void finish(int64_t samples);

 private:
  std::filesystem::path source_;
  ReadReport* report_;
  ReadReport local_;
};

}  // namespace mixgrad::data
