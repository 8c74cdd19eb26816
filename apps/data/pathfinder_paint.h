// Anti-aliased drawing for the Pathfinder generator: paddles (a stroke plus its margin footprint) and marker discs,
// rendered at antialias_scale× resolution and area-averaged down to pixels (lra.md §5.2 steps 1 and 7).
#pragma once
#include <cstddef>
#include <vector>

namespace mixgrad::data::pathfinder_detail {

// Image coordinates: pixel (y, x) covers [y, y + 1) × [x, x + 1), so its centre is (y + 0.5, x + 0.5).
struct PointF {
  double y = 0, x = 0;
};

// Pixel values of one drawing, restricted to the image: rows [y0, y0 + h), columns [x0, x0 + w), row-major.
// `stroke` is the drawn intensity (coverage × contrast), `foot` the coverage of the footprint (0 when unused).
struct Patch {
  int y0 = 0, x0 = 0, h = 0, w = 0;
  std::vector<float> stroke, foot;
  float stroke_at(int y, int x) const { return stroke[size_t((y - y0) * w + (x - x0))]; }
  float foot_at(int y, int x) const { return foot[size_t((y - y0) * w + (x - x0))]; }
};

struct PaddleShape {
  double length = 2;      // L, pixels
  double half_width = 0;  // round(thickness · aa) / (2 · aa), pixels
  double margin = 1;      // footprint reach beyond the stroke, pixels
  int aa = 2;             // antialias scale
};

// A paddle from `start` along angle theta (dir = (sin θ, cos θ)) in a height × width image. The stroke is the
// rectangle {0 <= along < L, |across| <= half_width}; the footprint is the capsule of radius half_width + margin
// around the segment (the stroke dilated by a disc of radius margin). Both are sampled at aa × aa sub-pixel centres.
Patch paint_paddle(int height, int width, PointF start, double theta, const PaddleShape& shape, float contrast);

// A filled disc of the given radius (coverage, peak 1), sampled like the paddles.
Patch paint_disc(int height, int width, PointF centre, double radius, int aa);

// Where the footprint of a paddle starting at a pixel centre covers at least half a pixel, as runs of pixels
// relative to the start pixel: row dy, columns dx_first..dx_last. It is the structuring element the seeding step
// dilates the occupancy map with; runs make that test cost one lookup per row instead of one per pixel.
struct SupportRun {
  int dy = 0, dx_first = 0, dx_last = 0;
};
std::vector<SupportRun> paddle_support(double theta, const PaddleShape& shape);

}  // namespace mixgrad::data::pathfinder_detail
