// Evaluation of a classifier over a data set: accuracy, mean loss, confusion matrix and per-class accuracy, plus
// the evaluation loop every app runs (validation, test, `eval`).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "apps/data/dataset.h"
#include "engine/tensor.h"
#include "nn/module.h"

namespace mixgrad::app {

struct EvalResult {
  int64_t n = 0, correct = 0;
  double accuracy = 0, loss = 0;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
  std::vector<double> per_class_accuracy;
};

// Counts predictions against labels into an EvalResult.
class ConfusionCounter {
 public:
  explicit ConfusionCounter(int64_t num_classes);
  // Labels must lie in [0, num_classes) (error naming the label otherwise).
  void add(const std::vector<int64_t>& labels, const std::vector<int64_t>& predictions, double loss_sum);
  EvalResult finish() const;

 private:
  int64_t k_;
  EvalResult r_;
  double loss_sum_ = 0;
};

// A batch -> logits [B, classes] on the model's device.
using LogitsFn = std::function<Tensor(const data::Batch&)>;

// Every sample `indices` of `data` in order (evaluation transform, no augmentation), with grad mode off and the
// model in eval mode (restored afterwards). An empty index list is an error (accuracy of nothing means nothing).
EvalResult evaluate(nn::Module& model, const LogitsFn& logits, int64_t num_classes, const data::Dataset& data,
                    std::vector<int64_t> indices, int64_t batch_size);

}  // namespace mixgrad::app
