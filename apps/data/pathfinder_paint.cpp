// Anti-aliased paddles and discs for the Pathfinder generator (see pathfinder_paint.h).
#include "apps/data/pathfinder_paint.h"

#include <algorithm>
#include <cmath>

namespace mixgrad::data::pathfinder_detail {
namespace {

// Sub-pixel centres sit on a lattice of spacing 1/aa, so a stroke edge can fall exactly on a row of them, and
// rounding noise (sin π ≈ 1e-16) would then decide at random which side it lands on. Shifting the half-open
// intervals by far less than a lattice step decides every such tie the same way: an axis-aligned stroke is exactly
// round(thickness · aa) sub-pixels wide whatever its direction.
constexpr double kTie = 1e-7;

// The pixel box [y_lo, y_hi] × [x_lo, x_hi] (clipped to the image) of everything within `reach` of segment a-b.
Patch empty_patch(int height, int width, PointF a, PointF b, double reach) {
  Patch p;
  const int y_lo = std::max(0, static_cast<int>(std::floor(std::min(a.y, b.y) - reach)));
  const int y_hi = std::min(height - 1, static_cast<int>(std::floor(std::max(a.y, b.y) + reach)));
  const int x_lo = std::max(0, static_cast<int>(std::floor(std::min(a.x, b.x) - reach)));
  const int x_hi = std::min(width - 1, static_cast<int>(std::floor(std::max(a.x, b.x) + reach)));
  p.y0 = y_lo;
  p.x0 = x_lo;
  p.h = std::max(0, y_hi - y_lo + 1);
  p.w = std::max(0, x_hi - x_lo + 1);
  p.stroke.assign(size_t(p.h) * size_t(p.w), 0.0f);
  p.foot.assign(p.stroke.size(), 0.0f);
  return p;
}

}  // namespace

Patch paint_paddle(int height, int width, PointF start, double theta, const PaddleShape& shape, float contrast) {
  const double uy = std::sin(theta), ux = std::cos(theta), len = shape.length, hw = shape.half_width;
  const double reach = hw + shape.margin, reach2 = reach * reach + kTie;
  const PointF end{start.y + len * uy, start.x + len * ux};
  Patch p = empty_patch(height, width, start, end, reach);
  const int aa = shape.aa;
  const float cell = 1.0f / float(aa * aa);
  for (int py = 0; py < p.h; ++py)
    for (int px = 0; px < p.w; ++px) {
      int stroke_hits = 0, foot_hits = 0;
      for (int i = 0; i < aa; ++i)
        for (int j = 0; j < aa; ++j) {
          const double dy = p.y0 + py + (i + 0.5) / aa - start.y, dx = p.x0 + px + (j + 0.5) / aa - start.x;
          const double along = dy * uy + dx * ux, across = dx * uy - dy * ux;
          stroke_hits += (along - kTie >= 0 && along - kTie < len && across - kTie >= -hw && across - kTie < hw);
          const double t = std::clamp(along, 0.0, len), ey = dy - t * uy, ex = dx - t * ux;
          foot_hits += (ey * ey + ex * ex <= reach2);
        }
      p.stroke[size_t(py * p.w + px)] = float(stroke_hits) * cell * contrast;
      p.foot[size_t(py * p.w + px)] = float(foot_hits) * cell;
    }
  return p;
}

Patch paint_disc(int height, int width, PointF centre, double radius, int aa) {
  Patch p = empty_patch(height, width, centre, centre, radius);
  const double r2 = radius * radius + kTie;
  const float cell = 1.0f / float(aa * aa);
  for (int py = 0; py < p.h; ++py)
    for (int px = 0; px < p.w; ++px) {
      int hits = 0;
      for (int i = 0; i < aa; ++i)
        for (int j = 0; j < aa; ++j) {
          const double dy = p.y0 + py + (i + 0.5) / aa - centre.y, dx = p.x0 + px + (j + 0.5) / aa - centre.x;
          hits += (dy * dy + dx * dx <= r2);
        }
      p.stroke[size_t(py * p.w + px)] = float(hits) * cell;
    }
  return p;
}

std::vector<SupportRun> paddle_support(double theta, const PaddleShape& shape) {
  // Draw at the centre of a canvas large enough that nothing is clipped, then read the runs back row by row.
  const int r = static_cast<int>(std::ceil(shape.length + shape.half_width + shape.margin)) + 2, size = 2 * r + 1;
  const Patch p = paint_paddle(size, size, PointF{r + 0.5, r + 0.5}, theta, shape, 1.0f);
  std::vector<SupportRun> runs;
  for (int y = 0; y < p.h; ++y)
    for (int x = 0; x < p.w; ++x) {
      if (p.foot[size_t(y * p.w + x)] < 0.5f) continue;
      const int dy = p.y0 + y - r, dx = p.x0 + x - r;
      if (!runs.empty() && runs.back().dy == dy && runs.back().dx_last == dx - 1)
        runs.back().dx_last = dx;
      else
        runs.push_back({dy, dx, dx});
    }
  return runs;
}

}  // namespace mixgrad::data::pathfinder_detail
