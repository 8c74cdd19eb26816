// Skip-or-throw bookkeeping of the LRA readers (see record_log.h).
#include "apps/data/record_log.h"

#include "apps/data/file_bytes.h"

namespace mixgrad::data {

void RecordLog::skip(const std::string& where, const std::string& why) {
  if (report_ == nullptr)
    throw Error(source_.string() + where + ": " + why +
                " (this reader was called without a ReadReport, so bad records are errors)");
  local_.skip(source_.filename().string() + where + ": " + why);
}

void RecordLog::skip_line(int64_t line, const std::string& why) {
  std::string where = ":";  // appended, not `":" + to_string()`: GCC 12 -O3 misreports that as -Wrestrict
  where += std::to_string(line);
  skip(where, why);
}

void RecordLog::finish(int64_t samples) {
  if (samples == 0) {
    std::string what = "no usable samples: " + std::to_string(local_.records) + " record(s), " +
                       std::to_string(local_.skipped) + " skipped";
    if (!local_.problems.empty()) what += " (first: " + local_.problems.front() + ")";
    throw file_error(source_, what + "; expected at least one valid sample");
  }
  if (report_ == nullptr) return;
  report_->records += local_.records;
  report_->skipped += local_.skipped;
  for (const std::string& p : local_.problems)
    if (report_->problems.size() < ReadReport::kMaxProblems) report_->problems.push_back(p);
}

}  // namespace mixgrad::data
