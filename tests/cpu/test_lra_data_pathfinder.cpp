// LRA Pathfinder data: the gray PNG codec, the generator (determinism, labels, markers on the right tips, geometry),
// the release-tree writer and reader (round trip, bad records) and the 80/10/10 split.
#include <zlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "apps/data/pathfinder.h"
#include "apps/data/png_gray.h"
#include "apps/data/random.h"
#include "tests/common/temp_files.h"

namespace fs = std::filesystem;
using namespace mixgrad::data;
using Catch::Contains;

namespace {

struct TempDir : mixgrad::testing::TempDir {
  TempDir() : mixgrad::testing::TempDir("mixgrad_test_pathfinder_") {}
};
using mixgrad::testing::read_bytes;
using mixgrad::testing::write_bytes;

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  DataRng rng(seed);
  std::vector<uint8_t> v(n);
  for (uint8_t& b : v) b = static_cast<uint8_t>(rng.next_u32());
  return v;
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

void put_chunk(std::vector<uint8_t>& out, const std::string& type, const std::vector<uint8_t>& data) {
  put_be32(out, static_cast<uint32_t>(data.size()));
  std::vector<uint8_t> body(type.begin(), type.end());
  body.insert(body.end(), data.begin(), data.end());
  out.insert(out.end(), body.begin(), body.end());
  put_be32(out, static_cast<uint32_t>(crc32(0L, body.data(), static_cast<uInt>(body.size()))));
}

// A PNG written by hand (valid CRCs), for colour types and depths the project's encoder never produces. `rows` are
// the filtered scanlines (filter byte first); `idat` replaces their compressed form when given.
std::vector<uint8_t> make_png(int w, int h, int depth, int colour, const std::vector<uint8_t>& rows,
                              const std::vector<uint8_t>& plte = {}, const std::vector<uint8_t>* idat = nullptr) {
  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}, ihdr;
  put_be32(ihdr, uint32_t(w));
  put_be32(ihdr, uint32_t(h));
  ihdr.insert(ihdr.end(), {uint8_t(depth), uint8_t(colour), 0, 0, 0});
  put_chunk(out, "IHDR", ihdr);
  if (!plte.empty()) put_chunk(out, "PLTE", plte);
  uLongf size = compressBound(uLong(rows.size()));
  std::vector<uint8_t> z(size);
  REQUIRE(compress(z.data(), &size, rows.data(), uLong(rows.size())) == Z_OK);
  z.resize(size);
  put_chunk(out, "IDAT", idat ? *idat : z);
  put_chunk(out, "IEND", {});
  return out;
}

// Scanlines with filter 0 from `channels` bytes per pixel.
std::vector<uint8_t> raw_rows(int w, int h, int bytes_per_pixel, const std::vector<uint8_t>& px) {
  const size_t stride = size_t(w) * size_t(bytes_per_pixel);
  std::vector<uint8_t> rows(size_t(h) * (stride + 1), 0);  // filter byte 0 leads every row
  for (size_t y = 0; y < size_t(h); ++y)
    for (size_t i = 0; i < stride; ++i) rows[y * (stride + 1) + 1 + i] = px[y * stride + i];
  return rows;
}

GrayDecode decode(const std::vector<uint8_t>& bytes) { return decode_png_gray(bytes); }

}  // namespace

TEST_CASE("png: gray images round-trip bit-exactly at awkward sizes", "[data][png]") {
  const std::vector<std::pair<int, int>> sizes = {{1, 1}, {1, 7}, {7, 1}, {3, 5}, {33, 17}, {32, 32}, {128, 128}};
  for (auto [w, h] : sizes) {
    const std::vector<uint8_t> px = random_bytes(size_t(w) * size_t(h), uint64_t(w * 1000 + h));
    const std::vector<uint8_t> png = encode_png_gray(px, w, h);
    REQUIRE(png.size() > 33);
    CHECK(png[24] == 8);  // IHDR bit depth
    CHECK(png[25] == 0);  // IHDR colour type: gray
    const GrayDecode d = decode(png);
    INFO(w << "x" << h << ": " << d.error);
    REQUIRE(d.ok());
    CHECK((d.image.width == w && d.image.height == h));
    CHECK(d.image.pixels == px);
    CHECK(encode_png_gray(px, w, h) == png);  // deterministic
  }
  CHECK_THROWS_WITH(encode_png_gray(std::vector<uint8_t>(5), 2, 3), Contains("expected 6"));
  CHECK_THROWS_WITH(encode_png_gray({}, 0, 3), Contains("0×3"));
}

TEST_CASE("png: empty, truncated, corrupt and foreign bytes fail with a reason", "[data][png]") {
  const std::vector<uint8_t> good = encode_png_gray(random_bytes(15, 3), 5, 3);
  CHECK_THAT(decode({}).error, Contains("empty"));
  for (size_t n = 1; n < good.size(); ++n) {  // every truncation
    const GrayDecode d = decode(std::vector<uint8_t>(good.begin(), good.begin() + ptrdiff_t(n)));
    INFO("prefix of " << n << " bytes");
    CHECK(!d.ok());
    CHECK(d.image.pixels.empty());
  }
  CHECK_THAT(decode(std::vector<uint8_t>(good.begin(), good.end() - 12)).error, Contains("truncated"));
  CHECK_THAT(decode(random_bytes(300, 9)).error, Contains("not a PNG"));
  std::vector<uint8_t> flipped = good;
  const std::string idat = "IDAT";
  const auto at = std::search(good.begin(), good.end(), idat.begin(), idat.end()) - good.begin();
  REQUIRE(size_t(at) + 6 < good.size());
  flipped[size_t(at) + 6] ^= 0x10;  // a byte of the compressed pixel data
  CHECK_THAT(decode(flipped).error, Contains("CRC mismatch"));
  std::vector<uint8_t> sig_then_garbage(good.begin(), good.begin() + 8);
  const std::vector<uint8_t> junk = random_bytes(100, 4);
  sig_then_garbage.insert(sig_then_garbage.end(), junk.begin(), junk.end());
  CHECK(!decode(sig_then_garbage).ok());
  // Structurally sound files whose content stb_image rejects: its reason is passed on.
  const std::vector<uint8_t> bad_zlib = {0x00, 0x01, 0x02, 0x03};
  CHECK_THAT(decode(make_png(2, 2, 8, 0, raw_rows(2, 2, 1, {1, 2, 3, 4}), {}, &bad_zlib)).error, Contains("stb_image"));
  CHECK_THAT(decode(make_png(4, 4, 8, 0, raw_rows(4, 2, 1, std::vector<uint8_t>(8, 7)))).error,
             Contains("stb_image"));  // two rows of data for a four-row image
  CHECK_THAT(decode(make_png(2, 2, 8, 7, raw_rows(2, 2, 1, {1, 2, 3, 4}))).error, Contains("stb_image"));
}

TEST_CASE("png: RGB, RGBA, gray+alpha, palette and 16-bit images decode to 8-bit gray", "[data][png]") {
  const std::vector<uint8_t> rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 200, 30, 255, 255, 255, 1, 2, 3};
  const std::vector<uint8_t> want = {luma_u8(255, 0, 0),   luma_u8(0, 255, 0),     luma_u8(0, 0, 255),
                                     luma_u8(10, 200, 30), luma_u8(255, 255, 255), luma_u8(1, 2, 3)};
  CHECK(want[0] == 76);  // (299·255 + 500) / 1000 = 76.745 → 76
  CHECK(want[1] == 150);
  CHECK(want[2] == 29);
  CHECK(want[4] == 255);
  GrayDecode d = decode(make_png(3, 2, 8, 2, raw_rows(3, 2, 3, rgb)));
  REQUIRE(d.ok());
  CHECK(d.image.pixels == want);

  std::vector<uint8_t> rgba, ga, index;
  for (size_t i = 0; i < 6; ++i) {
    rgba.insert(rgba.end(), {rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], uint8_t(40 * i)});
    ga.insert(ga.end(), {uint8_t(11 * i), uint8_t(255 - i)});
    index.push_back(uint8_t(5 - i));
  }
  d = decode(make_png(3, 2, 8, 6, raw_rows(3, 2, 4, rgba)));
  REQUIRE(d.ok());
  CHECK(d.image.pixels == want);  // alpha ignored

  d = decode(make_png(3, 2, 8, 4, raw_rows(3, 2, 2, ga)));
  REQUIRE(d.ok());
  CHECK(d.image.pixels == std::vector<uint8_t>{0, 11, 22, 33, 44, 55});

  d = decode(make_png(3, 2, 8, 3, raw_rows(3, 2, 1, index), rgb));  // palette = the six colours above
  REQUIRE(d.ok());
  CHECK(d.image.pixels == std::vector<uint8_t>(want.rbegin(), want.rend()));

  const std::vector<uint8_t> gray16 = {0x12, 0x34, 0xff, 0xff, 0x00, 0x80, 0x7f, 0x01};  // big-endian samples
  d = decode(make_png(2, 2, 16, 0, raw_rows(2, 2, 2, gray16)));
  REQUIRE(d.ok());
  CHECK(d.image.pixels == std::vector<uint8_t>{0x12, 0xff, 0x00, 0x7f});  // high bytes
}

TEST_CASE("pathfinder: presets follow lra.md §5.1", "[data][pathfinder]") {
  const PathfinderConfig pf = pathfinder_preset(32, "hard");
  CHECK((pf.window == 32 && pf.padding == 1 && pf.paddle_length == 2 && pf.paddle_thickness == 0.5));
  CHECK((pf.paddle_margins == std::vector<int>{1} && pf.marker_radius == 1.5 && pf.seed_distance == 7));
  CHECK((pf.continuity == 1.0 && pf.antialias_scale == 2 && pf.contour_length == 14));
  CHECK((pf.distractor_length == 4 && pf.num_distractor_snakes == 5));
  CHECK((pf.snake_contrasts == std::vector<double>{2.0} && pf.paddle_contrasts == std::vector<double>{0.75}));
  CHECK(pf.difficulty == "curv_contour_length_14");
  const PathfinderConfig px = pathfinder_preset(128, "curv_contour_length_14");
  CHECK((px.window == 128 && px.paddle_length == 5 && px.paddle_thickness == 1.5 && px.marker_radius == 3));
  CHECK((px.paddle_margins == std::vector<int>{2, 3} && px.seed_distance == 20 && px.continuity == 1.8));
  CHECK((px.distractor_length == 4 && px.num_distractor_snakes == 8));
  CHECK((px.snake_contrasts == std::vector<double>{0.9} && px.paddle_contrasts == std::vector<double>{1.0}));
  const PathfinderConfig easy = pathfinder_preset(32, "easy"), mid = pathfinder_preset(128, "intermediate");
  CHECK((easy.difficulty == "curv_baseline" && easy.contour_length == 6 && easy.distractor_length == 2));
  CHECK(easy.num_distractor_snakes == 10);
  CHECK((mid.difficulty == "curv_contour_length_9" && mid.contour_length == 9 && mid.num_distractor_snakes == 11));
  CHECK_THROWS_WITH(pathfinder_preset(64, "hard"), Contains("expected 32"));
  CHECK_THROWS_WITH(pathfinder_preset(32, "medium"), Contains("unknown difficulty 'medium'"));
  PathfinderConfig bad = pf;
  bad.seed_distance = 8;  // 2S = 16 from every edge leaves no room in 32 pixels
  CHECK_THROWS_WITH(validate_pathfinder_config(bad), Contains("seed_distance 8"));
}

TEST_CASE("pathfinder: images depend only on (seed, index), never on threads", "[data][pathfinder]") {
  PathfinderConfig c = pathfinder_preset(32, "hard");
  c.seed = 5;
  const std::vector<PathfinderSample> a = generate_pathfinder_samples(c, 10, 24);
  const std::vector<PathfinderSample> b = generate_pathfinder_samples(c, 10, 24);
  REQUIRE(a.size() == 24);
  int differ = 0;
  c.seed = 6;
  const std::vector<PathfinderSample> other = generate_pathfinder_samples(c, 10, 24);
  c.seed = 5;
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].pixels == b[i].pixels);
    CHECK(a[i].label == b[i].label);
    const PathfinderSample alone = generate_pathfinder_sample(c, 10 + int64_t(i));  // sequential, one at a time
    CHECK(alone.pixels == a[i].pixels);
    differ += other[i].pixels != a[i].pixels;
  }
  CHECK(differ == 24);
  CHECK(generate_pathfinder_sample(c, 11).pixels != a[0].pixels);  // another index, another image
}

namespace {

double distance(double y0, double x0, double y1, double x1) { return std::hypot(y1 - y0, x1 - x0); }

// The paddles of snake s in drawing order.
std::vector<PathfinderPaddle> paddles_of(const PathfinderTrace& t, int s) {
  std::vector<PathfinderPaddle> out;
  for (const PathfinderPaddle& p : t.paddles)
    if (p.snake == s) out.push_back(p);
  return out;
}

// Snake s is one chain: each paddle's joined end lies near the growing end of the previous paddle (the seed grows
// from its end, the others from their start), within 2m plus the rounding of the pivots (derived bound 2m + 4√2).
void check_chain(const std::vector<PathfinderPaddle>& snake, int margin) {
  for (size_t k = 1; k < snake.size(); ++k) {
    const PathfinderPaddle &prev = snake[k - 1], &p = snake[k];
    const double gy = k == 1 ? prev.y1 : prev.y0, gx = k == 1 ? prev.x1 : prev.x0;
    INFO("paddle " << k);
    CHECK(distance(p.y1, p.x1, gy, gx) <= 2 * margin + 6.0);
  }
}

// Everything the generator promises about one image, checked through its trace.
void check_image(const PathfinderConfig& c, const PathfinderSample& s, const PathfinderTrace& t) {
  const int w = c.window;
  REQUIRE(s.pixels.size() == size_t(w) * size_t(w));
  REQUIRE((s.label == 0 || s.label == 1));
  CHECK(std::find(c.paddle_margins.begin(), c.paddle_margins.end(), s.margin) != c.paddle_margins.end());
  // Markers: the marked snake's origin tip, then a terminal tip of the same snake iff label 1.
  const int m = t.marked_snake, other = s.label == 1 ? m : 1 - m;
  CHECK(t.markers[0] == t.origin_tips[size_t(m)]);
  CHECK(t.markers[1] == t.terminal_tips[size_t(other)]);
  // A marker fully covers its pixel and the four neighbours (value 1 before scaling by the peak, which no stroke
  // of these presets pushes above 1.5), so all five are at least 255 / 1.5 = 170.
  for (const PathfinderPixel& at : t.markers)
    for (auto [dy, dx] : {std::pair{0, 0}, {-1, 0}, {1, 0}, {0, -1}, {0, 1}})
      CHECK(s.pixels[size_t((at.y + dy) * w + at.x + dx)] >= 170);
  // The tips really are the ends of the target snakes as drawn.
  for (int snake = 0; snake < 2; ++snake) {
    const std::vector<PathfinderPaddle> ps = paddles_of(t, snake);
    REQUIRE(ps.size() == size_t(c.contour_length));
    const PathfinderPixel o = t.origin_tips[size_t(snake)], e = t.terminal_tips[size_t(snake)];
    CHECK((ps.front().y0 == o.y + 0.5 && ps.front().x0 == o.x + 0.5));
    CHECK((ps.back().y0 == e.y + 0.5 && ps.back().x0 == e.x + 0.5));
    check_chain(ps, s.margin);
  }
  const PathfinderPixel o0 = t.origin_tips[0], o1 = t.origin_tips[1];
  CHECK(std::abs(distance(o0.y, o0.x, o1.y, o1.x) - c.seed_distance) <= 1.0);
  for (int d = 2; d < 2 + t.distractors; ++d) CHECK(paddles_of(t, d).size() == size_t(c.distractor_length));
  // Paddles stay inside the unpadded area; only a marker may reach the border ring.
  for (const PathfinderPaddle& p : t.paddles)
    for (double v : {p.y0, p.x0, p.y1, p.x1}) CHECK((v >= c.padding && v <= w - c.padding));
  for (int y = 0; y < w; ++y)
    for (int x = 0; x < w; ++x) {
      if (std::min({y, x, w - 1 - y, w - 1 - x}) >= c.padding || s.pixels[size_t(y * w + x)] == 0) continue;
      bool near_marker = false;
      for (const PathfinderPixel& at : t.markers) near_marker |= distance(y, x, at.y, at.x) <= c.marker_radius + 1.5;
      CHECK(near_marker);
    }
}

}  // namespace

TEST_CASE("pathfinder-32: labels, markers and geometry over 200 images", "[data][pathfinder]") {
  PathfinderConfig c = pathfinder_preset(32, "hard");
  c.seed = 2024;
  int ones = 0, distractors = 0;
  for (int64_t i = 0; i < 200; ++i) {
    PathfinderTrace trace;
    const PathfinderSample s = generate_pathfinder_sample(c, i, &trace);
    INFO("image " << i << " label " << s.label);
    check_image(c, s, trace);
    ones += int(s.label);
    distractors += trace.distractors;
  }
  // Labels are fair coin flips: 200 draws have sd √(200/4) ≈ 7.1, so [60, 140] is ±5.6 sd (P(outside) < 3e-8 for
  // any seed); with the seed fixed the count itself is fixed, the bound only guards against a biased label draw.
  CHECK(ones >= 60);
  CHECK(ones <= 140);
  CHECK(distractors > 200 * 3);  // most of the 5 distractor snakes fit
}

TEST_CASE("path-x: two images satisfy the same promises", "[data][pathfinder]") {
  const PathfinderConfig c = pathfinder_preset(128, "hard");
  for (int64_t i = 0; i < 2; ++i) {
    PathfinderTrace trace;
    const PathfinderSample s = generate_pathfinder_sample(c, i, &trace);
    INFO("image " << i);
    check_image(c, s, trace);
  }
}

TEST_CASE("pathfinder: an impossible configuration fails with a clear error", "[data][pathfinder]") {
  PathfinderConfig c = pathfinder_preset(32, "hard");
  c.contour_length = 60;
  c.max_target_attempts = 30;
  CHECK_THROWS_WITH(generate_pathfinder_sample(c, 0), Contains("did not fit") && Contains("30 attempts"));
  CHECK_THROWS_WITH(generate_pathfinder_samples(c, 0, 3), Contains("image 0"));
}

TEST_CASE("pathfinder: metadata lines have the release's 11 fields", "[data][pathfinder]") {
  PathfinderSample s;
  s.label = 1;
  s.margin = 1;
  CHECK(pathfinder_metadata_line(pathfinder_preset(32, "hard"), 3, 7, s) ==
        "imgs/3 sample_7.png 7 1 1.0 14 4 2 0.5 1 1\n");
  s.label = 0;
  s.margin = 3;
  CHECK(pathfinder_metadata_line(pathfinder_preset(128, "easy"), 0, 0, s) ==
        "imgs/0 sample_0.png 0 0 1.8 6 2 5 1.5 3 1\n");
}

namespace {

std::map<std::string, std::vector<uint8_t>> tree_bytes(const fs::path& root) {
  std::map<std::string, std::vector<uint8_t>> files;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) files[fs::relative(e.path(), root).string()] = read_bytes(e.path());
  return files;
}

PathfinderConfig small_tree_config(int64_t images, int64_t per_batch) {
  PathfinderConfig c = pathfinder_preset(32, "hard");
  c.seed = 77;
  c.num_images = images;
  c.images_per_batch = per_batch;
  return c;
}

}  // namespace

TEST_CASE("pathfinder: written trees read back as generated, byte-identical on re-runs", "[data][pathfinder]") {
  TempDir a, b;
  const PathfinderConfig c = small_tree_config(25, 2);  // batches 0..12: integer order differs from name order
  int64_t last_done = 0;
  write_pathfinder_tree(a.path, c, [&](int64_t done, int64_t total) {
    CHECK(total == 25);
    CHECK(done > last_done);
    last_done = done;
  });
  CHECK(last_done == 25);
  const fs::path dir = a.path / "pathfinder32" / "curv_contour_length_14";
  REQUIRE(fs::is_regular_file(dir / "imgs" / "12" / "sample_0.png"));
  const std::vector<uint8_t> meta = read_bytes(dir / "metadata" / "12.npy");
  CHECK(std::string(meta.begin(), meta.end()) == pathfinder_metadata_line(c, 12, 0, generate_pathfinder_sample(c, 24)));
  for (int b_id = 0; b_id <= 12; ++b_id) {
    const std::vector<uint8_t> text = read_bytes(dir / "metadata" / (std::to_string(b_id) + ".npy"));
    std::istringstream lines(std::string(text.begin(), text.end()));
    int n = 0;
    for (std::string line; std::getline(lines, line); ++n) {
      std::istringstream f(line);
      CHECK(std::distance(std::istream_iterator<std::string>(f), std::istream_iterator<std::string>()) == 11);
    }
    CHECK(n == (b_id == 12 ? 1 : 2));
    CHECK(text.back() == '\n');
  }
  const std::vector<PathfinderSample> want = generate_pathfinder_samples(c, 0, 25);
  for (const fs::path& root : {a.path, a.path / "pathfinder32"}) {
    ReadReport report;
    const SequenceSet set = read_pathfinder_tree(root, 32, "hard", &report);
    REQUIRE(set.size() == 25);
    CHECK((report.records == 25 && report.skipped == 0));
    CHECK((set.num_classes == 2 && set.vocab_size == 256));
    for (int64_t i = 0; i < 25; ++i) {
      CHECK(set.labels[size_t(i)] == want[size_t(i)].label);
      const auto t = set.sample(i);
      CHECK(std::equal(t.begin(), t.end(), want[size_t(i)].pixels.begin(), want[size_t(i)].pixels.end()));
    }
  }
  write_pathfinder_tree(b.path, c);
  const auto first = tree_bytes(a.path);
  CHECK(first.size() == 25 + 13);
  CHECK(tree_bytes(b.path) == first);
  write_pathfinder_tree(a.path, c);  // over an existing tree
  CHECK(tree_bytes(a.path) == first);
}

TEST_CASE("pathfinder reader: bad records are counted and skipped, never fatal", "[data][pathfinder]") {
  TempDir tmp;
  const PathfinderConfig c = small_tree_config(8, 4);
  write_pathfinder_tree(tmp.path, c);
  const fs::path dir = tmp.path / "pathfinder32" / "curv_contour_length_14", imgs = dir / "imgs";
  write_bytes(imgs / "0" / "sample_1.png", {});  // empty file
  const std::vector<uint8_t> png = read_bytes(imgs / "0" / "sample_2.png");
  write_bytes(imgs / "0" / "sample_2.png", std::vector<uint8_t>(png.begin(), png.begin() + 40));    // truncated
  fs::remove(imgs / "1" / "sample_0.png");                                                          // missing
  write_bytes(imgs / "1" / "sample_1.png", encode_png_gray(std::vector<uint8_t>(256, 9), 16, 16));  // wrong size
  {
    std::ofstream meta(dir / "metadata" / "1.npy", std::ios::app);
    meta << "imgs/1 sample_3.png 3\n"                       // too few fields
         << "imgs/1 sample_3.png 3 2 1.0 14 4 2 0.5 1 1\n"  // bad label
         << "\n";                                           // blank: ignored
  }
  write_bytes(dir / "metadata" / "notes.npy", {'x'});
  ReadReport report;
  const SequenceSet set = read_pathfinder_tree(tmp.path, 32, "curv_contour_length_14", &report);
  const std::vector<PathfinderSample> want = generate_pathfinder_samples(c, 0, 8);
  const std::vector<int> kept = {0, 3, 6, 7};
  REQUIRE(set.size() == 4);
  for (size_t i = 0; i < kept.size(); ++i) {
    CHECK(set.labels[i] == want[size_t(kept[i])].label);
    CHECK(
        std::equal(set.sample(int64_t(i)).begin(), set.sample(int64_t(i)).end(), want[size_t(kept[i])].pixels.begin()));
  }
  CHECK(report.records == 10);
  CHECK(report.skipped == 7);
  std::string all;
  for (const std::string& p : report.problems) all += p + "\n";
  INFO(all);
  CHECK_THAT(all, Contains("notes.npy: file name is not"));
  CHECK_THAT(all, Contains("0.npy:2: ") && Contains("empty image file (0 bytes)"));
  CHECK_THAT(all, Contains("0.npy:3: ") && Contains("truncated"));
  CHECK_THAT(all, Contains("1.npy:1: ") && Contains("no such image file"));
  CHECK_THAT(all, Contains("1.npy:2: ") && Contains("image is 16×16, expected 32×32"));
  CHECK_THAT(all, Contains("1.npy:5: 3 fields, expected 11"));
  CHECK_THAT(all, Contains("1.npy:6: label '2' (field 3), expected 0 or 1"));
}

TEST_CASE("pathfinder reader: a missing folder or an unusable tree is an error naming the path", "[data][pathfinder]") {
  TempDir tmp;
  CHECK_THROWS_WITH(read_pathfinder_tree(tmp.path, 32, "hard"),
                    Contains((tmp.path / "pathfinder32" / "curv_contour_length_14" / "metadata").string()) &&
                        Contains("metadata folder not found"));
  write_pathfinder_tree(tmp.path, small_tree_config(2, 2));
  CHECK_THROWS_WITH(read_pathfinder_tree(tmp.path, 32, "easy"), Contains("curv_baseline"));
  const fs::path dir = tmp.path / "pathfinder32" / "curv_contour_length_14";
  fs::remove_all(dir / "imgs");
  ReadReport report;
  CHECK_THROWS_WITH(
      read_pathfinder_tree(tmp.path, 32, "hard", &report),
      Contains(dir.string()) && Contains("no readable Pathfinder sample") && Contains("no such image file"));
  CHECK(report.skipped == 2);
  CHECK_THROWS_WITH(read_pathfinder_tree(tmp.path, 32, "extreme"), Contains("unknown difficulty"));
}

TEST_CASE("pathfinder: the 80/10/10 split is a seeded partition", "[data][pathfinder]") {
  const TrainValTestSplit s = split_pathfinder(1000, 42);
  CHECK((s.train.size() == 800 && s.val.size() == 100 && s.test.size() == 100));
  std::set<int64_t> all(s.train.begin(), s.train.end());
  all.insert(s.val.begin(), s.val.end());
  all.insert(s.test.begin(), s.test.end());
  CHECK(all.size() == 1000);
  CHECK((*all.begin() == 0 && *all.rbegin() == 999));
  CHECK(std::is_sorted(s.train.begin(), s.train.end()));
  CHECK(std::is_sorted(s.test.begin(), s.test.end()));
  CHECK(split_pathfinder(1000, 42).val == s.val);
  CHECK(split_pathfinder(1000, 43).val != s.val);
  CHECK(s.val != std::vector<int64_t>(s.val.size()));
  const int64_t in_first_half = std::count_if(s.test.begin(), s.test.end(), [](int64_t i) { return i < 500; });
  CHECK((in_first_half > 20 && in_first_half < 80));  // shuffled, not a contiguous block
  const TrainValTestSplit tiny = split_pathfinder(7, 1);
  CHECK((tiny.train.size() == 5 && tiny.val.empty() && tiny.test.size() == 2));
  CHECK(split_pathfinder(0, 1).train.empty());
}
