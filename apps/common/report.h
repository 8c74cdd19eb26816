// Run-directory support shared by the training apps: JSON files written atomically, the metrics.jsonl log, the
// progress line, and the end-of-run report (curves.png drawn by a tiny rasteriser, self-contained report.html).
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mixgrad::app {

using Json = nlohmann::json;

// Writes `text` to a temporary file in the same folder and renames it over `path` (readers never see a partial file).
void write_text_atomic(const std::filesystem::path& path, const std::string& text);
void write_json_atomic(const std::filesystem::path& path, const Json& j);

// Appends one JSON object per line and flushes after each (a killed run keeps every line written so far).
class MetricsLog {
 public:
  MetricsLog() = default;
  explicit MetricsLog(const std::filesystem::path& path, bool append);
  void write(const Json& record);
  bool is_open() const { return out_.is_open(); }

 private:
  std::ofstream out_;
};
// Reads metrics.jsonl back (skips blank or unparsable lines: a killed run may leave a torn last line).
std::vector<Json> read_metrics(const std::filesystem::path& path);

// "1.5 s", "2 min 05 s", "1 h 02 min".
std::string format_duration(double seconds);
// "12.3 MiB".
std::string format_bytes(int64_t bytes);

// One point of a training curve.
struct CurvePoint {
  double step = 0, value = 0;
};
struct Curves {
  std::vector<CurvePoint> train_loss, val_loss, train_acc, val_acc;
};
// Two stacked panels (loss; accuracy) with grid lines, value and step tick labels, panel titles, an x-axis title
// and a legend (5 × 7 bitmap font); train = blue line, validation = orange line with dots.
// Returns the PNG bytes (empty curves give empty axes).
std::vector<uint8_t> render_curves_png(const Curves& curves, int width = 800, int height = 600);
void write_file(const std::filesystem::path& path, const std::vector<uint8_t>& bytes);  // atomic

// A self-contained HTML page: the summary numbers, the curves (PNG embedded as a data URI), per-class accuracy and
// the confusion matrix (rows = true class, columns = predicted).
std::string render_report_html(const Json& summary, const std::vector<uint8_t>& curves_png,
                               const std::vector<std::string>& class_names);

std::string base64_encode(const std::vector<uint8_t>& bytes);

}  // namespace mixgrad::app
