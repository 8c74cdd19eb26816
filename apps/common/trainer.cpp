// The shared training loop: setup (optimiser, schedule, resume), the step, interval logging, validation with best /
// last checkpoints, and the final test and report.
#include "apps/common/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>

#include "apps/common/options.h"
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
  try {
    r.validate();
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: the recorded recipe is invalid: {}", f, e.what()));
  }
  return r;
}

void Recipe::validate() const {
  MIXGRAD_CHECK(epochs >= 1 && epochs <= 1000000, "epochs = {} (expected 1..1000000)", epochs);
  MIXGRAD_CHECK(batch_size >= 1 && batch_size <= 65536, "batch size = {} (expected 1..65536)", batch_size);
  MIXGRAD_CHECK(updates >= 0 && warmup_steps >= 0 && eval_every >= 0 && train_limit >= 0 && val_limit >= 0,
                "updates ({}), warm-up steps ({}), eval_every ({}) and limits must be >= 0", updates, warmup_steps,
                eval_every);
  MIXGRAD_CHECK(std::isfinite(lr) && lr > 0, "lr = {} (expected a finite number > 0)", lr);
  MIXGRAD_CHECK(std::isfinite(min_lr) && min_lr >= 0, "min_lr = {} (expected a finite number >= 0)", min_lr);
  MIXGRAD_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, "weight decay = {} (expected >= 0)", weight_decay);
  MIXGRAD_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "betas ({}, {}) must lie in [0, 1)", beta1, beta2);
  MIXGRAD_CHECK(std::isfinite(eps) && eps > 0, "eps = {} (expected > 0)", eps);
  MIXGRAD_CHECK(label_smoothing >= 0 && label_smoothing < 1, "label smoothing = {} (expected [0, 1))", label_smoothing);
  MIXGRAD_CHECK(std::isfinite(clip_norm) && clip_norm >= 0, "clip norm = {} (expected >= 0; 0 = off)", clip_norm);
  (void)nn::LrSchedule::parse(schedule);
}

// ---- run folders ----------------------------------------------------------------------------------------------
ResumeState read_resume_state(const fs::path& out) {
  ResumeState rs;
  rs.weights_path = out / "last.safetensors";
  rs.state_path = out / "last_state.safetensors";
  MIXGRAD_CHECK(fs::exists(rs.weights_path) && fs::exists(rs.state_path),
                "--resume: {} has no last.safetensors + last_state.safetensors to resume from", out.string());
  rs.state_tensors = nn::load_tensors(rs.state_path, &rs.state_meta);
  (void)nn::load_tensors(rs.weights_path, &rs.weights_meta);
  const std::string a = meta_get(rs.weights_meta, "train.global_step", rs.weights_path.string());
  const std::string b = meta_get(rs.state_meta, "train.global_step", rs.state_path.string());
  MIXGRAD_CHECK(a == b, "--resume: {} (step {}) and {} (step {}) disagree; the run was interrupted while saving",
                rs.weights_path.string(), a, rs.state_path.string(), b);
  return rs;
}

void check_fresh_run_dir(const fs::path& out, bool overwrite) {
  MIXGRAD_CHECK(overwrite || !fs::exists(out / "last.safetensors"),
                "{} already holds a run; pass --resume to continue it, --overwrite to start again, or another --out",
                out.string());
}

// ---- the loop -------------------------------------------------------------------------------------------------
namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Losses and predictions of the steps since the last flush, kept on the training device: reading them back each step
// would make the host wait for the GPU every step. flush() reads them in two copies, checks every loss (a non-finite
// one is an error naming its step; flushes happen before every checkpoint, so nothing diverged is ever saved) and
// returns the interval's sums.
class PendingSteps {
 public:
  struct Totals {
    double loss_sum = 0;  // Σ loss · batch size
    int64_t correct = 0, n = 0;
  };
  void add(Tensor loss, Tensor pred, const std::vector<int64_t>& labels, int64_t batch, int64_t global_step) {
    losses_.push_back(reshape(loss, {1}));
    preds_.push_back(std::move(pred));
    labels_.insert(labels_.end(), labels.begin(), labels.end());
    sizes_.push_back(batch);
    steps_.push_back(global_step);
  }
  Totals flush(int64_t epoch, int64_t steps_per_epoch, const std::string& last_checkpoint) {
    Totals t;
    if (losses_.empty()) return t;
    const std::vector<float> loss = cat(losses_, 0).to(kCPU).to_vector<float>();
    const std::vector<int64_t> pred = cat(preds_, 0).to(kCPU).to_vector<int64_t>();
    for (size_t i = 0; i < loss.size(); ++i) {
      if (!std::isfinite(loss[i]))
        throw Error(fmt::format(
            "training diverged: the loss is {} at epoch {}, global step {} ({} steps per epoch); nothing was saved "
            "after it; the last good checkpoint is {} (try a lower --lr)",
            loss[i], epoch, steps_[i] + 1, steps_per_epoch, last_checkpoint));
      t.loss_sum += double(loss[i]) * double(sizes_[i]);
      t.n += sizes_[i];
    }
    for (size_t i = 0; i < pred.size(); ++i) t.correct += pred[i] == labels_[i];
    losses_.clear(), preds_.clear(), labels_.clear(), sizes_.clear(), steps_.clear();
    return t;
  }

 private:
  std::vector<Tensor> losses_, preds_;
  std::vector<int64_t> labels_, sizes_, steps_;
};

// Sums over an interval (between log lines) or an epoch.
struct Tally {
  double loss = 0, time = 0;
  int64_t correct = 0, n = 0, units = 0, steps = 0;
  void add(const PendingSteps::Totals& t) { loss += t.loss_sum, correct += t.correct, n += t.n; }
  double mean_loss() const { return n ? loss / double(n) : 0.0; }
  double accuracy() const { return n ? double(correct) / double(n) : 0.0; }
};

class Trainer {
 public:
  Trainer(const TrainTask& task, const Recipe& recipe, const RunOptions& run, const ResumeState* resume);
  TrainSummary run();

 private:
  void restore(const ResumeState& rs);
  void open_metrics(bool resumed);
  void write_config() const;
  bool run_epoch();  // false when --max-steps stopped the run
  void train_step(const data::Batch& b);
  void after_step(bool stop_now);
  void log_interval();
  EvalResult validate();  // sets improved_
  void end_of_epoch(const EvalResult& val);
  void save_weights(const fs::path& path, const nn::Metadata& extra) const;
  void save_last() const;
  TrainSummary summarize(bool stopped) const;
  void finish(TrainSummary& s);
  double lr_at(int64_t step) const;
  void say(const std::string& line) const {
    if (!run_.quiet) std::printf("%s\n", line.c_str()), std::fflush(stdout);
  }
  void add_curve(const Json& r);

  const TrainTask& task_;
  Recipe r_;
  RunOptions run_;
  fs::path last_path_, state_path_, best_path_;
  int64_t steps_per_epoch_ = 0, total_steps_ = 0, params_ = 0;
  std::unique_ptr<nn::AdamW> opt_;
  nn::LrSchedule schedule_;
  int64_t epoch_ = 0, step_in_epoch_ = 0, global_step_ = 0, start_step_ = 0;
  double best_val_ = -1;
  bool resumed_ = false, improved_ = false;
  Curves curves_;
  std::unique_ptr<MetricsLog> metrics_;
  PendingSteps pending_;
  Tally interval_, epoch_tally_;
  double train_time_ = 0;
  int64_t train_units_ = 0;
  Clock::time_point t_start_, t_interval_, t_epoch_;
};

Trainer::Trainer(const TrainTask& task, const Recipe& recipe, const RunOptions& run, const ResumeState* resume)
    : task_(task), r_(recipe), run_(run), t_start_(Clock::now()) {
  MIXGRAD_CHECK(task.model && task.logits && task.train_data && task.test_data, "{}: incomplete training task",
                task.app);
  MIXGRAD_CHECK(run.log_every >= 1, "--log-every must be at least 1");
  r_.validate();
  MIXGRAD_CHECK(!task.train_idx.empty(), "{}: the training set is empty", task.app);
  MIXGRAD_CHECK(!task.val_idx.empty(), "{}: the validation set is empty", task.app);
  MIXGRAD_CHECK(!task.test_idx.empty(), "{}: the test set is empty", task.app);
  last_path_ = run.out_dir / "last.safetensors";
  state_path_ = run.out_dir / "last_state.safetensors";
  best_path_ = run.out_dir / "best.safetensors";
  steps_per_epoch_ = (int64_t(task.train_idx.size()) + r_.batch_size - 1) / r_.batch_size;
  if (r_.updates > 0) r_.epochs = (r_.updates + steps_per_epoch_ - 1) / steps_per_epoch_;
  total_steps_ = r_.updates > 0 ? r_.updates : steps_per_epoch_ * r_.epochs;
  schedule_ = nn::LrSchedule{nn::LrSchedule::parse(r_.schedule), r_.lr, r_.min_lr, r_.warmup_steps,
                             std::max<int64_t>(total_steps_, 1)};
  task.model->train();
  opt_ = std::make_unique<nn::AdamW>(task.model->parameters(),
                                     AdamWHyper{r_.lr, r_.beta1, r_.beta2, r_.eps, r_.weight_decay}, task.decay);
  params_ = task.model->num_parameters();
  if (resume) restore(*resume);
  fs::create_directories(run.out_dir);
  open_metrics(resume != nullptr);
  if (!resume) write_config();
}

void Trainer::restore(const ResumeState& rs) {
  nn::load_state_dict(*task_.model, rs.weights_path);
  nn::NamedTensors optim_state;
  for (const auto& [name, t] : rs.state_tensors)
    if (name.rfind("optim.", 0) == 0) optim_state.emplace_back(name.substr(6), t);
  opt_->load_state(optim_state);
  const std::string f = rs.state_path.string();
  epoch_ = meta_int(rs.state_meta, "train.epoch", f);
  step_in_epoch_ = meta_int(rs.state_meta, "train.step_in_epoch", f);
  global_step_ = meta_int(rs.state_meta, "train.global_step", f);
  best_val_ = meta_double(rs.state_meta, "train.best_val_accuracy", f);
  set_generator_state({meta_u64(rs.state_meta, "train.rng_seed", f), meta_u64(rs.state_meta, "train.rng_offset", f)});
  MIXGRAD_CHECK(step_in_epoch_ >= 0 && step_in_epoch_ <= steps_per_epoch_ && epoch_ >= 0 && global_step_ >= 0 &&
                    global_step_ <= total_steps_,
                "{}: position epoch {} step {} (global step {}) does not fit {} steps per epoch, {} in total", f,
                epoch_, step_in_epoch_, global_step_, steps_per_epoch_, total_steps_);
  resumed_ = true;
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

// On resume only the records up to the checkpoint's step are kept.
void Trainer::open_metrics(bool resumed) {
  const fs::path path = run_.out_dir / "metrics.jsonl";
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
  c["steps_per_epoch"] = steps_per_epoch_;
  c["total_steps"] = total_steps_;
  c["train_samples"] = task_.train_idx.size();
  c["val_samples"] = task_.val_idx.size();
  c["test_samples"] = task_.test_idx.size();
  c["checkpoint_layout"] =
      "last/best.safetensors: weights + model metadata; last_state.safetensors: optim.* tensors, recipe.* and "
      "train.* metadata";
  write_json_atomic(run_.out_dir / "config.json", c);
}

double Trainer::lr_at(int64_t step) const {
  if (!r_.per_epoch_schedule) return schedule_(step);
  return nn::WarmupCosine{r_.lr, r_.min_lr, 0, r_.epochs}(step / std::max<int64_t>(steps_per_epoch_, 1));
}

void Trainer::save_weights(const fs::path& path, const nn::Metadata& extra) const {
  nn::Metadata m = task_.weights_metadata;
  for (const auto& [k, v] : extra) m[k] = v;
  nn::save_state_dict(*task_.model, path, m);
}

void Trainer::save_last() const {
  const GeneratorState g = generator_state();
  nn::Metadata m = task_.recipe_metadata;
  m["train.epoch"] = std::to_string(epoch_);
  m["train.step_in_epoch"] = std::to_string(step_in_epoch_);
  m["train.global_step"] = std::to_string(global_step_);
  m["train.best_val_accuracy"] = fmt::format("{}", best_val_);
  m["train.rng_seed"] = std::to_string(g.seed);
  m["train.rng_offset"] = std::to_string(g.offset);
  nn::NamedTensors st;
  for (auto& [name, t] : opt_->state()) st.emplace_back("optim." + name, t);
  nn::save_tensors(state_path_, st, m);
  save_weights(last_path_, {{"train.global_step", std::to_string(global_step_)}});
}

void Trainer::train_step(const data::Batch& b) {
  const auto t0 = Clock::now();
  const Device dev = run_.device;
  Tensor logits = task_.logits(b);
  Tensor loss = cross_entropy(logits, from_vector(b.labels, {b.size}).to(dev), -100, r_.label_smoothing);
  opt_->zero_grad();
  loss.backward();
  if (r_.clip_norm > 0) (void)nn::clip_grad_norm(task_.model->parameters(), r_.clip_norm);
  opt_->set_lr(lr_at(global_step_));
  opt_->step();
  // The loss and the predictions stay on the device until the next flush, so the host never waits for the GPU
  // inside an interval and keeps queueing the next steps' kernels.
  pending_.add(loss.detach(), argmax(logits.detach(), 1), b.labels, b.size, global_step_);
  ++global_step_, ++step_in_epoch_;
  const int64_t units = task_.units ? task_.units(b) : b.size;
  const double dt = seconds_since(t0);
  train_time_ += dt, interval_.time += dt, epoch_tally_.time += dt;
  train_units_ += units, interval_.units += units, epoch_tally_.units += units;
  ++epoch_tally_.steps;
}

// Flushes the pending losses at every log line and before any stop, then logs.
void Trainer::after_step(bool stop_now) {
  const bool log_now =
      global_step_ % run_.log_every == 0 || step_in_epoch_ == steps_per_epoch_ || global_step_ == total_steps_;
  if (!log_now && !stop_now) return;
  const auto t0 = Clock::now();
  const PendingSteps::Totals t = pending_.flush(epoch_ + 1, steps_per_epoch_, last_path_.string());
  const double dt = seconds_since(t0);
  train_time_ += dt, interval_.time += dt, epoch_tally_.time += dt;
  interval_.add(t), epoch_tally_.add(t);
  if (log_now) log_interval();
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
  metrics_->write(rec);
  add_curve(rec);
  interval_ = Tally{};
  t_interval_ = Clock::now();
}

// Validation: keeps the best weights and records the result.
EvalResult Trainer::validate() {
  const EvalResult val = evaluate(*task_.model, task_.logits, task_.num_classes, *task_.train_data, task_.val_idx,
                                  std::max<int64_t>(r_.batch_size, task_.eval_batch_size));
  improved_ = val.accuracy > best_val_;
  if (improved_) {
    best_val_ = val.accuracy;
    save_weights(best_path_, {{"val_accuracy", fmt::format("{}", val.accuracy)},
                              {"train.epoch", std::to_string(epoch_ + 1)},
                              {"train.global_step", std::to_string(global_step_)}});
  }
  Json vrec{{"kind", "val"},
            {"epoch", epoch_ + 1},
            {"step", global_step_},
            {"loss", val.loss},
            {"accuracy", val.accuracy},
            {"best_accuracy", best_val_},
            {"wall_s", seconds_since(t_start_)}};
  metrics_->write(vrec);
  add_curve(vrec);
  return val;
}

void Trainer::end_of_epoch(const EvalResult& val) {
  const Tally& e = epoch_tally_;
  if (e.n > 0)
    say(
        fmt::format("epoch {}/{} done: train loss {:.4f} acc {:.2f}% | val loss {:.4f} acc {:.2f}%{} | {:.0f} {}/s, "
                    "{:.1f} ms/step, epoch {}",
                    epoch_ + 1, r_.epochs, e.mean_loss(), 100.0 * e.accuracy(), val.loss, 100.0 * val.accuracy,
                    improved_ ? " (best)" : "", e.time > 0 ? double(e.units) / e.time : 0.0, task_.unit_short,
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
  data::BatchLoader loader(*task_.train_data, task_.train_idx, lcfg);
  epoch_tally_ = Tally{};
  t_epoch_ = Clock::now();
  while (global_step_ < total_steps_) {
    if (run_.max_steps > 0 && global_step_ >= run_.max_steps && step_in_epoch_ < steps_per_epoch_) return false;
    std::optional<data::Batch> b = loader.next();
    if (!b) break;
    train_step(*b);
    after_step(run_.max_steps > 0 && global_step_ >= run_.max_steps);
    const bool epoch_over = step_in_epoch_ == steps_per_epoch_ || global_step_ == total_steps_;
    if (!epoch_over && r_.eval_every > 0 && global_step_ % r_.eval_every == 0) {
      const EvalResult val = validate();
      say(fmt::format("step {}: val loss {:.4f} acc {:.2f}%{}", global_step_, val.loss, 100.0 * val.accuracy,
                      improved_ ? " (best)" : ""));
      save_last();
    }
  }
  const EvalResult val = validate();
  end_of_epoch(val);
  if (step_in_epoch_ == steps_per_epoch_) {
    step_in_epoch_ = 0;
    ++epoch_;  // the checkpoint names the next position
  }
  save_last();
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
  if (fs::exists(best_path_)) nn::load_state_dict(*task_.model, best_path_);
  s.test = evaluate(*task_.model, task_.logits, task_.num_classes, *task_.test_data, task_.test_idx,
                    std::max<int64_t>(r_.batch_size, task_.eval_batch_size));
  s.test_accuracy = s.test.accuracy;
  s.wall_s = seconds_since(t_start_);
  Json summary = task_.summary;
  const Json common{{"test_accuracy", s.test_accuracy},
                    {"test_loss", s.test.loss},
                    {"test_samples", s.test.n},
                    {"best_val_accuracy", s.best_val_accuracy},
                    {"params", params_},
                    {"device", run_.device.str()},
                    {"epochs", r_.epochs},
                    {"global_step", global_step_},
                    {"batch_size", r_.batch_size},
                    {"lr", r_.lr},
                    {"train_" + task_.unit + "_per_s", s.train_units_per_s},
                    {"train_time_s_this_process", train_time_},
                    {"peak_memory_bytes", s.peak_memory_bytes},
                    {"wall_s", s.wall_s},
                    {"resumed", resumed_},
                    {"selected_checkpoint", "best.safetensors (best validation accuracy)"},
                    {"per_class_accuracy", s.test.per_class_accuracy},
                    {"confusion_matrix", s.test.confusion}};
  summary.update(common);
  write_json_atomic(run_.out_dir / "summary.json", summary);
  const std::vector<uint8_t> png = render_curves_png(curves_);
  write_file(run_.out_dir / "curves.png", png);
  write_text_atomic(run_.out_dir / "report.html", render_report_html(summary, png, task_.class_names));
  say(
      fmt::format("test accuracy: {:.4f} ({} test samples, best-validation checkpoint, val acc {:.4f}, {} params, "
                  "{:.0f} train {}/s, wall {}); report: {}",
                  s.test_accuracy, s.test.n, s.best_val_accuracy, params_, s.train_units_per_s, task_.unit_short,
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
  if (stopped) save_last();
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
