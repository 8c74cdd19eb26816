// Pathfinder presets and configuration checks (lra.md §5.1).
#include <stdexcept>
#include <string>

#include "apps/data/pathfinder.h"
#include "engine/error.h"

namespace mixgrad::data {
namespace {

int contour_length_of(const std::string& folder) {
  if (folder == "curv_baseline") return 6;
  if (folder == "curv_contour_length_9") return 9;
  return 14;
}

void require(bool ok, const std::string& what) {
  if (!ok) throw Error("pathfinder config: " + what);
}

}  // namespace

std::string pathfinder_difficulty_folder(std::string_view difficulty) {
  if (difficulty == "easy" || difficulty == "curv_baseline") return "curv_baseline";
  if (difficulty == "intermediate" || difficulty == "curv_contour_length_9") return "curv_contour_length_9";
  if (difficulty == "hard" || difficulty == "curv_contour_length_14") return "curv_contour_length_14";
  throw Error("pathfinder: unknown difficulty '" + std::string(difficulty) +
              "', expected easy, intermediate, hard, curv_baseline, curv_contour_length_9 or "
              "curv_contour_length_14");
}

PathfinderConfig pathfinder_preset(int size, std::string_view difficulty) {
  PathfinderConfig c;
  c.difficulty = pathfinder_difficulty_folder(difficulty);
  c.contour_length = contour_length_of(c.difficulty);
  // Python 2 integer division in the public wrapper (lra.md §5.1 note): 14 / 3 → 4, 20 / 4 → 5, 35 / 4 → 8.
  c.distractor_length = c.contour_length / 3;
  if (size == 32) {
    c.num_distractor_snakes = 20 / c.distractor_length;
    return c;  // the struct's defaults are Pathfinder-32
  }
  if (size != 128)
    throw Error("pathfinder: no preset for size " + std::to_string(size) +
                ", expected 32 (Pathfinder-32) or 128 (Path-X)");
  c.window = 128;
  c.paddle_length = 5;
  c.paddle_thickness = 1.5;
  c.paddle_margins = {2, 3};
  c.marker_radius = 3;
  c.seed_distance = 20;
  c.continuity = 1.8;
  c.num_distractor_snakes = 35 / c.distractor_length;
  c.snake_contrasts = {0.9};
  c.paddle_contrasts = {1.0};
  return c;
}

void validate_pathfinder_config(const PathfinderConfig& c) {
  require(c.window >= 8 && c.window <= 4096, "window " + std::to_string(c.window) + " must lie in [8, 4096]");
  require(c.padding >= 1 && 2 * c.padding < c.window,
          "padding " + std::to_string(c.padding) + " must be >= 1 and leave room inside the window");
  require(c.paddle_length >= 1, "paddle_length " + std::to_string(c.paddle_length) + " must be >= 1");
  require(c.antialias_scale >= 1 && c.antialias_scale <= 16, "antialias_scale must lie in [1, 16]");
  require(c.paddle_thickness > 0 && c.paddle_thickness * c.antialias_scale >= 0.5,
          "paddle_thickness " + std::to_string(c.paddle_thickness) + " must cover at least one sub-pixel");
  require(!c.paddle_margins.empty(), "paddle_margins is empty");
  for (int m : c.paddle_margins) require(m >= 1, "paddle margin " + std::to_string(m) + " must be >= 1");
  require(c.marker_radius > 0, "marker_radius must be > 0");
  require(c.seed_distance >= 1 && 4 * c.seed_distance < c.window,
          "seed_distance " + std::to_string(c.seed_distance) + " must be >= 1 and below window / 4 (the first " +
              "target tail keeps 2 · seed_distance from every edge)");
  require(c.continuity > 0, "continuity must be > 0");
  require(c.contour_length >= 1 && c.distractor_length >= 1, "contour and distractor lengths must be >= 1");
  require(c.num_distractor_snakes >= 0, "num_distractor_snakes must be >= 0");
  require(!c.snake_contrasts.empty() && !c.paddle_contrasts.empty(), "contrast lists must not be empty");
  for (double v : c.snake_contrasts) require(v > 0, "snake contrasts must be > 0");
  for (double v : c.paddle_contrasts) require(v > 0, "paddle contrasts must be > 0");
  require(c.seed_attempts >= 1 && c.paddle_attempts >= 1 && c.distractor_attempts >= 1, "attempt limits must be >= 1");
  require(c.max_target_attempts >= 1, "max_target_attempts must be >= 1");
  require(c.num_images >= 0 && c.images_per_batch >= 1, "num_images must be >= 0 and images_per_batch >= 1");
  pathfinder_difficulty_folder(c.difficulty);
}

}  // namespace mixgrad::data
