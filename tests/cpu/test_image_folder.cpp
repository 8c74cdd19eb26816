// Image folders (apps/data/image_folder.*): JPEG / PNG decoding to grey or RGB, resize of the shorter side + centre
// crop, the folder scan with its errors (missing split, no classes, an empty class, unreadable images skipped and
// named), the per-class split and channel statistics; then a tiny `vit train --dataset folder` run whose class names
// reach the checkpoint, `vit eval` and `vit predict`.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

// Declarations only: the implementations live in apps/data/png_gray.cpp and apps/common/report.cpp.
#include <stb_image_write.h>

#include "apps/common/report.h"
#include "apps/data/image_folder.h"
#include "apps/data/png_gray.h"
#include "apps/vit/vit_app.h"
#include "nn/serialize.h"
#include "tests/common/temp_files.h"

namespace fs = std::filesystem;
using namespace mixgrad;
using Catch::Contains;

namespace {

struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("mixgrad_test_image_folder_") {}
};

void append(void* ctx, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(ctx);
  out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
}

// Interleaved [h, w, c] pixels as PNG or JPEG (quality 95) bytes.
std::vector<uint8_t> encode(const std::vector<uint8_t>& px, int w, int h, int c, bool jpeg) {
  std::vector<uint8_t> out;
  const int ok = jpeg ? stbi_write_jpg_to_func(append, &out, w, h, c, px.data(), 95)
                      : stbi_write_png_to_func(append, &out, w, h, c, px.data(), w * c);
  REQUIRE(ok != 0);
  return out;
}

std::vector<uint8_t> solid_rgb(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  std::vector<uint8_t> px;
  for (int i = 0; i < w * h; ++i) px.insert(px.end(), {r, g, b});
  return px;
}

void write_image(const fs::path& p, const std::vector<uint8_t>& bytes) {
  fs::create_directories(p.parent_path());
  testing::write_bytes(p, bytes);
}

// root/{train,val}/{a,b}: class a is reddish, class b bluish (40 x 32 RGB; one JPEG in train/a), plus a corrupt
// PNG and a text file (ignored) in train/a.
fs::path make_folder(const fs::path& root) {
  for (int i = 0; i < 4; ++i) {
    write_image(root / "train" / "a" / fmt::format("img{}.png", i),
                encode(solid_rgb(40, 32, uint8_t(200 + i), 30, 20), 40, 32, 3, false));
    write_image(root / "train" / "b" / fmt::format("img{}.png", i),
                encode(solid_rgb(32, 40, 10, 40, uint8_t(190 + i)), 32, 40, 3, false));
  }
  write_image(root / "train" / "a" / "photo.JPG", encode(solid_rgb(48, 48, 210, 30, 20), 48, 48, 3, true));
  write_image(root / "train" / "a" / "corrupt.png", {0x89, 'P', 'N', 'G', 1, 2, 3});
  write_image(root / "train" / "a" / "notes.txt", {'h', 'i'});
  for (int i = 0; i < 2; ++i) {
    write_image(root / "val" / "a" / fmt::format("v{}.png", i),
                encode(solid_rgb(36, 36, 205, 30, 20), 36, 36, 3, false));
    write_image(root / "val" / "b" / fmt::format("v{}.png", i),
                encode(solid_rgb(36, 36, 10, 40, 195), 36, 36, 3, false));
  }
  return root;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

int run_vit(std::vector<std::string> args) {
  args.insert(args.begin(), "vit");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return app::vit_main(int(argv.size()), argv.data());
}

}  // namespace

TEST_CASE("image folder: PNG and JPEG decode to RGB or grey; bad bytes give a reason", "[image-folder]") {
  std::vector<uint8_t> px;
  for (int i = 0; i < 6; ++i) px.insert(px.end(), {uint8_t(40 * i), uint8_t(255 - 40 * i), uint8_t(7 * i)});
  const std::vector<uint8_t> png = encode(px, 3, 2, 3, false);
  data::PixelDecode rgb = data::decode_image(png, 3);
  REQUIRE(rgb.ok());
  REQUIRE((rgb.image.width == 3 && rgb.image.height == 2 && rgb.image.channels == 3));
  REQUIRE(rgb.image.pixels == px);
  data::PixelDecode grey = data::decode_image(png, 1);
  REQUIRE(grey.ok());
  for (int i = 0; i < 6; ++i)
    REQUIRE(grey.image.pixels[size_t(i)] ==
            data::luma_u8(px[size_t(3 * i)], px[size_t(3 * i + 1)], px[size_t(3 * i + 2)]));
  // Grey PNG to RGB: replicated.
  const data::PixelDecode rep = data::decode_image(encode({9, 99}, 2, 1, 1, false), 3);
  REQUIRE(rep.image.pixels == std::vector<uint8_t>{9, 9, 9, 99, 99, 99});
  // JPEG is lossy: a flat colour comes back within a few levels.
  const data::PixelDecode jpg = data::decode_image(encode(solid_rgb(16, 16, 200, 60, 30), 16, 16, 3, true), 3);
  REQUIRE(jpg.ok());
  const int want[3] = {200, 60, 30};
  for (size_t i = 0; i < jpg.image.pixels.size(); ++i) REQUIRE(std::abs(int(jpg.image.pixels[i]) - want[i % 3]) <= 4);

  REQUIRE_THAT(data::decode_image(std::vector<uint8_t>{}, 3).error, Contains("empty"));
  REQUIRE_THAT(data::decode_image(std::vector<uint8_t>{1, 2, 3, 4, 5}, 1).error, Contains("stb_image"));
  REQUIRE_THROWS_WITH(data::decode_image(png, 2), Contains("expected 1 or 3"));
}

TEST_CASE("image folder: resize of the shorter side, centre crop, antialiased downscale", "[image-folder]") {
  // 8 x 4 (w x h), left half black, right half white: the shorter side is already 4, so only the crop acts and
  // keeps columns 2..5 exactly.
  data::PixelImage img{8, 4, 1, {}};
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 8; ++x) img.pixels.push_back(x < 4 ? 0 : 255);
  const std::vector<uint8_t> crop = data::resize_center_crop(img, 4);
  REQUIRE(crop.size() == 16);
  for (int y = 0; y < 4; ++y)
    REQUIRE(std::vector<uint8_t>(crop.begin() + 4 * y, crop.begin() + 4 * y + 4) ==
            std::vector<uint8_t>{0, 0, 255, 255});
  // A one-pixel checkerboard halved: every interior output averages the two colours (no aliasing to 0 or 255).
  data::PixelImage board{16, 16, 1, {}};
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) board.pixels.push_back((x + y) % 2 ? 255 : 0);
  const std::vector<uint8_t> half = data::resize_center_crop(board, 8);
  for (int y = 1; y < 7; ++y)
    for (int x = 1; x < 7; ++x) REQUIRE(std::abs(int(half[size_t(8 * y + x)]) - 128) <= 1);
  // RGB, portrait 6 x 12 to 3: planar output, a flat colour stays flat.
  data::PixelImage flat{6, 12, 3, solid_rgb(6, 12, 10, 20, 30)};
  const std::vector<uint8_t> out = data::resize_center_crop(flat, 3);
  REQUIRE(out == std::vector<uint8_t>{10, 10, 10, 10, 10, 10, 10, 10, 10, 20, 20, 20, 20, 20,
                                      20, 20, 20, 20, 30, 30, 30, 30, 30, 30, 30, 30, 30});
  REQUIRE_THROWS_WITH(data::resize_center_crop(flat, 0), Contains("cannot be cropped"));
}

TEST_CASE("image folder: the ImageNet layout is read, unreadable images are skipped and named", "[image-folder]") {
  TempDir tmp;
  const fs::path root = make_folder(tmp / "data");
  const data::ImageFolder f = data::load_image_folder(root, "train", 3, 8);
  REQUIRE(f.class_names == std::vector<std::string>{"a", "b"});
  REQUIRE(f.images.n == 9);  // 5 readable in a (4 PNG + 1 JPEG), 4 in b; notes.txt is not an image file
  REQUIRE((f.images.channels == 3 && f.images.height == 8 && f.images.width == 8 && f.images.num_classes == 2));
  REQUIRE(f.report.files == 10);
  REQUIRE(f.report.skipped == 1);
  REQUIRE(f.report.skipped_examples.size() == 1);
  REQUIRE_THAT(f.report.skipped_examples[0], Contains("corrupt.png"));
  REQUIRE_THAT(data::describe_skipped(f.report, "train"), Contains("1 of 10") && Contains("corrupt.png"));
  REQUIRE(f.images.labels == std::vector<int64_t>{0, 0, 0, 0, 0, 1, 1, 1, 1});
  REQUIRE_THAT(f.files[4], Contains("photo.JPG"));  // sorted: img0..3.png, then photo.JPG
  // A flat image stays flat through the resize: planar R, G, B of the first image of a.
  for (int k = 0; k < 64; ++k) {
    REQUIRE(f.images.image(0)[k] == 200);
    REQUIRE(f.images.image(0)[64 + k] == 30);
    REQUIRE(f.images.image(5)[128 + k] == 190);
  }
  const data::ImageFolder g = data::load_image_folder(root, "val", 1, 5, f.class_names);
  REQUIRE(g.images.n == 4);
  REQUIRE(g.images.image(0)[0] == data::luma_u8(205, 30, 20));

  // Per-class split: the last ceil(10%) of each class validates; statistics per channel.
  const data::TrainValSplit s = data::split_fraction_per_class(f.images.labels, 2, 0.1, f.class_names);
  REQUIRE(s.val == std::vector<int64_t>{4, 8});
  REQUIRE(s.train.size() == 7);
  const data::ChannelStats st = data::channel_stats(g.images);
  REQUIRE(st.mean.size() == 1);
  REQUIRE(st.mean[0] ==
          Approx((2.0 * data::luma_u8(205, 30, 20) + 2.0 * data::luma_u8(10, 40, 195)) / 4 / 255.0).epsilon(1e-4));
  REQUIRE_THROWS_WITH(data::split_fraction_per_class({0, 1, 1}, 2, 0.1, {"x", "y"}),
                      Contains("'x' has 1") && Contains("at least 2"));
}

TEST_CASE("image folder: missing splits, no classes, empty or unreadable classes are clear errors", "[image-folder]") {
  TempDir tmp;
  const fs::path root = make_folder(tmp / "data");
  REQUIRE_THROWS_WITH(data::load_image_folder(tmp / "nowhere", "train", 3, 8),
                      Contains("nowhere") && Contains("missing") && Contains("DIR/train/<class>"));
  fs::create_directories(tmp / "flat" / "val");
  write_image(tmp / "flat" / "val" / "x.png", encode({1}, 1, 1, 1, false));
  REQUIRE_THROWS_WITH(data::load_image_folder(tmp / "flat", "val", 3, 8), Contains("holds no class folders"));
  // Classes of val must be those of train.
  REQUIRE_THROWS_WITH(data::load_image_folder(root, "val", 3, 8, {"a", "b", "c"}), Contains("differ"));
  // An empty class folder.
  fs::create_directories(root / "train" / "c");
  REQUIRE_THROWS_WITH(data::load_image_folder(root, "train", 3, 8),
                      Contains("holds no image files") && Contains((root / "train" / "c").string()));
  // A class whose every image is unreadable.
  write_image(root / "train" / "c" / "broken.jpg", {0xff, 0xd8, 0xff, 0x00});
  REQUIRE_THROWS_WITH(data::load_image_folder(root, "train", 3, 8),
                      Contains("no image of class folder") && Contains("broken.jpg"));
  // predict's file list: an unreadable file is an error naming it.
  REQUIRE_THROWS_WITH(data::load_image_files({root / "train" / "c" / "broken.jpg"}, 1, 4), Contains("broken.jpg"));
  REQUIRE(data::load_image_files({root / "val" / "a"}, 1, 4).images.n == 2);
}

TEST_CASE("vit app: train --dataset folder, class names in the checkpoint, eval and predict by name",
          "[image-folder]") {
  TempDir tmp;
  const fs::path root = make_folder(tmp / "data"), out = tmp / "run";
  // fmnist-tiny takes 28 x 28 grey images: the RGB files are converted and resized.
  REQUIRE(
      run_vit({"train", "--dataset", "folder", "--data",   root.string(), "--preset",  "fmnist-tiny", "--embed-dim",
               "16",    "--depth",   "1",      "--heads",  "2",           "--mlp-dim", "32",          "--batch-size",
               "4",     "--updates", "3",      "--device", "cpu",         "--out",     out.string(),  "--quiet"}) == 0);
  const app::Json summary = app::Json::parse(slurp(out / "summary.json"));
  REQUIRE(summary["dataset"] == "folder");
  REQUIRE(summary["global_step"] == 3);
  REQUIRE(summary["test_samples"] == 4);  // val/ is the test set
  const app::Json config = app::Json::parse(slurp(out / "config.json"));
  REQUIRE(config["data_read"]["train"]["skipped"] == 1);
  REQUIRE(config["train_images"] == 7);  // 9 readable, one per class held out for validation
  nn::Metadata meta;
  (void)nn::load_tensors(out / "best.safetensors", &meta);
  REQUIRE(meta.at("class_names") == R"(["a","b"])");
  REQUIRE(meta.at("in_chans") == "1");
  REQUIRE(app::checkpoint_class_names(meta, 2) == std::vector<std::string>{"a", "b"});

  app::EvalOptions e;
  e.checkpoint = (out / "best.safetensors").string();
  e.dataset = "folder";
  e.data_dir = root.string();
  e.device = "cpu";
  e.quiet = true;
  REQUIRE(app::run_eval(e).accuracy == summary["test_accuracy"].get<double>());

  app::PredictOptions p;
  p.checkpoint = e.checkpoint;
  p.images = (root / "val" / "b").string();
  p.out = (tmp / "pred.safetensors").string();
  p.device = "cpu";
  const std::vector<app::Prediction> pred = app::predict_images(p);
  REQUIRE(pred.size() == 2);
  REQUIRE_THAT(pred[0].source, Contains("v0.png"));
  REQUIRE_THAT(pred[1].source, Contains("v1.png"));
  for (const app::Prediction& x : pred) {
    REQUIRE(x.class_name == (x.class_index == 0 ? "a" : "b"));
    REQUIRE((x.probability >= 0.5 && x.probability <= 1.0));
  }
  const nn::NamedTensors t = nn::load_tensors(p.out);
  REQUIRE(t.size() == 2);
  REQUIRE(t[0].second.shape() == Shape{2, 2});
  // A single image file works too; a folder run without --data is a clear error.
  p.images = (root / "val" / "a" / "v0.png").string();
  p.out.clear();
  REQUIRE(app::predict_images(p).size() == 1);
  app::TrainOptions o;
  o.dataset = "folder";
  o.device = "cpu";
  o.quiet = true;
  o.out_dir = (tmp / "nodata").string();
  REQUIRE_THROWS_WITH(app::run_training(o), Contains("--dataset folder needs --data DIR"));
}
