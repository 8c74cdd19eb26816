// The confusion counter and the evaluation loop.
#include "apps/common/metrics.h"

#include "apps/data/loader.h"
#include "engine/error.h"
#include "engine/mixgrad.h"

namespace mixgrad::app {

ConfusionCounter::ConfusionCounter(int64_t num_classes) : k_(num_classes) {
  MIXGRAD_CHECK(k_ >= 1, "ConfusionCounter: {} classes (expected at least 1)", k_);
  r_.confusion.assign(size_t(k_), std::vector<int64_t>(size_t(k_), 0));
}

void ConfusionCounter::add(const std::vector<int64_t>& labels, const std::vector<int64_t>& predictions,
                           double loss_sum) {
  MIXGRAD_CHECK(labels.size() == predictions.size(), "ConfusionCounter: {} labels but {} predictions", labels.size(),
                predictions.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    const int64_t t = labels[i], p = predictions[i];
    MIXGRAD_CHECK(t >= 0 && t < k_, "label {} out of range for a {}-class model", t, k_);
    MIXGRAD_CHECK(p >= 0 && p < k_, "prediction {} out of range for a {}-class model", p, k_);
    ++r_.confusion[size_t(t)][size_t(p)];
    r_.correct += t == p;
    ++r_.n;
  }
  loss_sum_ += loss_sum;
}

EvalResult ConfusionCounter::finish() const {
  EvalResult r = r_;
  r.accuracy = r.n ? double(r.correct) / double(r.n) : 0.0;
  r.loss = r.n ? loss_sum_ / double(r.n) : 0.0;
  for (int64_t c = 0; c < k_; ++c) {
    int64_t tot = 0;
    for (int64_t v : r.confusion[size_t(c)]) tot += v;
    r.per_class_accuracy.push_back(tot ? double(r.confusion[size_t(c)][size_t(c)]) / double(tot) : 0.0);
  }
  return r;
}

EvalResult evaluate(nn::Module& model, const LogitsFn& logits, int64_t num_classes, const data::Dataset& data,
                    std::vector<int64_t> indices, int64_t batch_size) {
  MIXGRAD_CHECK(!indices.empty(), "evaluate: no samples to evaluate (the evaluation set is empty)");
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  ConfusionCounter counter(num_classes);
  data::LoaderConfig cfg;
  cfg.batch_size = batch_size;
  cfg.shuffle = false;
  cfg.augment = false;
  data::BatchLoader loader(data, std::move(indices), cfg);
  while (auto b = loader.next()) {
    const Tensor y = logits(*b);
    const Tensor labels = from_vector(b->labels, {b->size}).to(y.device());
    const double loss = cross_entropy(y, labels, -100, 0.0, "sum").item();
    counter.add(b->labels, argmax(y, 1).to(kCPU).to_vector<int64_t>(), loss);
  }
  if (was_training) model.train();
  return counter.finish();
}

}  // namespace mixgrad::app
