// Run-directory support: atomic JSON, metrics.jsonl, durations, the curve rasteriser and the HTML report.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "apps/common/report.h"

#include <fmt/format.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wuseless-cast"
#include <stb_image_write.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>

#include "engine/error.h"
#include "engine/file_io.h"

namespace mixgrad::app {

namespace fs = std::filesystem;

void write_text_atomic(const fs::path& path, const std::string& text) { io::write_file_atomic(path, text); }

void write_json_atomic(const fs::path& path, const Json& j) { write_text_atomic(path, j.dump(2) + "\n"); }

void write_file(const fs::path& path, const std::vector<uint8_t>& bytes) {
  write_text_atomic(path, std::string(bytes.begin(), bytes.end()));
}

MetricsLog::MetricsLog(const fs::path& path, bool append) {
  io::require_replaceable(path);  // before opening: a FIFO would block, a device would swallow the log
  out_.open(path, append ? std::ios::app : std::ios::trunc);
  MIXGRAD_CHECK(out_.good(), "{}: cannot open for writing: {}", path.string(), std::strerror(errno));
}

void MetricsLog::write(const Json& record) {
  if (!out_.is_open()) return;
  out_ << record.dump() << '\n';
  out_.flush();
}

std::vector<Json> read_metrics(const fs::path& path) {
  std::vector<Json> out;
  std::error_code ec;
  if (fs::exists(path, ec)) io::require_regular_file(path);  // a FIFO would block the read
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    Json j = Json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return fmt::format("{:.1f} s", s);
  const auto t = int64_t(std::llround(s));
  if (t < 3600) return fmt::format("{} min {:02d} s", t / 60, int(t % 60));
  return fmt::format("{} h {:02d} min", t / 3600, int((t % 3600) / 60));
}

std::string format_bytes(int64_t b) {
  const double v = double(b);
  if (v < 1024) return fmt::format("{} B", b);
  if (v < 1024.0 * 1024) return fmt::format("{:.1f} KiB", v / 1024);
  if (v < 1024.0 * 1024 * 1024) return fmt::format("{:.1f} MiB", v / (1024.0 * 1024));
  return fmt::format("{:.2f} GiB", v / (1024.0 * 1024 * 1024));
}

// ---- rasteriser ---------------------------------------------------------------------------------------------
namespace {

struct Rgb {
  uint8_t r, g, b;
};

class Canvas {
 public:
  Canvas(int w, int h) : w_(w), h_(h), px_(size_t(w) * size_t(h) * 3, 255) {}
  void set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
    uint8_t* p = &px_[(size_t(y) * size_t(w_) + size_t(x)) * 3];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  void fill(int x0, int y0, int x1, int y1, Rgb c) {
    for (int y = std::min(y0, y1); y <= std::max(y0, y1); ++y)
      for (int x = std::min(x0, x1); x <= std::max(x0, x1); ++x) set(x, y, c);
  }
  // Bresenham with a square pen of side 2*half+1.
  void line(int x0, int y0, int x1, int y1, Rgb c, int half = 0) {
    const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
      fill(x0 - half, y0 - half, x0 + half, y0 + half, c);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }
  std::vector<uint8_t> png() const {
    std::vector<uint8_t> out;
    stbi_write_png_to_func(
        [](void* ctx, void* data, int size) {
          auto* v = static_cast<std::vector<uint8_t>*>(ctx);
          v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
        },
        &out, w_, h_, 3, px_.data(), w_ * 3);
    MIXGRAD_CHECK(!out.empty(), "PNG encoding failed");
    return out;
  }

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};


// A 5 × 7 bitmap font for the labels stb cannot draw: digits, upper-case letters and a few signs. Each glyph is
// seven rows of five cells, '#' = ink.
struct Glyph {
  char ch;
  const char* rows[7];
};
constexpr Glyph kFont[] = {
    {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
    {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
    {'3', {"####.", "....#", "....#", ".###.", "....#", "....#", "####."}},
    {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
    {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
    {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
    {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
    {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
    {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
    {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
    {'-', {".....", ".....", ".....", ".###.", ".....", ".....", "....."}},
    {'%', {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
    {'k', {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."}},
    {'A', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'B', {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
    {'C', {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
    {'D', {"####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."}},
    {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
    {'F', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
    {'G', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
    {'H', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'I', {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'L', {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
    {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
    {'N', {"#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", "#...#"}},
    {'O', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'P', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
    {'R', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
    {'S', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
    {'T', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
    {'U', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'V', {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
    {'Y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
};
constexpr int kGlyphW = 5, kGlyphH = 7;

const Glyph* find_glyph(char ch) {
  for (const Glyph& g : kFont)
    if (g.ch == ch) return &g;
  return nullptr;  // drawn as a blank (space and anything not in the font)
}

// Width in pixels of `text` at `scale` (one blank column between glyphs).
int text_width(const std::string& text, int scale) {
  return text.empty() ? 0 : int(text.size()) * (kGlyphW + 1) * scale - scale;
}

// Draws `text` with its top-left corner at (x, y); lower-case letters other than 'k' are drawn upper-case.
void draw_text(Canvas& c, int x, int y, const std::string& text, Rgb color, int scale = 2) {
  for (char ch : text) {
    const char u = (ch >= 'a' && ch <= 'z' && ch != 'k') ? char(ch - 'a' + 'A') : ch;
    if (const Glyph* g = find_glyph(u))
      for (int r = 0; r < kGlyphH; ++r)
        for (int q = 0; q < kGlyphW; ++q)
          if (g->rows[r][q] == '#') c.fill(x + q * scale, y + r * scale, x + (q + 1) * scale - 1, y + (r + 1) * scale - 1, color);
    x += (kGlyphW + 1) * scale;
  }
}

// Tick label for an axis value: steps as integers (12k for 12000 and above), accuracies as percentages.
std::string tick_label(double v, bool percent) {
  if (percent) return fmt::format("{:.0f}%", v * 100);
  if (std::fabs(v) >= 10000) return fmt::format("{:.0f}k", v / 1000);
  if (std::fabs(v) >= 100 || v == std::floor(v)) return fmt::format("{:.0f}", v);
  return fmt::format("{:.2f}", v);
}

constexpr Rgb kBlue{31, 119, 180}, kOrange{255, 127, 14}, kGrid{225, 225, 225}, kAxis{60, 60, 60};

// One panel: grid, axes with tick labels (y: value, x: step), the title at the top left, the legend at the top
// right, then the series (validation points marked with dots).
void draw_panel(Canvas& c, int x0, int y0, int x1, int y1, const std::vector<const std::vector<CurvePoint>*>& series,
                const std::vector<Rgb>& colors, double xmax, bool unit_range, const std::string& title) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto* s : series)
    for (const auto& p : *s)
      if (std::isfinite(p.value)) lo = std::min(lo, p.value), hi = std::max(hi, p.value);
  if (unit_range) lo = std::min(lo, 0.0), hi = std::max(hi, 1.0);
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (!unit_range) lo = std::min(lo, 0.0);
  if (hi - lo < 1e-12) hi = lo + 1;
  const double xspan = xmax > 0 ? xmax : 1.0;
  for (int i = 0; i <= 4; ++i) {  // horizontal grid at quarters, labelled with the value
    const int y = y1 - (y1 - y0) * i / 4;
    c.line(x0, y, x1, y, kGrid);
    const std::string label = tick_label(lo + (hi - lo) * i / 4, unit_range);
    draw_text(c, x0 - 6 - text_width(label, 1), y - kGlyphH / 2, label, kAxis, 1);
  }
  for (int i = 0; i <= 5; ++i) {  // vertical grid at fifths, labelled with the step
    const int x = x0 + (x1 - x0) * i / 5;
    c.line(x, y0, x, y1, kGrid);
    const std::string label = tick_label(std::round(xspan * i / 5), false);
    draw_text(c, x - text_width(label, 1) / 2, y1 + 5, label, kAxis, 1);
  }
  c.line(x0, y1, x1, y1, kAxis);
  c.line(x0, y0, x0, y1, kAxis);
  auto px = [&](const CurvePoint& p) {
    const double fx = p.step / xspan, fy = (p.value - lo) / (hi - lo);
    return std::pair<int, int>{x0 + int(std::lround(fx * (x1 - x0))), y1 - int(std::lround(fy * (y1 - y0)))};
  };
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = *series[k];
    for (size_t i = 0; i < s.size(); ++i) {
      if (!std::isfinite(s[i].value)) continue;
      const auto [x, y] = px(s[i]);
      if (i > 0 && std::isfinite(s[i - 1].value)) {
        const auto [xp, yp] = px(s[i - 1]);
        c.line(xp, yp, x, y, colors[k], 1);
      }
      if (k % 2 == 1 || s.size() == 1) c.fill(x - 3, y - 3, x + 3, y + 3, colors[k]);
    }
  }
  // Title and legend last, on white boxes, so curves never hide them.
  constexpr Rgb kWhite{255, 255, 255};
  c.fill(x0 + 4, y0 + 4, x0 + 12 + text_width(title, 2), y0 + 8 + kGlyphH * 2 + 2, kWhite);
  draw_text(c, x0 + 8, y0 + 8, title, kAxis);
  const char* names[] = {"TRAIN", "VALIDATION"};
  int legend_w = 0;
  for (size_t k = 0; k < series.size(); ++k) legend_w += text_width(names[std::min<size_t>(k, 1)], 2) + 36;
  c.fill(x1 - 8 - legend_w - 4, y0 + 4, x1 - 4, y0 + 8 + kGlyphH * 2 + 2, kWhite);
  int lx = x1 - 8;
  for (size_t k = series.size(); k-- > 0;) {
    const std::string name = names[std::min<size_t>(k, 1)];
    lx -= text_width(name, 2);
    draw_text(c, lx, y0 + 8, name, colors[k]);
    lx -= 20;
    c.fill(lx, y0 + 10, lx + 12, y0 + 8 + kGlyphH * 2 - 3, colors[k]);
    lx -= 16;
  }
}

}  // namespace

std::vector<uint8_t> render_curves_png(const Curves& cv, int width, int height) {
  MIXGRAD_CHECK(width >= 64 && height >= 64, "curve image too small ({}x{})", width, height);
  Canvas c(width, height);
  double xmax = 0;
  for (const auto* s : {&cv.train_loss, &cv.val_loss, &cv.train_acc, &cv.val_acc})
    for (const auto& p : *s) xmax = std::max(xmax, p.step);
  // Margins: left for the value labels, bottom of each panel for the step labels, and the x-axis title.
  const int left = 48, right = 12, top = 10, gap = 34, bottom = 40, mid = (height - bottom + top) / 2;
  draw_panel(c, left, top, width - right, mid - gap / 2, {&cv.train_loss, &cv.val_loss}, {kBlue, kOrange}, xmax, false,
             "LOSS");
  draw_panel(c, left, mid + gap / 2, width - right, height - bottom, {&cv.train_acc, &cv.val_acc}, {kBlue, kOrange},
             xmax, true, "ACCURACY");
  const std::string xlabel = "OPTIMISER STEP";
  draw_text(c, left + (width - right - left - text_width(xlabel, 2)) / 2, height - 18, xlabel, kAxis);
  return c.png();
}

std::string base64_encode(const std::vector<uint8_t>& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = uint32_t(in[i]) << 16 | uint32_t(in[i + 1]) << 8 | in[i + 2];
    out += t[v >> 18 & 63], out += t[v >> 12 & 63], out += t[v >> 6 & 63], out += t[v & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t v = uint32_t(in[i]) << 16;
    out += t[v >> 18 & 63], out += t[v >> 12 & 63], out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t v = uint32_t(in[i]) << 16 | uint32_t(in[i + 1]) << 8;
    out += t[v >> 18 & 63], out += t[v >> 12 & 63], out += t[v >> 6 & 63], out += '=';
  }
  return out;
}

namespace {
std::string html_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += ch;
    }
  }
  return o;
}
std::string json_scalar(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) return fmt::format("{:.6g}", v.get<double>());
  return v.dump();
}
}  // namespace

std::string render_report_html(const Json& summary, const std::vector<uint8_t>& png,
                               const std::vector<std::string>& names) {
  std::ostringstream h;
  const std::string title = summary.contains("title") ? json_scalar(summary["title"])
                                                      : "ViT run: " + json_scalar(summary.value("preset", Json("?"))) +
                                                            " / " + json_scalar(summary.value("mixer", Json("?")));
  h << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mixgrad report: " << html_escape(title)
    << "</title>\n<style>"
       "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
       "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
       ".k{text-align:left}</style></head><body>\n";
  h << "<h1>" << html_escape(title) << "</h1>\n";
  if (summary.contains("test_accuracy"))
    h << fmt::format("<p><b>Test accuracy: {:.2f} %</b></p>\n", 100.0 * summary["test_accuracy"].get<double>());
  h << "<h2>Summary</h2>\n<table>\n";
  for (const auto& [k, v] : summary.items()) {
    if (v.is_array() || v.is_object()) continue;
    h << "<tr><th class=\"k\">" << html_escape(k) << "</th><td>" << html_escape(json_scalar(v)) << "</td></tr>\n";
  }
  h << "</table>\n";
  if (!png.empty())
    h << "<h2>Curves</h2>\n<p>Top: loss; bottom: accuracy (0 to 1); x axis: optimiser step. Blue = training "
         "(mean over each log interval), orange = validation.</p>\n<img alt=\"curves\" src=\"data:image/png;base64,"
      << base64_encode(png) << "\">\n";
  if (summary.contains("per_class_accuracy")) {
    const auto& pc = summary["per_class_accuracy"];
    h << "<h2>Per-class test accuracy</h2>\n<table><tr><th>class</th><th class=\"k\">name</th><th>accuracy</th></tr>\n";
    for (size_t i = 0; i < pc.size(); ++i)
      h << fmt::format("<tr><td>{}</td><td class=\"k\">{}</td><td>{:.2f} %</td></tr>\n", i,
                       html_escape(i < names.size() ? names[i] : std::to_string(i)), 100.0 * pc[i].get<double>());
    h << "</table>\n";
  }
  if (summary.contains("confusion_matrix")) {
    const auto& cm = summary["confusion_matrix"];
    h << "<h2>Confusion matrix (test)</h2>\n<p>Rows: true class; columns: predicted class.</p>\n<table><tr><th></th>";
    for (size_t j = 0; j < cm.size(); ++j) h << "<th>" << j << "</th>";
    h << "</tr>\n";
    for (size_t i = 0; i < cm.size(); ++i) {
      int64_t row_sum = 0;
      for (const auto& v : cm[i]) row_sum += v.get<int64_t>();
      h << "<tr><th>" << i << "</th>";
      for (size_t j = 0; j < cm[i].size(); ++j) {
        const int64_t v = cm[i][j].get<int64_t>();
        const int shade = row_sum > 0 ? int(255 - 155.0 * double(v) / double(row_sum)) : 255;
        h << fmt::format("<td style=\"background:rgb({},{},255)\">{}</td>", shade, shade, v);
      }
      h << "</tr>\n";
    }
    h << "</table>\n";
  }
  h << "</body></html>\n";
  return h.str();
}

}  // namespace mixgrad::app
