// The shared training loop: setup (optimiser, schedule, resume), the step, interval logging, validation with best /
// last checkpoints, and the final test and report.
#include "apps/common/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>

#include "apps/common/distributed.h"
#include "apps/common/options.h"
#include "apps/common/thread_governor.h"
#include "apps/data/loader.h"
#include "engine/mixgrad.h"
#include "nn/optim/optimizer.h"

namespace mixgrad::app {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ---- recipe ---------------------------------------------------------------------------------------------------
nn::Metadata Recipe::to_metadata() const {
  return {{"recipe.epochs", std::to_string(epochs)},
          {"recipe.batch_size", std::to_string(batch_size)},
          {"recipe.updates", std::to_string(updates)},
          {"recipe.warmup_steps", std::to_string(warmup_steps)},
          {"recipe.lr", fmt::format("{}", lr)},
          {"recipe.min_lr", fmt::format("{}", min_lr)},
          {"recipe.weight_decay", fmt::format("{}", weight_decay)},
          {"recipe.decay_1d", decay_1d ? "1" : "0"},
          {"recipe.beta1", fmt::format("{}", beta1)},
          {"recipe.beta2", fmt::format("{}", beta2)},
          {"recipe.eps", fmt::format("{}", eps)},
          {"recipe.label_smoothing", fmt::format("{}", label_smoothing)},
          {"recipe.clip_norm", fmt::format("{}", clip_norm)},
          {"recipe.schedule", schedule},
          {"recipe.per_epoch_schedule", per_epoch_schedule ? "1" : "0"},
          {"recipe.seed", std::to_string(seed)},
          {"recipe.train_limit", std::to_string(train_limit)},
          {"recipe.val_limit", std::to_string(val_limit)},
          {"recipe.eval_every", std::to_string(eval_every)}};
}

namespace {
// "<file>: metadata key 'recipe.<key>'" or "<file>: metadata key '<key>'".
std::string file_key(const std::string& file, const std::string& key) {
  return fmt::format("{}: metadata key '{}'", file, key);
}

// One field's range check: "<name> = <value> (expected <what>)".
template <class T>
void check_field(bool ok, const std::string& name, const T& value, const std::string& expected) {
  MIXGRAD_CHECK(ok, "{} = {} (expected {})", name, value, expected);
}
}  // namespace

Recipe Recipe::from_metadata(const nn::Metadata& m, const std::string& f) {
  Recipe r;
  r.epochs = meta_int(m, "recipe.epochs", f);
  r.batch_size = meta_int(m, "recipe.batch_size", f);
  r.warmup_steps = meta_int(m, "recipe.warmup_steps", f);
  r.lr = meta_double(m, "recipe.lr", f);
  r.min_lr = meta_double(m, "recipe.min_lr", f);
  r.weight_decay = meta_double(m, "recipe.weight_decay", f);
  // Checkpoints from before a key existed behaved as its default.
  r.decay_1d = !m.count("recipe.decay_1d") || meta_bool(m, "recipe.decay_1d", f);
  r.beta1 = meta_double(m, "recipe.beta1", f);
  r.beta2 = meta_double(m, "recipe.beta2", f);
  r.eps = meta_double(m, "recipe.eps", f);
  r.label_smoothing = meta_double(m, "recipe.label_smoothing", f);
  r.per_epoch_schedule = meta_bool(m, "recipe.per_epoch_schedule", f);
  r.seed = meta_u64(m, "recipe.seed", f);
  r.train_limit = meta_int(m, "recipe.train_limit", f);
  r.val_limit = meta_int(m, "recipe.val_limit", f);
  if (m.count("recipe.updates")) r.updates = meta_int(m, "recipe.updates", f);
  if (m.count("recipe.clip_norm")) r.clip_norm = meta_double(m, "recipe.clip_norm", f);
  if (m.count("recipe.schedule")) r.schedule = meta_get(m, "recipe.schedule", f);
  if (m.count("recipe.eval_every")) r.eval_every = meta_int(m, "recipe.eval_every", f);
  r.validate([&](const std::string& key) { return file_key(f, "recipe." + key); });
  return r;
}

void Recipe::validate() const {
  validate([](const std::string& key) { return key; });
}

void Recipe::validate(const std::function<std::string(const std::string& key)>& name) const {
  constexpr int64_t kMaxCount = int64_t(1) << 40;  // the command line's bound on step and sample counts
  const auto count = [&](const char* key, int64_t v) {
    check_field(v >= 0 && v <= kMaxCount, name(key), v, "0 .. 2^40");
  };
  const auto unit = [&](const char* key, double v) { check_field(v >= 0 && v < 1, name(key), v, "[0, 1)"); };
  check_field(epochs >= 1 && epochs <= 1000000, name("epochs"), epochs, "1 .. 1000000");
  check_field(batch_size >= 1 && batch_size <= 65536, name("batch_size"), batch_size, "1 .. 65536");
  count("updates", updates);
  count("warmup_steps", warmup_steps);
  count("eval_every", eval_every);
  count("train_limit", train_limit);
  count("val_limit", val_limit);
  check_field(std::isfinite(lr) && lr > 0, name("lr"), lr, "a finite number > 0");
  check_field(std::isfinite(min_lr) && min_lr >= 0, name("min_lr"), min_lr, "a finite number >= 0");
  check_field(std::isfinite(weight_decay) && weight_decay >= 0, name("weight_decay"), weight_decay,
              "a finite number >= 0");
  unit("beta1", beta1);
  unit("beta2", beta2);
  check_field(std::isfinite(eps) && eps > 0, name("eps"), eps, "a finite number > 0");
  unit("label_smoothing", label_smoothing);
  check_field(std::isfinite(clip_norm) && clip_norm >= 0, name("clip_norm"), clip_norm,
              "a finite number >= 0; 0 = off");
  try {
    (void)nn::LrSchedule::parse(schedule);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{} = {}: {}", name("schedule"), schedule, e.what()));
  }
}

int64_t checked_count_product(int64_t a, int64_t b, const std::string& what) {
  int64_t p = 0;
  MIXGRAD_CHECK(a >= 0 && b >= 0 && !__builtin_mul_overflow(a, b, &p), "{}: {} x {} does not fit a 64-bit count", what,
                a, b);
  return p;
}

// ---- the loop -------------------------------------------------------------------------------------------------
namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Sums over an interval (between log lines) or an epoch. loss (Σ loss · batch size, added one step at a time in step
// order), correct, n and steps belong to the training state: a resume restores them, so the log lines after it equal
// an uninterrupted run's. time and units are this process's only.
struct Tally {
  double loss = 0, time = 0;
  int64_t correct = 0, n = 0, units = 0, steps = 0;
  double mean_loss() const { return n ? loss / double(n) : 0.0; }
  double accuracy() const { return n ? double(correct) / double(n) : 0.0; }

  void put(nn::Metadata& m, const std::string& prefix) const {
    m[prefix + "loss_sum"] = fmt::format("{}", loss);  // the shortest text that reads back as the same double
    m[prefix + "correct"] = std::to_string(correct);
    m[prefix + "samples"] = std::to_string(n);
    m[prefix + "steps"] = std::to_string(steps);
  }
  // Absent keys (older states) read as an empty tally.
  static Tally read(const nn::Metadata& m, const std::string& prefix, const std::string& f) {
    Tally t;
    if (!m.count(prefix + "loss_sum")) return t;
    t.loss = meta_double(m, prefix + "loss_sum", f);
    t.correct = meta_int(m, prefix + "correct", f);
    t.n = meta_int(m, prefix + "samples", f);
    t.steps = meta_int(m, prefix + "steps", f);
    check_field(std::isfinite(t.loss) && t.loss >= 0, file_key(f, prefix + "loss_sum"), t.loss,
                "a finite sum of losses >= 0");
    check_field(t.n >= 0, file_key(f, prefix + "samples"), t.n, ">= 0");
    check_field(t.correct >= 0 && t.correct <= t.n, file_key(f, prefix + "correct"), t.correct,
                fmt::format("0 .. {} (the samples)", t.n));
    check_field(t.steps >= 0, file_key(f, prefix + "steps"), t.steps, ">= 0");
    return t;
  }
};

// Losses and predictions of the steps since the last flush, kept on the training device: reading them back each step
// would make the host wait for the GPU every step. flush() reads them in two copies, checks every loss (a non-finite
// one is an error naming its step; flushes happen before every validation and checkpoint, so nothing diverged is
// ever saved) and adds them to the tallies one step at a time, so where the flushes fall changes no sum.
class PendingSteps {
 public:
  // Data-parallel: `loss` is this rank's part of the global batch's mean loss (its loss sum / the global batch
  // size), `pred` and `labels` its rows, `batch` the global batch size and `units` this rank's units; flush() sums
  // them over the ranks.
  void add(Tensor loss, Tensor pred, const std::vector<int64_t>& labels, int64_t batch, int64_t units,
           int64_t global_step) {
    losses_.push_back(reshape(loss, {1}));
    if (pred.numel() > 0) preds_.push_back(std::move(pred));
    labels_.insert(labels_.end(), labels.begin(), labels.end());
    sizes_.push_back(batch);
    units_ += units;
    steps_.push_back(global_step);
  }
  // `where(global step)` describes the step in a divergence message; `diverged(what)` makes that message.
  // Returns the units of the flushed steps (all ranks).
  int64_t flush(Tally& interval, Tally& epoch, const std::function<std::string(int64_t)>& where,
                const std::function<std::string(const std::string&)>& diverged, dist::Communicator& comm) {
    if (losses_.empty()) return 0;
    const std::vector<float> loss_f = cat(losses_, 0).to(kCPU).to_vector<float>();
    const std::vector<int64_t> pred =
        preds_.empty() ? std::vector<int64_t>{} : cat(preds_, 0).to(kCPU).to_vector<int64_t>();
    std::vector<double> loss(loss_f.begin(), loss_f.end());
    std::vector<int64_t> counts{0, units_};
    for (size_t i = 0; i < pred.size(); ++i) counts[0] += pred[i] == labels_[i];
    comm.all_reduce_sum(loss);  // the global batches' mean losses (in double, from each rank's float part)
    comm.all_reduce_sum(counts);
    for (size_t i = 0; i < loss.size(); ++i) {
      if (!std::isfinite(loss[i]))
        throw Error(diverged(fmt::format("the loss is {} at {}", loss[i], where(steps_[i] + 1))));
      for (Tally* t : {&interval, &epoch}) t->loss += loss[i] * double(sizes_[i]), t->n += sizes_[i];
    }
    interval.correct += counts[0], epoch.correct += counts[0];
    interval.units += counts[1], epoch.units += counts[1];
    losses_.clear(), preds_.clear(), labels_.clear(), sizes_.clear(), steps_.clear(), units_ = 0;
    return counts[1];
  }

 private:
  std::vector<Tensor> losses_, preds_;
  std::vector<int64_t> labels_, sizes_, steps_;
  int64_t units_ = 0;
};

class Trainer {
 public:
  Trainer(const TrainTask& task, const Recipe& recipe, const RunOptions& run, const ResumeState* resume);
  TrainSummary run();

 private:
  void restore(const ResumeState& rs);
  void restore_position(const nn::Metadata& m, const std::string& file);
  void restore_optimizer(const ResumeState& rs);
  void discard_previous_run() const;
  void open_metrics(bool resumed);
  void write_config() const;
  bool run_epoch();  // false when --max-steps stopped the run
  void train_step(const data::Batch& b);
  void after_step(bool stop_now);
  void flush_pending();
  void log_interval();
  EvalResult validate();  // sets improved_
  void end_of_epoch(const std::optional<EvalResult>& val);
  nn::Metadata state_metadata() const;
  nn::Metadata view_metadata(const nn::Metadata& extra) const;
  void save_checkpoint();
  void write_views(const nn::NamedTensors& weights);
  std::string diverged(const std::string& what) const;
  TrainSummary summarize(bool stopped) const;
  void finish(TrainSummary& s);
  double lr_at(int64_t step) const;
  bool writer() const { return comm_.is_root(); }  // rank 0 writes files and prints
  void record(const Json& rec);                    // a metrics.jsonl record (rank 0) and its curve point
  EvalResult evaluate_sharded(const data::Dataset& data, const std::vector<int64_t>& idx);
  void say(const std::string& line) const {
    if (!run_.quiet && writer()) std::printf("%s\n", line.c_str()), std::fflush(stdout);
  }
  void add_curve(const Json& r);

  const TrainTask& task_;
  dist::Communicator& comm_ = dist::current();
  std::unique_ptr<dist::GradientBuckets> buckets_;
  Recipe r_;
  RunOptions run_;
  fs::path last_path_, state_path_, best_path_, metrics_path_;
  int64_t steps_per_epoch_ = 0, total_steps_ = 0, params_ = 0;
  std::unique_ptr<nn::AdamW> opt_;
  nn::LrSchedule schedule_;
  int64_t epoch_ = 0, step_in_epoch_ = 0, global_step_ = 0, start_step_ = 0;
  double best_val_ = -1;                     // -1: no validation yet
  int64_t best_step_ = -1, best_epoch_ = 0;  // where best_val_ was found (-1: none, or a state without the key)
  bool best_pending_ = false;                // best.safetensors still to be written from the current weights
  int64_t last_good_step_ = -1;              // the global step of the last committed state (-1: none)
  bool resumed_ = false, improved_ = false;
  Curves curves_;
  std::unique_ptr<MetricsLog> metrics_;
  PendingSteps pending_;
  Tally interval_, epoch_tally_;
  double train_time_ = 0;
  int64_t train_units_ = 0;
  Clock::time_point t_start_, t_interval_, t_epoch_;
  ThreadGovernor governor_;  // the OpenMP thread count on a busy CPU (apps/common/thread_governor.h)
};

Trainer::Trainer(const TrainTask& task, const Recipe& recipe, const RunOptions& run, const ResumeState* resume)
    : task_(task),
      r_(recipe),
      run_(run),
      t_start_(Clock::now()),
      governor_(ThreadGovernor::from_environment(run.adaptive_threads && run.device.is_cpu() && comm_.size() == 1)) {
  MIXGRAD_CHECK(task.model && task.logits && task.train_data && task.test_data, "{}: incomplete training task",
                task.app);
  MIXGRAD_CHECK(run.log_every >= 1, "--log-every must be at least 1");
  r_.validate();
  MIXGRAD_CHECK(!task.train_idx.empty(), "{}: the training set is empty", task.app);
  if (task.validate)
    MIXGRAD_CHECK(!task.val_idx.empty(), "{}: the validation set is empty", task.app);
  else
    MIXGRAD_CHECK(task.val_idx.empty() && r_.eval_every == 0,
                  "{}: a run without validation takes no validation samples and no eval_every (got {} samples, "
                  "eval_every {})",
                  task.app, task.val_idx.size(), r_.eval_every);
  MIXGRAD_CHECK(!task.test_idx.empty(), "{}: the test set is empty", task.app);
  MIXGRAD_CHECK(r_.batch_size % comm_.size() == 0,
                "{}: --batch-size {} is not divisible by the {} processes of this run (each process takes an equal "
                "share of every global batch; expected a multiple of {})",
                task.app, r_.batch_size, comm_.size(), comm_.size());
  last_path_ = run.out_dir / "last.safetensors";
  state_path_ = run.out_dir / "last_state.safetensors";
  best_path_ = run.out_dir / "best.safetensors";
  metrics_path_ = run.out_dir / "metrics.jsonl";
  steps_per_epoch_ = (int64_t(task.train_idx.size()) + r_.batch_size - 1) / r_.batch_size;
  if (r_.updates > 0) r_.epochs = (r_.updates + steps_per_epoch_ - 1) / steps_per_epoch_;
  total_steps_ = r_.updates > 0
                     ? r_.updates
                     : checked_count_product(steps_per_epoch_, r_.epochs, "total steps (steps per epoch x epochs)");
  schedule_ = nn::LrSchedule{nn::LrSchedule::parse(r_.schedule), r_.lr, r_.min_lr, r_.warmup_steps,
                             std::max<int64_t>(total_steps_, 1)};
  task.model->train();
  opt_ = std::make_unique<nn::AdamW>(task.model->parameters(),
                                     AdamWHyper{r_.lr, r_.beta1, r_.beta2, r_.eps, r_.weight_decay}, task.decay);
  params_ = task.model->num_parameters();
  if (writer()) {
    fs::create_directories(run.out_dir);
    if (const int64_t stale = remove_stale_temporaries(run.out_dir))
      say(fmt::format("{}: removed {} stale temporary file(s) of an interrupted save from {}", task.app, stale,
                      run.out_dir.string()));
  }
  if (resume)
    restore(*resume);
  else if (writer())
    discard_previous_run();
  // Data-parallel: every rank starts from rank 0's weights and sums its gradients with the others' in buckets.
  std::vector<Tensor> state;
  for (const auto& [name, t] : task.model->state_dict()) state.push_back(t);
  dist::broadcast_tensors(comm_, state);
  buckets_ = std::make_unique<dist::GradientBuckets>(task.model->parameters());
  if (!writer()) return;
  open_metrics(resume != nullptr);
  if (!resume) write_config();
  if (resume) write_views(host_copies(task.model->state_dict()));  // last / best as the committed state has them
}

void Trainer::restore(const ResumeState& rs) {
  const std::string wf = rs.weights_path.string();
  if (const auto bad = first_non_finite(rs.weights))
    throw Error(fmt::format("{}: {} (a checkpoint never holds non-finite weights: the file is damaged)", wf, *bad));
  try {
    task_.model->load_state_dict(rs.weights, true);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: {}", wf, e.what()));
  }
  restore_position(rs.state_meta, rs.state_path.string());
  restore_optimizer(rs);
  best_pending_ = best_step_ >= 0 && best_step_ == global_step_;  // killed before best.safetensors was written
  if (writer() && best_step_ >= 0 && !best_pending_ && !fs::exists(best_path_))
    say(fmt::format("{}: warning: {} (global step {}) is missing; the next better validation writes it again",
                    task_.app, best_path_.string(), best_step_));
  resumed_ = true;
  last_good_step_ = global_step_;
}

// The training position, each value checked against the recipe (errors name the file and the key).
void Trainer::restore_position(const nn::Metadata& m, const std::string& f) {
  const auto integer = [&](const std::string& key, int64_t lo, int64_t hi) {
    const int64_t v = meta_int(m, key, f);
    check_field(v >= lo && v <= hi, file_key(f, key), v, fmt::format("{} .. {}", lo, hi));
    return v;
  };
  epoch_ = integer("train.epoch", 0, r_.epochs);
  step_in_epoch_ = integer("train.step_in_epoch", 0, steps_per_epoch_);
  global_step_ = integer("train.global_step", 0, total_steps_);
  const int64_t at = checked_count_product(epoch_, steps_per_epoch_, f + ": train.epoch x steps per epoch");
  MIXGRAD_CHECK(at + step_in_epoch_ == global_step_,
                "{} = {} does not match train.epoch {} x {} steps per epoch + train.step_in_epoch {}",
                file_key(f, "train.global_step"), global_step_, epoch_, steps_per_epoch_, step_in_epoch_);
  best_val_ = meta_double(m, "train.best_val_accuracy", f);
  check_field(best_val_ == -1 || (best_val_ >= 0 && best_val_ <= 1), file_key(f, "train.best_val_accuracy"), best_val_,
              "an accuracy in [0, 1], or -1 before the first validation");
  if (m.count("train.best_global_step")) {
    best_step_ = integer("train.best_global_step", best_val_ < 0 ? -1 : 0, best_val_ < 0 ? -1 : global_step_);
    best_epoch_ = integer("train.best_epoch", 0, r_.epochs);
  }
  set_generator_state({meta_u64(m, "train.rng_seed", f), meta_u64(m, "train.rng_offset", f)});
  interval_ = Tally::read(m, "train.interval_", f);
  epoch_tally_ = Tally::read(m, "train.epoch_", f);
}

// The optimiser's moments must be finite (and the second moments >= 0) and its step count the global step.
void Trainer::restore_optimizer(const ResumeState& rs) {
  const std::string f = rs.state_path.string();
  nn::NamedTensors optim_state;
  for (const auto& [name, t] : rs.state_tensors) {
    if (is_floating(t.dtype())) {
      const std::vector<double> v = t.to(DType::f64).to_vector<double>();
      const bool second_moment = starts_with(name, "optim.exp_avg_sq.");
      for (size_t i = 0; i < v.size(); ++i)
        MIXGRAD_CHECK(std::isfinite(v[i]) && (!second_moment || v[i] >= 0),
                      "{}: tensor '{}' holds {} at element {} (expected finite values{})", f, name, v[i], i,
                      second_moment ? " >= 0: a second moment" : "");
    }
    optim_state.emplace_back(name.substr(6), t);
  }
  try {
    opt_->load_state(optim_state);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: {}", f, e.what()));
  }
  MIXGRAD_CHECK(opt_->steps() == global_step_,
                "{}: tensor 'optim.step' = {} but metadata key 'train.global_step' = {} (expected equal: one "
                "optimiser step per global step)",
                f, opt_->steps(), global_step_);
}

// A fresh run (--overwrite) first removes the old run's checkpoints, the commit point first, so that a crash before
// its own first save leaves nothing of the old run to resume.
void Trainer::discard_previous_run() const {
  for (const fs::path& p : {state_path_, last_path_, best_path_, run_.out_dir / "summary.json"}) {
    std::error_code ec;
    fs::remove(p, ec);
    MIXGRAD_CHECK(!ec, "cannot remove {} of the previous run: {}", p.string(), ec.message());
  }
}

void Trainer::add_curve(const Json& r) {
  const double s = r.value("step", 0.0);
  const std::string kind = r.value("kind", "");
  if (kind == "train") {
    curves_.train_loss.push_back({s, r.value("loss", 0.0)});
    curves_.train_acc.push_back({s, r.value("accuracy", 0.0)});
  } else if (kind == "val") {
    curves_.val_loss.push_back({s, r.value("loss", 0.0)});
    curves_.val_acc.push_back({s, r.value("accuracy", 0.0)});
  }
}

void Trainer::record(const Json& rec) {
  if (!writer()) return;
  metrics_->write(rec);
  add_curve(rec);
}

// Each rank evaluates its contiguous part of `idx` (possibly none); the counts and loss sums are summed.
EvalResult Trainer::evaluate_sharded(const data::Dataset& data, const std::vector<int64_t>& idx) {
  const dist::Shard sh = dist::shard_of(int64_t(idx.size()), comm_.rank(), comm_.size());
  EvalResult local;
  if (sh.end > sh.begin)
    local = evaluate(*task_.model, task_.logits, task_.num_classes, data,
                     std::vector<int64_t>(idx.begin() + sh.begin, idx.begin() + sh.end),
                     std::max<int64_t>(r_.batch_size, task_.eval_batch_size));
  return dist::reduce_eval(comm_, local, task_.num_classes);
}

// On resume only the records up to the checkpoint's step are kept.
void Trainer::open_metrics(bool resumed) {
  const fs::path& path = metrics_path_;
  if (resumed) {
    std::string kept;
    for (const Json& r : read_metrics(path))
      if (r.value("step", int64_t(0)) <= global_step_) kept += r.dump() + "\n", add_curve(r);
    write_text_atomic(path, kept);
  }
  metrics_ = std::make_unique<MetricsLog>(path, resumed);
}

void Trainer::write_config() const {
  Json c = task_.config;
  c["params"] = params_;
  c["device"] = run_.device.str();
  c["precision"] = kernels::precision_name(matmul_precision());
  c["steps_per_epoch"] = steps_per_epoch_;
  c["total_steps"] = total_steps_;
  c["train_samples"] = task_.train_idx.size();
  c["val_samples"] = task_.val_idx.size();
  c["test_samples"] = task_.test_idx.size();
  c["checkpoint_layout"] =
      "last_state.safetensors (the commit point): model.* and optim.* tensors, model metadata, recipe.* and train.* "
      "metadata; last/best.safetensors: weights + model metadata";
  write_json_atomic(run_.out_dir / "config.json", c);
}

double Trainer::lr_at(int64_t step) const {
  if (!r_.per_epoch_schedule) return schedule_(step);
  return nn::WarmupCosine{r_.lr, r_.min_lr, 0, r_.epochs}(step / std::max<int64_t>(steps_per_epoch_, 1));
}

nn::Metadata Trainer::view_metadata(const nn::Metadata& extra) const {
  nn::Metadata m = task_.weights_metadata;
  for (const auto& [k, v] : extra) m[k] = v;
  return m;
}

// Everything a resume reads besides the tensors: the model's metadata, the recipe, the position and the open tallies.
nn::Metadata Trainer::state_metadata() const {
  nn::Metadata m = task_.recipe_metadata;
  for (const auto& [k, v] : task_.weights_metadata) {
    MIXGRAD_CHECK(!starts_with(k, "recipe.") && !starts_with(k, "train.") && !m.count(k),
                  "{}: model metadata key '{}' collides with the training state's keys", task_.app, k);
    m[k] = v;
  }
  const GeneratorState g = generator_state();
  m["train.epoch"] = std::to_string(epoch_);
  m["train.step_in_epoch"] = std::to_string(step_in_epoch_);
  m["train.global_step"] = std::to_string(global_step_);
  m["train.best_val_accuracy"] = fmt::format("{}", best_val_);
  m["train.best_global_step"] = std::to_string(best_step_);
  m["train.best_epoch"] = std::to_string(best_epoch_);
  m["train.rng_seed"] = std::to_string(g.seed);
  m["train.rng_offset"] = std::to_string(g.offset);
  interval_.put(m, "train.interval_");
  epoch_tally_.put(m, "train.epoch_");
  return m;
}

// One save: everything checked finite, the metrics so far made durable, then the state committed by one rename
// (apps/common/checkpoint.h), then the last / best views.
void Trainer::save_checkpoint() {
  flush_pending();
  const nn::NamedTensors weights = host_copies(task_.model->state_dict());
  nn::NamedTensors state;
  for (const auto& [name, t] : weights) state.emplace_back("model." + name, t);
  for (const auto& [name, t] : host_copies(opt_->state())) state.emplace_back("optim." + name, t);
  if (const auto bad = first_non_finite(state))
    throw Error(diverged(fmt::format("after global step {} the training state is not finite: {}", global_step_, *bad)));
  if (!writer()) {  // every rank holds the same state; rank 0 commits it
    last_good_step_ = global_step_;
    return;
  }
  fsync_file(metrics_path_);
  commit_tensors(state_path_, state, state_metadata(), run_.save_hook);
  last_good_step_ = global_step_;
  write_views(weights);
}

void Trainer::write_views(const nn::NamedTensors& weights) {
  commit_tensors(last_path_, weights, view_metadata({{"train.global_step", std::to_string(global_step_)}}),
                 run_.save_hook);
  if (!best_pending_) return;
  commit_tensors(best_path_, weights,
                 view_metadata({{"val_accuracy", fmt::format("{}", best_val_)},
                                {"train.epoch", std::to_string(best_epoch_)},
                                {"train.global_step", std::to_string(best_step_)}}),
                 run_.save_hook);
  best_pending_ = false;
}

std::string Trainer::diverged(const std::string& what) const {
  const std::string good = last_good_step_ >= 0 ? fmt::format("the last good checkpoint is {} (global step {})",
                                                              last_path_.string(), last_good_step_)
                                                : std::string("no checkpoint had been saved yet");
  return fmt::format("training diverged: {}; nothing was saved after it; {} (try a lower --lr)", what, good);
}

void Trainer::train_step(const data::Batch& b) {
  const auto t0 = Clock::now();
  const Device dev = run_.device;
  const int64_t global_rows = std::min<int64_t>(
      r_.batch_size, int64_t(task_.train_idx.size()) - step_in_epoch_ * r_.batch_size);  // this global batch's rows
  opt_->zero_grad();
  Tensor loss = zeros({1}, TensorOptions(dev)), pred = zeros({0}, TensorOptions(DType::i64, dev));
  if (b.size > 0) {  // an empty shard (a short last batch over many ranks) adds zero gradients
    Tensor logits = task_.logits(b);
    const Tensor labels = from_vector(b.labels, {b.size}).to(dev);
    // One process: the batch mean as ever. Several: this rank's share of the global mean (sum / global rows),
    // so that the sum over the ranks is the global batch's mean loss and gradient.
    loss = comm_.size() == 1
               ? cross_entropy(logits, labels, -100, r_.label_smoothing)
               : cross_entropy(logits, labels, -100, r_.label_smoothing, "sum") * (1.0 / double(global_rows));
    loss.backward();
    pred = argmax(logits.detach(), 1);
  }
  buckets_->all_reduce(comm_);  // after the backward, before clipping and the optimiser (no-op for one process)
  if (r_.clip_norm > 0) (void)nn::clip_grad_norm(task_.model->parameters(), r_.clip_norm);
  opt_->set_lr(lr_at(global_step_));
  opt_->step();
  // The loss and the predictions stay on the device until the next flush, so the host never waits for the GPU
  // inside an interval and keeps queueing the next steps' kernels.
  const int64_t units = b.size == 0 ? 0 : task_.units ? task_.units(b) : b.size;
  pending_.add(loss.detach(), pred, b.labels, global_rows, units, global_step_);
  ++global_step_, ++step_in_epoch_;
  const double dt = seconds_since(t0);
  train_time_ += dt, interval_.time += dt, epoch_tally_.time += dt;
  ++epoch_tally_.steps;
}

// Flushes the pending losses at every log line and before any stop, then logs.
void Trainer::after_step(bool stop_now) {
  const bool log_now =
      global_step_ % run_.log_every == 0 || step_in_epoch_ == steps_per_epoch_ || global_step_ == total_steps_;
  if (!log_now && !stop_now) return;
  flush_pending();
  if (log_now) log_interval();
}

void Trainer::flush_pending() {
  const auto t0 = Clock::now();
  train_units_ += pending_.flush(
      interval_, epoch_tally_,
      [&](int64_t step) {
        return fmt::format("epoch {}, global step {} ({} steps per epoch)", epoch_ + 1, step, steps_per_epoch_);
      },
      [&](const std::string& what) { return diverged(what); }, comm_);
  const double dt = seconds_since(t0);
  train_time_ += dt, interval_.time += dt, epoch_tally_.time += dt;
}

void Trainer::log_interval() {
  const double iv_s = seconds_since(t_interval_);
  const MemoryStats ms = memory_stats(run_.device);
  const double ups = iv_s > 0 ? double(interval_.units) / iv_s : 0;
  const double per_step = train_time_ / double(std::max<int64_t>(global_step_ - start_step_, 1));
  const double eta = per_step * double(total_steps_ - global_step_);
  say(fmt::format("epoch {}/{} step {}/{} | loss {:.4f} acc {:.2f}% | {:.0f} {}/s | ETA {} | mem {} peak {}",
                  epoch_ + 1, r_.epochs, step_in_epoch_, steps_per_epoch_, interval_.mean_loss(),
                  100.0 * interval_.accuracy(), ups, task_.unit_short, format_duration(eta),
                  format_bytes(ms.bytes_in_use), format_bytes(ms.peak_bytes)));
  Json rec{{"kind", "train"},
           {"epoch", epoch_ + 1},
           {"step", global_step_},
           {"step_in_epoch", step_in_epoch_},
           {"loss", interval_.mean_loss()},
           {"accuracy", interval_.accuracy()},
           {"lr", opt_->lr()},
           {task_.unit + "_per_s", ups},
           {"eta_s", eta},
           {"memory_bytes", ms.bytes_in_use},
           {"peak_memory_bytes", ms.peak_bytes},
           {"wall_s", seconds_since(t_start_)}};
  record(rec);
  interval_ = Tally{};
  t_interval_ = Clock::now();
}

// Validation: a non-finite loss stops the run; a better accuracy marks the current weights as the best, written by
// the save that follows (after the state that records them is committed).
EvalResult Trainer::validate() {
  flush_pending();
  const EvalResult val = evaluate_sharded(*task_.train_data, task_.val_idx);
  if (!std::isfinite(val.loss))
    throw Error(diverged(fmt::format("the validation loss is {} at epoch {}, global step {} (accuracy {:.4f})",
                                     val.loss, epoch_ + 1, global_step_, val.accuracy)));
  improved_ = val.accuracy > best_val_;
  if (improved_) {
    best_val_ = val.accuracy;
    best_step_ = global_step_;
    best_epoch_ = epoch_ + 1;
    best_pending_ = true;
  }
  Json vrec{{"kind", "val"},
            {"epoch", epoch_ + 1},
            {"step", global_step_},
            {"loss", val.loss},
            {"accuracy", val.accuracy},
            {"best_accuracy", best_val_},
            {"wall_s", seconds_since(t_start_)}};
  record(vrec);
  return val;
}

void Trainer::end_of_epoch(const std::optional<EvalResult>& val) {
  const Tally& e = epoch_tally_;
  const std::string val_part = val ? fmt::format(" | val loss {:.4f} acc {:.2f}%{}", val->loss, 100.0 * val->accuracy,
                                                 improved_ ? " (best)" : "")
                                   : std::string();
  if (e.n > 0)
    say(fmt::format("epoch {}/{} done: train loss {:.4f} acc {:.2f}%{} | {:.0f} {}/s, {:.1f} ms/step, epoch {}",
                    epoch_ + 1, r_.epochs, e.mean_loss(), 100.0 * e.accuracy(), val_part,
                    e.time > 0 ? double(e.units) / e.time : 0.0, task_.unit_short,
                    1000.0 * e.time / double(std::max<int64_t>(e.steps, 1)), format_duration(seconds_since(t_epoch_))));
}

// One epoch from the current position; false when --max-steps stopped it.
bool Trainer::run_epoch() {
  data::LoaderConfig lcfg;
  lcfg.batch_size = r_.batch_size;
  lcfg.shuffle = true;
  lcfg.augment = true;
  lcfg.seed = r_.seed;
  lcfg.epoch = uint64_t(epoch_);
  lcfg.start_batch = step_in_epoch_;
  lcfg.shard_rank = comm_.rank(), lcfg.shard_count = comm_.size();
  data::BatchLoader loader(*task_.train_data, task_.train_idx, lcfg);
  if (step_in_epoch_ == 0) epoch_tally_ = Tally{};  // mid-epoch (a resume): the restored sums go on
  t_epoch_ = Clock::now();
  while (global_step_ < total_steps_) {
    if (run_.max_steps > 0 && global_step_ >= run_.max_steps && step_in_epoch_ < steps_per_epoch_) return false;
    std::optional<data::Batch> b = loader.next();
    if (!b) break;
    train_step(*b);
    after_step(run_.max_steps > 0 && global_step_ >= run_.max_steps);
    if (const std::optional<int> threads = governor_.after_step()) say(governor_.describe_change(*threads));
    const bool epoch_over = step_in_epoch_ == steps_per_epoch_ || global_step_ == total_steps_;
    if (!epoch_over && task_.validate && r_.eval_every > 0 && global_step_ % r_.eval_every == 0) {
      const EvalResult val = validate();
      say(fmt::format("step {}: val loss {:.4f} acc {:.2f}%{}", global_step_, val.loss, 100.0 * val.accuracy,
                      improved_ ? " (best)" : ""));
      save_checkpoint();
    }
  }
  std::optional<EvalResult> val;
  if (task_.validate)
    val = validate();
  else
    flush_pending();
  end_of_epoch(val);
  if (step_in_epoch_ == steps_per_epoch_) {
    step_in_epoch_ = 0;
    ++epoch_;  // the checkpoint names the next position
  }
  save_checkpoint();
  return true;
}

TrainSummary Trainer::summarize(bool stopped) const {
  TrainSummary s;
  s.out_dir = run_.out_dir;
  s.global_step = global_step_;
  s.total_steps = total_steps_;
  s.params = params_;
  s.epochs = r_.epochs;
  s.best_val_accuracy = std::max(best_val_, 0.0);
  s.train_units_per_s = train_time_ > 0 ? double(train_units_) / train_time_ : 0;
  s.peak_memory_bytes = memory_stats(run_.device).peak_bytes;
  s.finished = !stopped;
  s.wall_s = seconds_since(t_start_);
  return s;
}

// Test accuracy of the best-validation checkpoint, summary.json, curves.png and report.html.
void Trainer::finish(TrainSummary& s) {
  if (task_.validate && writer() && fs::exists(best_path_)) nn::load_state_dict(*task_.model, best_path_);
  std::vector<Tensor> weights;  // rank 0 read best.safetensors (or holds the final weights); the others get them
  for (const auto& [name, t] : task_.model->state_dict()) weights.push_back(t);
  dist::broadcast_tensors(comm_, weights);
  s.test = evaluate_sharded(*task_.test_data, task_.test_idx);
  s.test_accuracy = s.test.accuracy;
  s.wall_s = seconds_since(t_start_);
  if (!writer()) return;
  Json summary = task_.summary;
  const Json common{{"test_accuracy", s.test_accuracy},
                    {"test_loss", s.test.loss},
                    {"test_samples", s.test.n},
                    {"best_val_accuracy", task_.validate ? Json(s.best_val_accuracy) : Json(nullptr)},
                    {"params", params_},
                    {"device", run_.device.str()},
                    {"precision", kernels::precision_name(matmul_precision())},
                    {"epochs", r_.epochs},
                    {"global_step", global_step_},
                    {"batch_size", r_.batch_size},
                    {"lr", r_.lr},
                    {"train_" + task_.unit + "_per_s", s.train_units_per_s},
                    {"train_time_s_this_process", train_time_},
                    {"peak_memory_bytes", s.peak_memory_bytes},
                    {"wall_s", s.wall_s},
                    {"resumed", resumed_},
                    {"selected_checkpoint", task_.validate ? "best.safetensors (best validation accuracy)"
                                                           : "last.safetensors (the final weights; no validation split)"},
                    {"per_class_accuracy", s.test.per_class_accuracy},
                    {"confusion_matrix", s.test.confusion}};
  summary.update(common);
  write_json_atomic(run_.out_dir / "summary.json", summary);
  const std::vector<uint8_t> png = render_curves_png(curves_);
  write_file(run_.out_dir / "curves.png", png);
  write_text_atomic(run_.out_dir / "report.html", render_report_html(summary, png, task_.class_names));
  say(
      fmt::format("test accuracy: {:.4f} ({} test samples, {}, {} params, {:.0f} train {}/s, wall {}); report: {}",
                  s.test_accuracy, s.test.n,
                  task_.validate ? fmt::format("best-validation checkpoint, val acc {:.4f}", s.best_val_accuracy)
                                 : std::string("final weights, no validation split"),
                  params_, s.train_units_per_s, task_.unit_short,
                  format_duration(s.wall_s), (run_.out_dir / "report.html").string()));
}

TrainSummary Trainer::run() {
  say(task_.describe);
  say(fmt::format("{}: {} epochs x {} steps (batch {}{}), AdamW lr {} ({} schedule) wd {} warm-up {} steps, out {}{}",
                  task_.app, r_.epochs, steps_per_epoch_, r_.batch_size,
                  r_.updates > 0 ? fmt::format(", {} updates", total_steps_) : "", r_.lr, r_.schedule, r_.weight_decay,
                  r_.warmup_steps, run_.out_dir.string(),
                  resumed_ ? fmt::format(", resuming at epoch {} step {}", epoch_ + 1, step_in_epoch_) : ""));
  reset_peak_memory(run_.device);
  start_step_ = global_step_;
  t_interval_ = Clock::now();
  bool stopped = false;
  while (global_step_ < total_steps_ && epoch_ < r_.epochs && !stopped) stopped = !run_epoch();
  if (stopped && last_good_step_ != global_step_) save_checkpoint();
  TrainSummary s = summarize(stopped);
  if (stopped) {
    say(fmt::format("{}: stopped at global step {} of {} (--max-steps); resume with --resume --out {}", task_.app,
                    global_step_, total_steps_, run_.out_dir.string()));
    return s;
  }
  finish(s);
  return s;
}

}  // namespace

TrainSummary train(const TrainTask& task, const Recipe& recipe, const RunOptions& run, const ResumeState* resume) {
  return Trainer(task, recipe, run, resume).run();
}

}  // namespace mixgrad::app
