// Pathfinder-32 and Path-X (LRA): generator parameters and presets (lra.md §5.1), the image generator (§5.2), the
// writer and reader of the release's file tree (§3.5) and the seeded 80/10/10 split (§9.3).
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "apps/data/sequences.h"

namespace mixgrad::data {

// Every generator parameter of lra.md §5.1; the defaults are Pathfinder-32 hard. Lists are sampled uniformly.
struct PathfinderConfig {
  int window = 32;                                    // W: images are W × W pixels
  int padding = 1;                                    // width of the border marked occupied
  int paddle_length = 2;                              // L, pixels
  double paddle_thickness = 0.5;                      // t, pixels; the stroke is round(t · a) sub-pixels wide
  std::vector<int> paddle_margins{1};                 // m, one drawn per image (metadata field 9)
  double marker_radius = 1.5;                         // R, pixels
  int seed_distance = 7;                              // S: distance between the two target snakes' first tails
  double continuity = 1.0;                            // κ: higher means straighter snakes
  int antialias_scale = 2;                            // a
  int contour_length = 14;                            // N: paddles per target snake
  int distractor_length = 4;                          // paddles per distractor snake
  int num_distractor_snakes = 5;                      //
  std::vector<double> snake_contrasts{2.0};           // per snake (targets: × paddle contrast)
  std::vector<double> paddle_contrasts{0.75};         // per target paddle step
  int seed_attempts = 3;                              // per seed whose head or pivot falls outside the image
  int paddle_attempts = 3;                            // per extension whose paddle would cross a snake
  int distractor_attempts = 5;                        // per distractor snake
  int64_t max_target_attempts = 20000;                // per image; beyond it the configuration cannot work
  double min_free_fraction = 0.01;                    // no distractor is seeded once less of the image is free
  std::string difficulty = "curv_contour_length_14";  // folder name of the release tree
  int64_t num_images = 200000;                        // images per difficulty folder for LRA-size data
  int64_t images_per_batch = 1000;                    // images per imgs/<batch>/ folder and metadata file
  uint64_t seed = 0;
};

// "easy" / "intermediate" / "hard" or the folder names curv_baseline / curv_contour_length_9 /
// curv_contour_length_14 → the folder name; throws std::invalid_argument naming the accepted values otherwise.
std::string pathfinder_difficulty_folder(std::string_view difficulty);

// The §5.1 preset for size 32 (Pathfinder-32) or 128 (Path-X) and a difficulty as above; throws otherwise.
PathfinderConfig pathfinder_preset(int size, std::string_view difficulty);

// Throws std::invalid_argument naming the first parameter that no image could be drawn with.
void validate_pathfinder_config(const PathfinderConfig& config);

struct PathfinderPixel {
  int y = 0, x = 0;
  friend bool operator==(const PathfinderPixel&, const PathfinderPixel&) = default;
};

// One drawn paddle in image coordinates (pixel (y, x) covers [y, y + 1) × [x, x + 1)): the stroke runs from
// (y0, x0) to (y1, x1). Snakes 0 and 1 are the targets, 2, 3, ... the distractors that were drawn.
struct PathfinderPaddle {
  int snake = 0;
  double y0 = 0, x0 = 0, y1 = 0, x1 = 0;
};

// What the generator did for one image, for tests and debugging. A target snake's paddles are listed seed first;
// the origin tip is its seed paddle's start pixel, the terminal tip its last paddle's start pixel.
struct PathfinderTrace {
  std::array<PathfinderPixel, 2> origin_tips, terminal_tips;  // per target snake
  int marked_snake = 0;                                       // whose origin tip carries the first marker
  std::array<PathfinderPixel, 2> markers;                     // marker centres: origin tip, then the terminal tip
  std::vector<PathfinderPaddle> paddles;
  int64_t target_attempts = 0;  // 1 + restarts
  int distractors = 0;          // distractor snakes drawn
};

struct PathfinderSample {
  int64_t label = 0;            // 1: both markers on one snake
  int margin = 0;               // the paddle margin drawn for this image
  std::vector<uint8_t> pixels;  // W × W, row-major
};

// Image `index` of the data set (§5.2): a function of (config.seed, index) only, so images can be drawn in any order
// or in parallel. Throws std::runtime_error when config.max_target_attempts placements of the targets all fail.
PathfinderSample generate_pathfinder_sample(const PathfinderConfig& config, int64_t index,
                                            PathfinderTrace* trace = nullptr);

// Images first .. first + count - 1, drawn in parallel (OpenMP); identical for any thread count.
std::vector<PathfinderSample> generate_pathfinder_samples(const PathfinderConfig& config, int64_t first, int64_t count);

// The 11-field metadata line (§3.5) of image k of `batch`, ending in '\n'.
std::string pathfinder_metadata_line(const PathfinderConfig& config, int64_t batch, int64_t k,
                                     const PathfinderSample& sample);

// <root>/pathfinder<W>/<difficulty>, the folder holding imgs/ and metadata/.
std::filesystem::path pathfinder_difficulty_dir(const std::filesystem::path& root, int size,
                                                std::string_view difficulty);

// Writes config.num_images images as the release does: <difficulty dir>/imgs/<b>/sample_<k>.png and
// <difficulty dir>/metadata/<b>.npy (plain text). Image i goes to batch i / images_per_batch, k = i mod it. Each
// metadata file is written after its images, through a temporary file and a rename. The same config gives the same
// bytes. `progress(done, total)` is called after every batch.
void write_pathfinder_tree(const std::filesystem::path& root, const PathfinderConfig& config,
                           const std::function<void(int64_t, int64_t)>& progress = {});

// Reads <root>/pathfinder<size>/<difficulty>, where root is the folder holding pathfinder<size>/ (as in the unpacked
// release) or, when it has no such subfolder but holds <difficulty>/, the pathfinder<size> folder itself. Size is
// the image width W (32: Pathfinder-32, 128: Path-X; the release's 64 and 256 trees read the same way). Reads
// metadata/*.npy in integer-stem order, lines in file order, fields 0, 1 and 3 (§3.5). Tokens are the W·W pixel
// intensities 0..255, row-major; labels 0/1. Short lines, bad labels, missing, empty, undecodable or wrongly sized
// images, and unreadable or not integer-named metadata files are skipped and counted in `report` (records = metadata
// lines); a missing metadata folder or a tree without a single readable sample throws, naming the path.
SequenceSet read_pathfinder_tree(const std::filesystem::path& root, int size, std::string_view difficulty,
                                 ReadReport* report = nullptr);

struct TrainValTestSplit {
  std::vector<int64_t> train, val, test;  // sample indices, each list in increasing order
};

// §9.3: a seeded shuffle of 0..n-1 (samples in metadata-file and line order), then the first 80 % train, the next
// 10 % validation, the rest test (floor for train and validation).
TrainValTestSplit split_pathfinder(int64_t n, uint64_t seed);

}  // namespace mixgrad::data
