// The LRA task table, the generated-data cache, and each task's reader and split.
#include "apps/lra/lra_tasks.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <numeric>

#include "apps/data/cifar_gray.h"
#include "apps/data/file_bytes.h"
#include "apps/data/lra_text.h"
#include "engine/error.h"

namespace mixgrad::app::lra {

namespace fs = std::filesystem;

const std::vector<TaskInfo>& tasks() {
  static const std::vector<TaskInfo> table = {
      {"listops",
       "ListOps: the value (0-9) of a nested MIN/MAX/MED/SM expression",
       false,
       data::kListOpsVocab,
       10,
       0,
       false,
       true,
       "a folder with basic_{train,val,test}.tsv (the release's listops-1000/, or generated)",
       {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
      {"text",
       "Text: IMDb review sentiment from raw bytes",
       false,
       data::kByteVocab,
       2,
       0,
       false,
       false,
       "the aclImdb/ folder of the IMDb release (or the folder holding it)",
       {"negative", "positive"}},
      {"retrieval",
       "Retrieval: do two ACL papers cite each other (AAN), from raw bytes",
       false,
       data::kByteVocab,
       2,
       0,
       true,
       false,
       "a folder with new_aan_pairs.{train,eval,test}.tsv (the release's tsv_data/)",
       {"not linked", "linked"}},
      {"image",
       "Image: CIFAR-10 classes from grey-level pixels, row by row",
       true,
       data::kGrayVocab,
       10,
       32,
       false,
       false,
       "the CIFAR-10 binary release (data_batch_1..5.bin, test_batch.bin)",
       {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}},
      {"pathfinder",
       "Pathfinder-32: are the two dots on one path (32x32 pixels)",
       true,
       256,
       2,
       32,
       false,
       true,
       "the folder holding pathfinder32/ (or pathfinder32/ itself; release or generated)",
       {"different paths", "same path"}},
      {"pathx",
       "Path-X: Pathfinder at 128x128 pixels (16,384 tokens)",
       true,
       256,
       2,
       128,
       false,
       true,
       "the folder holding pathfinder128/ (or pathfinder128/ itself; release or generated)",
       {"different paths", "same path"}},
  };
  return table;
}

std::vector<std::string> task_names() {
  std::vector<std::string> n;
  for (const TaskInfo& t : tasks()) n.push_back(t.name);
  return n;
}

const TaskInfo& task_info(const std::string& name) {
  for (const TaskInfo& t : tasks())
    if (t.name == name) return t;
  throw Error(fmt::format("unknown LRA task \"{}\" (known: {})", name, fmt::join(task_names(), ", ")));
}

// ---- generated data -------------------------------------------------------------------------------------------
namespace {

// Every generator parameter of `task`, one "key=value" per line: what a generated folder is named after and stamped
// with.
std::string generator_params(const std::string& task, const GeneratorConfig& g) {
  if (task == "listops") {
    const data::ListOpsConfig& c = g.listops;
    return fmt::format(
        "task=listops\nmin_length={}\nmax_length={}\nmax_depth={}\nmax_args={}\nvalue_p={}\ntrain={}\n"
        "val={}\ntest={}\nseed={}\n",
        c.min_length, c.max_length, c.max_depth, c.max_args, c.value_p, c.train, c.val, c.test, c.seed);
  }
  const data::PathfinderConfig& c = g.pathfinder;
  return fmt::format(
      "task={}\nwindow={}\ncontour_length={}\ndistractor_length={}\ndistractors={}\nmargins={}\n"
      "continuity={}\ndifficulty={}\nimages={}\nper_batch={}\nseed={}\n",
      task, c.window, c.contour_length, c.distractor_length, c.num_distractor_snakes, fmt::join(c.paddle_margins, ","),
      c.continuity, c.difficulty, c.num_images, c.images_per_batch, c.seed);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

}  // namespace

std::string generated_name(const std::string& task, const GeneratorConfig& g) {
  return fmt::format("{}-{:016x}", task, fnv1a(generator_params(task, g)));
}

void generate_task_data(const std::string& task, const GeneratorConfig& g, const fs::path& dir,
                        const std::function<void(const std::string&)>& say) {
  const TaskInfo& info = task_info(task);
  MIXGRAD_CHECK(info.generated, "lra generate: task {} has no generator (its data come from the release: {})", task,
                info.data_layout);
  fs::create_directories(dir);
  if (task == "listops") {
    const data::ListOpsConfig& c = g.listops;
    say(fmt::format("lra: generating ListOps ({} / {} / {} samples, lengths {}..{}, seed {}) into {}", c.train, c.val,
                    c.test, c.min_length + 1, c.max_length - 1, c.seed, dir.string()));
    const data::ListOpsStats st = data::write_listops_tsv(dir, c);
    say(fmt::format("lra: ListOps done: {} trees drawn, {} too short, {} too long, {} duplicates", st.draws,
                    st.too_short, st.too_long, st.duplicates));
    return;
  }
  data::PathfinderConfig c = g.pathfinder;
  MIXGRAD_CHECK(c.window == info.image_size, "lra generate: task {} needs {}x{} images, the generator is set to {}",
                task, info.image_size, info.image_size, c.window);
  say(fmt::format("lra: generating {} ({} images of {}x{}, {}, seed {}) into {}", task, c.num_images, c.window,
                  c.window, c.difficulty, c.seed, dir.string()));
  int64_t last_pct = -1;
  data::write_pathfinder_tree(dir, c, [&](int64_t done, int64_t total) {
    const int64_t pct = total > 0 ? 100 * done / total : 100;
    if (pct / 10 != last_pct / 10) say(fmt::format("lra: {} / {} images", done, total));
    last_pct = pct;
  });
}

fs::path default_cache_dir() {
  if (const char* d = std::getenv("MIXGRAD_DATA_DIR"); d && *d) return fs::path(d);
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return fs::path(d) / "mixgrad";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "mixgrad";
  return fs::temp_directory_path() / "mixgrad-cache";
}

fs::path ensure_generated(const std::string& task, const GeneratorConfig& g, const fs::path& cache,
                          const std::function<void(const std::string&)>& say) {
  const fs::path dir = cache / "lra" / generated_name(task, g);
  const std::string params = generator_params(task, g);
  if (fs::exists(dir / "generator.txt")) {
    const std::vector<uint8_t> bytes = data::read_file_bytes(dir / "generator.txt");  // a regular file, or an error
    const std::string stamp(bytes.begin(), bytes.end());
    MIXGRAD_CHECK(stamp == params,
                  "{}: generator.txt does not match the generator settings of this run (remove the "
                  "folder to regenerate it)",
                  dir.string());
    return dir;
  }
  MIXGRAD_CHECK(!fs::exists(dir),
                "{} exists but holds no generator.txt: not a complete generated data set (remove "
                "it to regenerate)",
                dir.string());
  const fs::path tmp = dir.string() + fmt::format(".partial-{}", ::getpid());
  fs::remove_all(tmp);
  generate_task_data(task, g, tmp, say);
  {
    std::ofstream out(tmp / "generator.txt", std::ios::binary);
    out << params;
    MIXGRAD_CHECK(out.good(), "cannot write {}", (tmp / "generator.txt").string());
  }
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec && fs::exists(dir / "generator.txt")) {  // another process finished the same data set first
    fs::remove_all(tmp);
    return dir;
  }
  MIXGRAD_CHECK(!ec, "cannot rename {} to {}: {}", tmp.string(), dir.string(), ec.message());
  return dir;
}

// ---- reading --------------------------------------------------------------------------------------------------
namespace {

std::vector<int64_t> range(int64_t begin, int64_t end) {
  std::vector<int64_t> v(size_t(std::max<int64_t>(end - begin, 0)));
  std::iota(v.begin(), v.end(), begin);
  return v;
}

// `dir`, or its subfolder `sub` when `file` is found only there (the release's nested layouts).
fs::path locate(const fs::path& dir, const std::string& sub, const std::string& file) {
  if (!fs::exists(dir / file) && fs::exists(dir / sub / file)) return dir / sub;
  return dir;
}

// Train and validation read separately: validation appended after training in one set.
void join_train_val(TaskData& t, data::SequenceSet train, const data::SequenceSet& val) {
  t.train_set = std::move(train);
  const int64_t first_val = t.train_set.append(val);
  t.train_idx = range(0, first_val);
  t.val_idx = range(first_val, t.train_set.size());
}

TaskData load_listops(const fs::path& dir, int64_t max_len) {
  const fs::path d = locate(dir, "listops-1000", "basic_train.tsv");
  TaskData t;
  join_train_val(t, data::read_listops_tsv(d / "basic_train.tsv", max_len, &t.report, &t.truncated),
                 data::read_listops_tsv(d / "basic_val.tsv", max_len, &t.report, &t.truncated));
  t.test_set = data::read_listops_tsv(d / "basic_test.tsv", max_len, &t.report, &t.truncated);
  t.test_idx = range(0, t.test_set.size());
  t.split = "basic_train.tsv / basic_val.tsv / basic_test.tsv as given";
  return t;
}

TaskData load_text(const fs::path& dir, int64_t max_len) {
  TaskData t;
  t.train_set = data::read_imdb_tree(dir, "train", max_len, &t.report, &t.truncated);
  const data::TrainValSplit s = data::imdb_validation_split(t.train_set, 0.1);
  t.train_idx = s.train, t.val_idx = s.val;
  t.test_set = data::read_imdb_tree(dir, "test", max_len, &t.report, &t.truncated);
  t.test_idx = range(0, t.test_set.size());
  t.split = "validation: the last 10 % of each class's sorted training files (spec §9.2); test: the test split";
  return t;
}

TaskData load_retrieval(const fs::path& dir, int64_t max_len) {
  const fs::path d = locate(dir, "tsv_data", "new_aan_pairs.train.tsv");
  TaskData t;
  join_train_val(t, data::read_aan_tsv(d / "new_aan_pairs.train.tsv", max_len, &t.report, &t.truncated),
                 data::read_aan_tsv(d / "new_aan_pairs.eval.tsv", max_len, &t.report, &t.truncated));
  t.test_set = data::read_aan_tsv(d / "new_aan_pairs.test.tsv", max_len, &t.report, &t.truncated);
  t.test_idx = range(0, t.test_set.size());
  t.split = "new_aan_pairs.train / eval / test as given";
  return t;
}

TaskData load_image(const fs::path& dir) {
  TaskData t;
  t.train_set = data::load_cifar10_gray(dir, true);
  // LRA's train[:90%] / train[90%:]: of the release's 50,000 images, 0..44,999 train and 45,000..49,999 validate.
  const int64_t n = t.train_set.size(), n_val = n / 10;
  MIXGRAD_CHECK(n_val >= 1, "{}: {} training images are too few to hold out a tenth for validation", dir.string(), n);
  t.train_idx = range(0, n - n_val), t.val_idx = range(n - n_val, n);
  t.test_set = data::load_cifar10_gray(dir, false);
  t.test_idx = range(0, t.test_set.size());
  t.split = fmt::format(
      "training images 0..{} train, {}..{} validation (the last tenth, spec §3.4); test_batch.bin "
      "test",
      n - n_val - 1, n - n_val, n - 1);
  return t;
}

TaskData load_pathfinder(const TaskInfo& task, const fs::path& dir, const std::string& difficulty,
                         uint64_t split_seed) {
  TaskData t;
  t.train_set = data::read_pathfinder_tree(dir, int(task.image_size), difficulty, &t.report);
  const data::TrainValTestSplit s = data::split_pathfinder(t.train_set.size(), split_seed);
  t.train_idx = s.train, t.val_idx = s.val, t.test_idx = s.test;
  t.test_in_train_set = true;
  t.split = fmt::format("{}: 80/10/10 after a shuffle with split seed {} (spec §9.3)",
                        data::pathfinder_difficulty_folder(difficulty), split_seed);
  return t;
}

}  // namespace

TaskData load_task_data(const TaskInfo& task, const fs::path& dir, int64_t max_len, const std::string& difficulty,
                        uint64_t split_seed) {
  MIXGRAD_CHECK(fs::is_directory(dir), "--data {}: no such folder (task {} expects {})", dir.string(), task.name,
                task.data_layout);
  if (task.pixels)
    MIXGRAD_CHECK(max_len == task.image_size * task.image_size,
                  "task {}: the sequence length is fixed at {} pixels ({}x{}), got max_len {}", task.name,
                  task.image_size * task.image_size, task.image_size, task.image_size, max_len);
  TaskData t;
  if (task.name == "listops") t = load_listops(dir, max_len);
  if (task.name == "text") t = load_text(dir, max_len);
  if (task.name == "retrieval") t = load_retrieval(dir, max_len);
  if (task.name == "image") t = load_image(dir);
  if (task.name == "pathfinder" || task.name == "pathx") t = load_pathfinder(task, dir, difficulty, split_seed);
  return t;
}

}  // namespace mixgrad::app::lra
