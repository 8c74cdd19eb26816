// The Pathfinder image generator, lra.md §5.2 step by step: snakes of paddles grown on an occupancy map, two
// targets, distractors, two markers. One DataRng stream per image keeps every image independent of the others.
//
// Where §5.2 leaves a choice open (none of these changes what an image can show or how labels are drawn):
// - integer positions (tails, candidates, pivots) stand for pixel centres; paddle ends are exact, not rounded at a×;
// - down-sampling is an area average (no Lanczos ringing, so step 8 has nothing to clamp);
// - the seeding step dilates with the pixels a paddle's footprint covers at least half of, and treats pixels off the
//   image as occupied;
// - each target snake draws its own snake contrast (the public code shuffles a doubled list);
// - both targets' last footprints join the occupancy map before the distractors (the public code adds only B's);
// - the "less than 1 % free" stop is checked once per distractor, which is when the map can have changed.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "apps/data/pathfinder.h"
#include "apps/data/pathfinder_paint.h"
#include "apps/data/random.h"
#include "engine/error.h"

namespace mixgrad::data {
namespace {

using pathfinder_detail::PaddleShape;
using pathfinder_detail::Patch;
using pathfinder_detail::PointF;
using pathfinder_detail::SupportRun;

constexpr double kPi = 3.14159265358979323846;
constexpr float kFreeLevel = 0.3f;        // a pixel is free iff M <= 0.3
constexpr float kCrossLevel = 1.8f;       // a paddle is refused where M + footprint reaches 1.8
constexpr double kMinTotalWeight = 1e-4;  // below it an extension is a dead end

double degrees(int64_t d) { return static_cast<double>(d) * kPi / 180.0; }

// tr(p, θ, d) = ceil(p + d · dir(θ)) of §5.2.
PathfinderPixel translate(PathfinderPixel p, double theta, double d) {
  return {static_cast<int>(std::ceil(p.y + d * std::sin(theta))),
          static_cast<int>(std::ceil(p.x + d * std::cos(theta)))};
}

PointF centre(PathfinderPixel p) { return {p.y + 0.5, p.x + 0.5}; }

template <class T>
T pick(DataRng& rng, const std::vector<T>& choices) {
  // No draw for a single choice, like the public generator: the stream then only depends on what varies.
  return choices.size() == 1 ? choices[0] : choices[size_t(rng.randint(0, int64_t(choices.size()) - 1))];
}

// A growing snake: the pivot its next paddle is placed around, its heading, and the footprint of its newest paddle,
// which joins the occupancy map only once the next paddle is down (so consecutive paddles may touch).
struct Snake {
  int id = 0;
  PathfinderPixel pivot, origin, tip;
  double theta = 0;
  Patch foot;
};

// A paddle drawn but not yet committed to the image (a distractor attempt can still be undone).
struct PendingPaddle {
  Patch patch;
  PathfinderPaddle geometry;
};

class ImageBuilder {
 public:
  ImageBuilder(const PathfinderConfig& config, int margin, DataRng& rng)
      : c_(config), rng_(rng), w_(config.window), margin_(margin) {
    shape_.length = config.paddle_length;
    shape_.aa = config.antialias_scale;
    shape_.half_width = std::round(config.paddle_thickness * config.antialias_scale) / (2.0 * config.antialias_scale);
    shape_.margin = margin;
  }

  bool place_targets(std::array<Snake, 2>& targets);
  void add_distractors(PathfinderTrace& trace);
  void add_marker(PathfinderPixel at);
  void reset();
  void commit(PathfinderTrace& trace);
  std::vector<uint8_t> to_bytes() const;

 private:
  bool inside(PathfinderPixel p) const { return p.y >= 0 && p.y < w_ && p.x >= 0 && p.x < w_; }
  float& m_at(int y, int x) { return occupancy_[size_t(y * w_ + x)]; }
  std::vector<int> blocked_prefix(int band) const;
  std::vector<int> free_tails(const std::vector<int>& blocked, int band, const std::vector<SupportRun>& support) const;
  bool seed(Snake& s, double contrast, int band);
  bool seed_near(Snake& s, const Snake& first, double contrast);
  void draw_seed(Snake& s, PathfinderPixel tail, double theta, double contrast);
  bool extend(Snake& s, double contrast);
  bool try_paddle(Snake& s, PathfinderPixel next_pivot, PathfinderPixel c, double o, double contrast);
  float dilated(PathfinderPixel c) const;
  void merge_foot(const Patch& foot);
  bool make_distractor(int id);
  double free_fraction() const;

  const PathfinderConfig& c_;
  DataRng& rng_;
  int w_, margin_;
  PaddleShape shape_;
  std::vector<float> occupancy_, ink_;
  std::vector<PendingPaddle> pending_;
};

void ImageBuilder::reset() {
  occupancy_.assign(size_t(w_) * size_t(w_), 0.0f);
  ink_.assign(occupancy_.size(), 0.0f);
  pending_.clear();
  for (int y = 0; y < w_; ++y)
    for (int x = 0; x < w_; ++x)
      if (std::min({y, x, w_ - 1 - y, w_ - 1 - x}) < c_.padding) m_at(y, x) = 1.0f;
}

// Per row, prefix counts of the pixels a seed may not touch: occupied ones (M > 0.3) and those closer than `band`
// to an edge. Row y's count over columns [x0, x1] is p[y·(W+1) + x1 + 1] - p[y·(W+1) + x0].
std::vector<int> ImageBuilder::blocked_prefix(int band) const {
  std::vector<int> prefix(size_t(w_) * size_t(w_ + 1), 0);
  for (int y = 0; y < w_; ++y)
    for (int x = 0; x < w_; ++x) {
      const bool blocked =
          std::min({y, x, w_ - 1 - y, w_ - 1 - x}) < band || occupancy_[size_t(y * w_ + x)] > kFreeLevel;
      prefix[size_t(y * (w_ + 1) + x + 1)] = prefix[size_t(y * (w_ + 1) + x)] + (blocked ? 1 : 0);
    }
  return prefix;
}

// Tails whose paddle footprint (`support`) meets no blocked pixel, in row-major order; pixels off the image count
// as blocked. The tail pixel is part of its own footprint, so only tails at least `band` from the edges are tried.
std::vector<int> ImageBuilder::free_tails(const std::vector<int>& blocked, int band,
                                          const std::vector<SupportRun>& support) const {
  std::vector<int> tails;
  const auto row = [&](int y, int x) { return blocked[size_t(y * (w_ + 1) + x)]; };
  for (int y = band; y < w_ - band; ++y)
    for (int x = band; x < w_ - band; ++x) {
      bool free = row(y, x + 1) == row(y, x);  // a cheap first test
      for (size_t k = 0; k < support.size() && free; ++k) {
        const int yy = y + support[k].dy, x0 = x + support[k].dx_first, x1 = x + support[k].dx_last;
        free = yy >= 0 && yy < w_ && x0 >= 0 && x1 < w_ && row(yy, x1 + 1) == row(yy, x0);
      }
      if (free) tails.push_back(y * w_ + x);
    }
  return tails;
}

void ImageBuilder::draw_seed(Snake& s, PathfinderPixel tail, double theta, double contrast) {
  Patch patch = paint_paddle(w_, w_, centre(tail), theta, shape_, static_cast<float>(contrast));
  const PointF a = centre(tail);
  const double len = c_.paddle_length;
  s.foot = patch;
  s.theta = theta;
  s.origin = s.tip = tail;
  s.pivot = translate(translate(tail, theta, len), theta + kPi, len + margin_);
  pending_.push_back({std::move(patch), {s.id, a.y, a.x, a.y + len * std::sin(theta), a.x + len * std::cos(theta)}});
}

// Step 3: a random heading, a tail drawn uniformly from the pixels where the paddle's footprint is free (and at
// least `band` from every edge), retried while the head or the pivot falls off the image.
bool ImageBuilder::seed(Snake& s, double contrast, int band) {
  const std::vector<int> blocked = blocked_prefix(band);
  for (int attempt = 0; attempt < c_.seed_attempts; ++attempt) {
    const double theta = degrees(rng_.randint(-180, 179));
    const std::vector<int> tails = free_tails(blocked, band, paddle_support(theta, shape_));
    if (tails.empty()) return false;
    const int t = tails[size_t(rng_.randint(0, int64_t(tails.size()) - 1))];
    const PathfinderPixel tail{t / w_, t % w_}, head = translate(tail, theta, c_.paddle_length);
    if (!inside(head) || !inside(translate(head, theta + kPi, c_.paddle_length + margin_))) continue;
    draw_seed(s, tail, theta, contrast);
    return true;
  }
  return false;
}

// Step 5, second target: its tail lies seed_distance from the first one's in a random direction; only the image
// bounds are checked (as in the public generator), the extensions then keep the snakes apart.
bool ImageBuilder::seed_near(Snake& s, const Snake& first, double contrast) {
  for (int attempt = 0; attempt < c_.seed_attempts; ++attempt) {
    const double theta = degrees(rng_.randint(-180, 179)), phi = degrees(rng_.randint(0, 359));
    const PathfinderPixel tail{static_cast<int>(std::round(first.origin.y + c_.seed_distance * std::sin(phi))),
                               static_cast<int>(std::round(first.origin.x + c_.seed_distance * std::cos(phi)))};
    const PathfinderPixel head = translate(tail, theta, c_.paddle_length);
    if (!inside(tail) || !inside(head) || !inside(translate(head, theta + kPi, c_.paddle_length + margin_))) continue;
    draw_seed(s, tail, theta, contrast);
    return true;
  }
  return false;
}

// D[c]: the occupancy map dilated by a disc of radius m, evaluated at c only.
float ImageBuilder::dilated(PathfinderPixel c) const {
  float d = 0.0f;
  for (int dy = -margin_; dy <= margin_; ++dy)
    for (int dx = -margin_; dx <= margin_; ++dx) {
      const int y = c.y + dy, x = c.x + dx;
      if (dy * dy + dx * dx <= margin_ * margin_ && y >= 0 && y < w_ && x >= 0 && x < w_)
        d = std::max(d, occupancy_[size_t(y * w_ + x)]);
    }
  return d;
}

void ImageBuilder::merge_foot(const Patch& foot) {
  for (int y = foot.y0; y < foot.y0 + foot.h; ++y)
    for (int x = foot.x0; x < foot.x0 + foot.w; ++x) m_at(y, x) = std::max(m_at(y, x), foot.foot_at(y, x));
}

// Integer points on the circle of radius r around p, one per pixel of arc (angular step 360 / (2πr) degrees),
// truncated towards zero, inside the image, without repeats, in (y, x) order.
std::vector<PathfinderPixel> circle_points(PathfinderPixel p, double r, int w) {
  const double step = 360.0 / (2.0 * kPi * r);
  std::vector<PathfinderPixel> points;
  for (int64_t k = 0; double(k) * step < 360.0; ++k) {
    const double a = double(k) * step * kPi / 180.0, y = p.y + r * std::sin(a), x = p.x + r * std::cos(a);
    if (y < 0 || y >= w || x < 0 || x >= w) continue;
    points.push_back({static_cast<int>(y), static_cast<int>(x)});
  }
  std::sort(points.begin(), points.end(), [](auto a, auto b) { return a.y != b.y ? a.y < b.y : a.x < b.x; });
  points.erase(std::unique(points.begin(), points.end()), points.end());
  return points;
}

// Step 4: candidates around the advanced pivot, weighted by free space and by how little they turn the snake
// (continuity κ: turns of π / (2κ) or more get weight 0); a sampled candidate whose paddle would cross an older
// paddle is redrawn up to paddle_attempts times.
bool ImageBuilder::extend(Snake& s, double contrast) {
  const PathfinderPixel next = translate(s.pivot, s.theta, c_.paddle_length + 2 * margin_);
  const std::vector<PathfinderPixel> points = circle_points(next, c_.paddle_length + margin_, w_);
  std::vector<double> orientation(points.size()), cumulative(points.size());
  double total = 0;
  for (size_t i = 0; i < points.size(); ++i) {
    orientation[i] = std::atan2(points[i].y - next.y, points[i].x - next.x);
    double turn = std::abs(orientation[i] - s.theta);
    turn = std::min(std::min(turn, 2 * kPi - turn) * c_.continuity, kPi / 2);
    const double bend = std::max(std::cos(turn), 0.0);
    total += std::max(0.0, 1.0 - double(dilated(points[i]))) * bend * bend;
    cumulative[i] = total;
  }
  if (total < kMinTotalWeight) return false;
  for (int attempt = 0; attempt < c_.paddle_attempts; ++attempt) {
    const double r = rng_.uniform() * total;
    size_t i = size_t(std::upper_bound(cumulative.begin(), cumulative.end(), r) - cumulative.begin());
    // r * total can round up to total itself; then take the last candidate that has weight.
    while (i >= points.size() || (i > 0 && cumulative[i] == cumulative[i - 1])) --i;
    if (try_paddle(s, next, points[i], orientation[i], contrast)) return true;
  }
  return false;
}

// A paddle from candidate c back towards the pivot; refused where its footprint meets an older paddle's.
bool ImageBuilder::try_paddle(Snake& s, PathfinderPixel next_pivot, PathfinderPixel c, double o, double contrast) {
  Patch patch = paint_paddle(w_, w_, centre(c), o + kPi, shape_, static_cast<float>(contrast));
  for (int y = patch.y0; y < patch.y0 + patch.h; ++y)
    for (int x = patch.x0; x < patch.x0 + patch.w; ++x)
      if (m_at(y, x) + patch.foot_at(y, x) >= kCrossLevel) return false;
  merge_foot(s.foot);
  s.foot = patch;
  s.pivot = next_pivot;
  s.theta = o;
  s.tip = c;
  const PointF a = centre(c);
  const double len = c_.paddle_length;
  pending_.push_back({std::move(patch), {s.id, a.y, a.x, a.y - len * std::sin(o), a.x - len * std::cos(o)}});
  return true;
}

// Step 5: seed A away from the edges, seed B near it, then grow A and B alternately. Contrast = paddle contrast
// (one draw per step, shared by both snakes) × the snake's own contrast.
bool ImageBuilder::place_targets(std::array<Snake, 2>& t) {
  t[0] = Snake{};
  t[1] = Snake{};
  t[1].id = 1;
  const double snake0 = pick(rng_, c_.snake_contrasts), snake1 = pick(rng_, c_.snake_contrasts);
  if (!seed(t[0], pick(rng_, c_.paddle_contrasts) * snake0, 2 * c_.seed_distance)) return false;
  if (!seed_near(t[1], t[0], pick(rng_, c_.paddle_contrasts) * snake1)) return false;
  for (int k = 1; k < c_.contour_length; ++k) {
    const double paddle = pick(rng_, c_.paddle_contrasts);
    if (!extend(t[0], paddle * snake0) || !extend(t[1], paddle * snake1)) return false;
  }
  // The public generator merges only the second target's last footprint; both are merged here so that no
  // distractor can be drawn across the end of the first target.
  merge_foot(t[0].foot);
  merge_foot(t[1].foot);
  return true;
}

double ImageBuilder::free_fraction() const {
  const auto free = std::count_if(occupancy_.begin(), occupancy_.end(), [](float m) { return m <= kFreeLevel; });
  return double(free) / double(occupancy_.size());
}

// A distractor: a seed anywhere free plus distractor_length - 1 extensions, every paddle at a snake contrast.
bool ImageBuilder::make_distractor(int id) {
  Snake s;
  s.id = id;
  if (!seed(s, pick(rng_, c_.snake_contrasts), 1)) return false;
  for (int k = 1; k < c_.distractor_length; ++k)
    if (!extend(s, pick(rng_, c_.snake_contrasts))) return false;
  merge_foot(s.foot);
  return true;
}

// Step 6: a failed attempt leaves no trace (occupancy restored, its paddles dropped); a distractor that fails
// distractor_attempts times is skipped. The occupancy map only grows, so once too little of it is free no later
// seed could succeed and the loop stops.
void ImageBuilder::add_distractors(PathfinderTrace& trace) {
  for (int d = 0; d < c_.num_distractor_snakes; ++d) {
    if (free_fraction() < c_.min_free_fraction) return;
    for (int attempt = 0; attempt < c_.distractor_attempts; ++attempt) {
      const std::vector<float> saved = occupancy_;
      if (make_distractor(2 + trace.distractors)) {
        commit(trace);
        ++trace.distractors;
        break;
      }
      occupancy_ = saved;
      pending_.clear();
    }
  }
}

void ImageBuilder::commit(PathfinderTrace& trace) {
  for (PendingPaddle& p : pending_) {
    for (int y = p.patch.y0; y < p.patch.y0 + p.patch.h; ++y)
      for (int x = p.patch.x0; x < p.patch.x0 + p.patch.w; ++x) {
        float& v = ink_[size_t(y * w_ + x)];
        v = std::max(v, p.patch.stroke_at(y, x));
      }
    trace.paddles.push_back(p.geometry);
  }
  pending_.clear();
}

void ImageBuilder::add_marker(PathfinderPixel at) {
  const Patch disc = pathfinder_detail::paint_disc(w_, w_, centre(at), c_.marker_radius, c_.antialias_scale);
  for (int y = disc.y0; y < disc.y0 + disc.h; ++y)
    for (int x = disc.x0; x < disc.x0 + disc.w; ++x) {
      float& v = ink_[size_t(y * w_ + x)];
      v = std::max(v, disc.stroke_at(y, x));
    }
}

// Step 8: 8-bit values round(255 · v / max v). Area averaging never goes negative, so there is nothing to clamp.
std::vector<uint8_t> ImageBuilder::to_bytes() const {
  const float peak = *std::max_element(ink_.begin(), ink_.end());
  std::vector<uint8_t> bytes(ink_.size(), 0);
  if (peak > 0)
    for (size_t i = 0; i < ink_.size(); ++i)
      bytes[i] = static_cast<uint8_t>(std::lround(255.0 * double(ink_[i]) / double(peak)));
  return bytes;
}

PathfinderSample generate_unchecked(const PathfinderConfig& config, int64_t index, PathfinderTrace* trace_out) {
  DataRng rng(config.seed, static_cast<uint64_t>(index));
  PathfinderSample out;
  PathfinderTrace trace;
  out.label = rng.randint(0, 1);  // drawn first (§5.1), so the label never depends on how placement went
  out.margin = pick(rng, config.paddle_margins);
  ImageBuilder builder(config, out.margin, rng);
  std::array<Snake, 2> targets;
  do {
    if (trace.target_attempts == config.max_target_attempts)
      throw Error("pathfinder: image " + std::to_string(index) + " (seed " + std::to_string(config.seed) +
                  "): two target " + "snakes of " + std::to_string(config.contour_length) +
                  " paddles did not fit in a " + std::to_string(config.window) + "×" + std::to_string(config.window) +
                  " window in " + std::to_string(config.max_target_attempts) +
                  " attempts; this configuration cannot produce images " +
                  "(use shorter snakes, paddles or margins, or a larger window)");
    ++trace.target_attempts;
    builder.reset();
  } while (!builder.place_targets(targets));
  builder.commit(trace);
  builder.add_distractors(trace);
  trace.marked_snake = static_cast<int>(rng.randint(0, 1));  // step 7
  const int terminal_snake = out.label == 1 ? trace.marked_snake : 1 - trace.marked_snake;
  for (int s = 0; s < 2; ++s) {
    trace.origin_tips[size_t(s)] = targets[size_t(s)].origin;
    trace.terminal_tips[size_t(s)] = targets[size_t(s)].tip;
  }
  trace.markers = {targets[size_t(trace.marked_snake)].origin, targets[size_t(terminal_snake)].tip};
  builder.add_marker(trace.markers[0]);
  builder.add_marker(trace.markers[1]);
  out.pixels = builder.to_bytes();
  if (trace_out != nullptr) *trace_out = std::move(trace);
  return out;
}

}  // namespace

PathfinderSample generate_pathfinder_sample(const PathfinderConfig& config, int64_t index, PathfinderTrace* trace) {
  validate_pathfinder_config(config);
  return generate_unchecked(config, index, trace);
}

std::vector<PathfinderSample> generate_pathfinder_samples(const PathfinderConfig& config, int64_t first,
                                                          int64_t count) {
  validate_pathfinder_config(config);
  std::vector<PathfinderSample> samples(size_t(std::max<int64_t>(count, 0)));
  std::vector<std::string> errors(samples.size());
  // Exceptions must not leave an OpenMP region: each image keeps its own message and the lowest index is rethrown.
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < count; ++i) {
    try {
      samples[size_t(i)] = generate_unchecked(config, first + i, nullptr);
    } catch (const std::exception& e) {
      errors[size_t(i)] = e.what();
    }
  }
  for (const std::string& e : errors)
    if (!e.empty()) throw Error(e);
  return samples;
}

}  // namespace mixgrad::data
