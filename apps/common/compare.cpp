// `compare`: the runs (fresh, resumed or reused), the per-row statistics, and the three reports.
#include "apps/common/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "engine/error.h"
#include "nn/mixer.h"

namespace mixgrad::app {

namespace fs = std::filesystem;

// ---- names and options ----------------------------------------------------------------------------------------
std::vector<std::string> parse_name_list(const std::string& list, const std::vector<std::string>& known,
                                         const std::string& what) {
  if (list == "all") return known;
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    MIXGRAD_CHECK(std::find(known.begin(), known.end(), item) != known.end(),
                  "{}: unknown name '{}' (known: {}, or all)", what, item, fmt::join(known, ", "));
    MIXGRAD_CHECK(std::find(out.begin(), out.end(), item) == out.end(), "{}: '{}' is listed twice", what, item);
    out.push_back(item);
  }
  MIXGRAD_CHECK(!out.empty(), "{}: empty list (expected a comma-separated list of {} or all)", what,
                fmt::join(known, ", "));
  return out;
}

std::vector<uint64_t> seed_list(int64_t n) {
  MIXGRAD_CHECK(n >= 1, "--seeds {} (expected at least 1)", n);
  std::vector<uint64_t> s;
  for (int64_t i = 0; i < n; ++i) s.push_back(uint64_t(i));
  return s;
}

namespace {
bool declares(const std::string& mixer, const std::string& option) {
  for (const nn::MixerOptionSpec& o : nn::mixer_info(mixer).options)
    if (o.name == option) return true;
  return false;
}
}  // namespace

std::map<std::string, std::string> mixer_options_for(const std::string& mixer,
                                                     const std::map<std::string, std::string>& options) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : options)
    if (declares(mixer, k)) out[k] = v;
  return out;
}

void check_mixer_options_declared(const std::vector<std::string>& mixers,
                                  const std::map<std::string, std::string>& options) {
  for (const auto& [k, v] : options) {
    bool used = false;
    for (const std::string& m : mixers) used = used || declares(m, k);
    MIXGRAD_CHECK(used, "--mixer-opt {}={}: no compared mixer ({}) declares option '{}' (`info --mixer M` lists them)",
                  k, v, fmt::join(mixers, ", "), k);
  }
}

fs::path compare_run_dir(const CompareSpec& spec, const std::string& model, const std::string& mixer, uint64_t seed) {
  const std::string folder = spec.model_in_folder_name ? model + "-" + mixer : mixer;
  return spec.out_dir / folder / fmt::format("seed-{}", seed);
}

// ---- one run --------------------------------------------------------------------------------------------------
namespace {

using Clock = std::chrono::steady_clock;

std::optional<Json> read_json(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return std::nullopt;
  try {
    return Json::parse(f);
  } catch (const std::exception&) {
    return std::nullopt;  // a torn or foreign file: the run is redone
  }
}

// A finished run's summary.json (it holds a test accuracy), or nothing.
std::optional<Json> finished_summary(const fs::path& dir) {
  std::optional<Json> s = read_json(dir / "summary.json");
  if (s && s->is_object() && s->contains("test_accuracy") && (*s)["test_accuracy"].is_number()) return s;
  return std::nullopt;
}

// Training throughput from metrics.jsonl (the interval rates, weighted by their steps: total steps over total time)
// for a run whose last process only ran its test (its summary then reports no throughput).
double metrics_throughput(const fs::path& dir, const std::string& unit) {
  double steps = 0, seconds = 0;
  int64_t last_step = 0;
  for (const Json& r : read_metrics(dir / "metrics.jsonl")) {
    if (r.value("kind", "") != "train") continue;
    const int64_t step = r.value("step", int64_t(0));
    const double rate = r.value(unit + "_per_s", 0.0), dsteps = double(step - last_step);
    last_step = step;
    if (rate <= 0 || dsteps <= 0) continue;
    steps += dsteps, seconds += dsteps / rate;
  }
  return seconds > 0 ? steps / seconds : 0.0;
}

int64_t metrics_peak_memory(const fs::path& dir) {
  int64_t peak = 0;
  for (const Json& r : read_metrics(dir / "metrics.jsonl"))
    peak = std::max(peak, r.value("peak_memory_bytes", int64_t(0)));
  return peak;
}

// Adds `seconds` to the run's compare_time.json and returns the total.
double add_wall_time(const fs::path& dir, double seconds) {
  const fs::path p = dir / "compare_time.json";
  const std::optional<Json> prev = read_json(p);
  const double total = seconds + (prev ? prev->value("wall_s", 0.0) : 0.0);
  write_json_atomic(p, Json{{"wall_s", total}});
  return total;
}

CompareRunResult run_one(const CompareSpec& spec, const CompareRun& run) {
  CompareRunResult r;
  r.run = run;
  std::optional<Json> summary = finished_summary(run.dir);
  if (summary) {
    r.status = "reused";
    const std::optional<Json> t = read_json(run.dir / "compare_time.json");
    r.wall_s = t ? t->value("wall_s", 0.0) : summary->value("wall_s", 0.0);
  } else {
    const bool resume = fs::exists(run.dir / "last.safetensors");
    r.status = resume ? "resumed" : "trained";
    if (!spec.quiet)
      std::printf("%s compare: %s %s%s seed %llu -> %s\n", spec.app.c_str(), resume ? "resuming" : "training",
                  spec.models.size() > 1 || spec.model_in_folder_name ? (run.model + " / ").c_str() : "",
                  run.mixer.c_str(), (unsigned long long)run.seed, run.dir.string().c_str()),
          std::fflush(stdout);
    fs::create_directories(run.dir);
    const auto t0 = Clock::now();
    const TrainSummary s = spec.train(run, resume);
    MIXGRAD_CHECK(s.finished, "{} compare: the run in {} stopped before its end (global step {} of {})", spec.app,
                  run.dir.string(), s.global_step, s.total_steps);
    r.wall_s = add_wall_time(run.dir, std::chrono::duration<double>(Clock::now() - t0).count());
    summary = finished_summary(run.dir);
    MIXGRAD_CHECK(summary.has_value(), "{} compare: the run in {} finished without a readable summary.json", spec.app,
                  run.dir.string());
  }
  r.test_accuracy = (*summary)["test_accuracy"].get<double>();
  r.units_per_s = summary->value("train_" + spec.unit + "_per_s", 0.0);
  if (r.units_per_s <= 0) r.units_per_s = metrics_throughput(run.dir, spec.unit);
  r.peak_memory_bytes = std::max(summary->value("peak_memory_bytes", int64_t(0)), metrics_peak_memory(run.dir));
  r.cost = spec.cost(run);
  return r;
}

CompareRow make_row(const std::vector<CompareRunResult>& runs) {
  CompareRow row;
  row.model = runs.front().run.model, row.mixer = runs.front().run.mixer;
  row.cost = runs.front().cost;
  double sum = 0;
  for (const CompareRunResult& r : runs) {
    row.accuracies.push_back(r.test_accuracy);
    sum += r.test_accuracy;
    row.units_per_s += r.units_per_s / double(runs.size());
    row.wall_s += r.wall_s / double(runs.size());
    row.peak_memory_bytes = std::max(row.peak_memory_bytes, r.peak_memory_bytes);
  }
  const double n = double(runs.size());
  row.accuracy_mean = sum / n;
  double ss = 0;
  for (double a : row.accuracies) ss += (a - row.accuracy_mean) * (a - row.accuracy_mean);
  row.accuracy_std = runs.size() > 1 ? std::sqrt(ss / (n - 1)) : 0.0;
  row.accuracy_min = *std::min_element(row.accuracies.begin(), row.accuracies.end());
  row.accuracy_max = *std::max_element(row.accuracies.begin(), row.accuracies.end());
  return row;
}

}  // namespace

CompareResult run_comparison(const CompareSpec& spec) {
  MIXGRAD_CHECK(!spec.models.empty() && !spec.mixers.empty() && !spec.seeds.empty() && spec.train && spec.cost,
                "{} compare: nothing to compare (models, mixers and seeds must each be non-empty)", spec.app);
  CompareResult res;
  for (const std::string& model : spec.models)
    for (const std::string& mixer : spec.mixers)
      if (const std::string why = spec.skip_reason ? spec.skip_reason(model, mixer) : ""; !why.empty())
        res.skipped.push_back(fmt::format("{} × {}: {}", model, mixer, why));
  MIXGRAD_CHECK(res.skipped.size() < spec.models.size() * spec.mixers.size(),
                "{} compare: no model × mixer pair can run ({})", spec.app, fmt::join(res.skipped, "; "));
  fs::create_directories(spec.out_dir);
  for (const std::string& skipped : res.skipped)
    if (!spec.quiet) std::printf("%s compare: skipped %s\n", spec.app.c_str(), skipped.c_str());
  for (const std::string& model : spec.models)
    for (const std::string& mixer : spec.mixers) {
      if (spec.skip_reason && !spec.skip_reason(model, mixer).empty()) continue;
      std::vector<CompareRunResult> runs;
      for (uint64_t seed : spec.seeds)
        runs.push_back(run_one(spec, CompareRun{model, mixer, seed, compare_run_dir(spec, model, mixer, seed)}));
      res.rows.push_back(make_row(runs));
      res.runs.insert(res.runs.end(), runs.begin(), runs.end());
    }
  write_json_atomic(spec.out_dir / "compare.json", compare_json(spec, res));
  write_text_atomic(spec.out_dir / "compare.md", render_compare_md(spec, res));
  write_text_atomic(spec.out_dir / "compare.html", render_compare_html(spec, res));
  if (!spec.quiet) {
    std::fputs(render_compare_md(spec, res).c_str(), stdout);
    std::printf("%s compare: wrote %s/compare.{md,json,html}\n", spec.app.c_str(), spec.out_dir.string().c_str());
  }
  return res;
}

// ---- reports --------------------------------------------------------------------------------------------------
namespace {

// "12.3 M", "1.05 G": FLOPs with an SI prefix.
std::string si(double v) {
  const char* units[] = {"", " k", " M", " G", " T", " P"};
  int i = 0;
  while (std::abs(v) >= 1000 && i < 5) v /= 1000, ++i;
  return fmt::format("{:.3g}{}", v, units[i]);
}

std::string flops_text(const ModelCost& c) { return (c.flops_complete ? "" : "≥ ") + si(c.flops); }

std::string accuracy_text(const CompareRow& r) {
  if (r.accuracies.size() < 2) return fmt::format("{:.2f} %", 100.0 * r.accuracy_mean);
  return fmt::format("{:.2f} ± {:.2f} %", 100.0 * r.accuracy_mean, 100.0 * r.accuracy_std);
}

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else if (c == '"')
      o += "&quot;";
    else
      o += c;
  }
  return o;
}

// The columns of one row, as text (shared by the Markdown and HTML tables).
std::vector<std::string> row_cells(const CompareSpec& spec, const CompareRow& r) {
  std::vector<std::string> cells;
  if (spec.model_in_folder_name) cells.push_back(r.model);
  cells.push_back(r.mixer);
  cells.push_back(std::to_string(r.accuracies.size()));
  cells.push_back(accuracy_text(r));
  cells.push_back(fmt::format("{:.2f} – {:.2f} %", 100.0 * r.accuracy_min, 100.0 * r.accuracy_max));
  cells.push_back(std::to_string(r.cost.params));
  cells.push_back(flops_text(r.cost));
  cells.push_back(fmt::format("{:.0f}", r.units_per_s));
  cells.push_back(format_bytes(r.peak_memory_bytes));
  cells.push_back(format_duration(r.wall_s));
  return cells;
}

std::vector<std::string> header_cells(const CompareSpec& spec) {
  std::vector<std::string> h;
  if (spec.model_in_folder_name) h.push_back("model");
  for (const std::string& s :
       {std::string("mixer"), std::string("seeds"), std::string("test accuracy (mean ± std)"), std::string("min – max"),
        std::string("parameters"), "FLOPs / " + spec.per_sample, "train " + spec.unit + "/s",
        std::string("peak memory"), std::string("wall time (mean)")})
    h.push_back(s);
  return h;
}

std::string notes(const CompareSpec& spec) {
  return fmt::format(
      "Test accuracy of each run's {}; ± is the sample standard deviation over seeds "
      "(n − 1), min – max the range. FLOPs: matmul FLOPs (a multiply-add = 2) of one forward pass per {}, counted "
      "per layer from the model (apps/common/flops.h); ≥ marks a lower bound (a mixer or module without a FLOP "
      "formula). Throughput: training {} per second of optimiser steps (from each run's summary.json), mean over "
      "seeds; peak memory: the largest allocator peak of the device over seeds; wall time: the time the comparison spent "
      "on a run, summed over invocations, mean over seeds. Each run folder holds its own report.html.",
      spec.selection, spec.per_sample, spec.unit);
}

}  // namespace

Json compare_json(const CompareSpec& spec, const CompareResult& res) {
  Json rows = Json::array(), runs = Json::array();
  for (const CompareRow& r : res.rows)
    rows.push_back(Json{{"model", r.model},
                        {"mixer", r.mixer},
                        {"seeds", r.accuracies.size()},
                        {"test_accuracy_mean", r.accuracy_mean},
                        {"test_accuracy_std", r.accuracy_std},
                        {"test_accuracy_min", r.accuracy_min},
                        {"test_accuracy_max", r.accuracy_max},
                        {"test_accuracies", r.accuracies},
                        {"params", r.cost.params},
                        {"flops_per_" + spec.per_sample, r.cost.flops},
                        {"flops_complete", r.cost.flops_complete},
                        {"train_" + spec.unit + "_per_s", r.units_per_s},
                        {"peak_memory_bytes", r.peak_memory_bytes},
                        {"wall_s", r.wall_s}});
  for (const CompareRunResult& r : res.runs)
    runs.push_back(Json{{"model", r.run.model},
                        {"mixer", r.run.mixer},
                        {"seed", r.run.seed},
                        {"dir", r.run.dir.string()},
                        {"status", r.status},
                        {"test_accuracy", r.test_accuracy},
                        {"train_" + spec.unit + "_per_s", r.units_per_s},
                        {"peak_memory_bytes", r.peak_memory_bytes},
                        {"wall_s", r.wall_s}});
  return Json{{"app", spec.app},       {"title", spec.title},   {"command", spec.command}, {"settings", spec.settings},
              {"models", spec.models}, {"mixers", spec.mixers}, {"seeds", spec.seeds},     {"rows", rows},
              {"runs", runs},          {"notes", notes(spec)},  {"skipped", res.skipped}};
}

std::string render_compare_md(const CompareSpec& spec, const CompareResult& res) {
  std::string s = "# " + spec.title + "\n\n";
  if (!spec.command.empty()) s += "```\n" + spec.command + "\n```\n\n";
  const std::vector<std::string> h = header_cells(spec);
  s += "| " + fmt::format("{}", fmt::join(h, " | ")) + " |\n|";
  for (size_t i = 0; i < h.size(); ++i) s += i < (spec.model_in_folder_name ? 2u : 1u) ? "---|" : "---:|";
  s += "\n";
  for (const CompareRow& r : res.rows) s += "| " + fmt::format("{}", fmt::join(row_cells(spec, r), " | ")) + " |\n";
  if (!res.skipped.empty()) s += fmt::format("\nSkipped: {}.\n", fmt::join(res.skipped, "; "));
  return s + "\n" + notes(spec) + "\n";
}

namespace {

// Test accuracy (mean, ± std as an error bar) against training throughput, one labelled point per row.
std::string svg_plot(const CompareSpec& spec, const CompareResult& res) {
  const double W = 720, H = 420, L = 70, R = 30, T = 30, B = 60;
  double xmax = 0, ylo = 1, yhi = 0;
  for (const CompareRow& r : res.rows) {
    xmax = std::max(xmax, r.units_per_s);
    ylo = std::min(ylo, r.accuracy_mean - r.accuracy_std), yhi = std::max(yhi, r.accuracy_mean + r.accuracy_std);
  }
  xmax = xmax > 0 ? xmax * 1.15 : 1;
  const double pad = std::max(0.01, 0.1 * (yhi - ylo));
  ylo = std::max(0.0, ylo - pad), yhi = std::min(1.0, yhi + pad);
  if (yhi <= ylo) yhi = std::min(1.0, ylo + 0.02), ylo = yhi - 0.02;
  auto px = [&](double x) { return L + (W - L - R) * x / xmax; };
  auto py = [&](double y) { return T + (H - T - B) * (1 - (y - ylo) / (yhi - ylo)); };
  std::ostringstream o;
  o << fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      W, H);
  for (int i = 0; i <= 4; ++i) {  // grid and tick labels
    const double xv = xmax * i / 4, yv = ylo + (yhi - ylo) * i / 4;
    o << fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>"
        "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4:.0f}</text>\n",
        px(xv), T, H - B, H - B + 16, xv);
    o << fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:.1f} %</text>\n",
        L, py(yv), W - R, L - 6, py(yv) + 4, 100 * yv);
  }
  o << fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", L, T,
                   W - L - R, H - T - B);
  o << fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">training {}/s (mean over seeds)</text>\n",
                   (L + W - R) / 2, H - 18, spec.unit);
  o << fmt::format(
      "<text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">test accuracy (mean ± "
      "std)</text>\n",
      (T + H - B) / 2);
  for (const CompareRow& r : res.rows) {
    const double x = px(r.units_per_s), y = py(r.accuracy_mean);
    const std::string label = spec.model_in_folder_name ? r.model + " / " + r.mixer : r.mixer;
    const bool right_half = x > L + 0.6 * (W - L - R);  // labels there grow leftwards, inside the frame
    if (r.accuracy_std > 0)
      o << fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#1f77b4\"/>\n", x,
                       py(r.accuracy_mean - r.accuracy_std), py(r.accuracy_mean + r.accuracy_std));
    o << fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"5\" fill=\"#1f77b4\"><title>{}</title></circle>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"{}\">{}</text>\n",
        x, y, html_escape(label), right_half ? x - 8 : x + 8, y - 6, right_half ? "end" : "start", html_escape(label));
  }
  return o.str() + "</svg>\n";
}

}  // namespace

std::string render_compare_html(const CompareSpec& spec, const CompareResult& res) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" << html_escape(spec.title)
    << "</title>\n<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em "
       "0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}.k{text-align:left}"
       "</style></head><body>\n<h1>"
    << html_escape(spec.title) << "</h1>\n";
  if (!spec.command.empty()) h << "<pre>" << html_escape(spec.command) << "</pre>\n";
  h << "<table>\n<tr>";
  for (const std::string& c : header_cells(spec)) h << "<th>" << html_escape(c) << "</th>";
  h << "</tr>\n";
  for (const CompareRow& r : res.rows) {
    h << "<tr>";
    const std::vector<std::string> cells = row_cells(spec, r);
    for (size_t i = 0; i < cells.size(); ++i)
      h << (i < (spec.model_in_folder_name ? 2u : 1u) ? "<td class=\"k\">" : "<td>") << html_escape(cells[i])
        << "</td>";
    h << "</tr>\n";
  }
  h << "</table>\n<h2>Accuracy against throughput</h2>\n" << svg_plot(spec, res);
  h << "<p>" << html_escape(notes(spec)) << "</p>\n<h2>Runs</h2>\n<table>\n<tr><th class=\"k\">run folder</th>"
    << "<th>status</th><th>test accuracy</th></tr>\n";
  for (const CompareRunResult& r : res.runs)
    h << fmt::format("<tr><td class=\"k\">{}</td><td>{}</td><td>{:.2f} %</td></tr>\n", html_escape(r.run.dir.string()),
                     r.status, 100.0 * r.test_accuracy);
  return h.str() + "</table>\n</body></html>\n";
}

}  // namespace mixgrad::app
