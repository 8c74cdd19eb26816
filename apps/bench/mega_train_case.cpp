// bench --mega-train: MEGA training steps on random tokens (apps/bench/mega_train_case.h).
#include "apps/bench/mega_train_case.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "engine/mixgrad.h"
#include "models/lra_model.h"
#include "nn/optim/optimizer.h"

namespace mixgrad::bench {

models::LraConfig mega_train_config(const MegaTrainOptions& o) {
  models::LraConfig c;
  c.model = "mega";
  c.mixer = "gated";
  c.task = "listops";  // recorded only; the sizes below are what counts
  c.input = "tokens";
  c.vocab_size = o.vocab;
  c.num_classes = o.classes;
  c.max_len = o.length;
  c.embed_dim = o.embed_dim, c.depth = o.layers, c.zdim = o.zdim, c.hdim = o.hdim, c.mlp_dim = o.ffn;
  c.head_dim = o.cls_out > 0 ? o.cls_out : 2 * o.embed_dim;
  c.ema_ndim = o.ndim, c.truncation = o.truncation, c.chunk = o.chunk;
  c.attn_fn = o.attention, c.norm = o.norm, c.prenorm = o.prenorm;
  c.pool = "mean", c.pos = "none";
  c.dropout = o.dropout, c.attn_dropout = 0.0, c.hidden_dropout = o.act_dropout;
  c.ln_eps = 1e-5;  // MEGA's norms
  c.validate();
  return c;
}

std::string mega_train_shape(const MegaTrainOptions& o) {
  return fmt::format("[{}, {}] d={} z={} v={} ffn={} layers={} ndim={} trunc={} chunk={} {} {}{}", o.batch, o.length,
                     o.embed_dim, o.zdim, o.hdim, o.ffn, o.layers, o.ndim, o.truncation, o.chunk, o.attention, o.norm,
                     o.prenorm ? " prenorm" : "");
}

namespace {

struct Batch {
  Tensor tokens, lengths, labels;  // int64 [B, L], int32 [B], int64 [B] on the CPU
};

std::vector<Batch> make_batches(const MegaTrainOptions& o, int count) {
  std::vector<Batch> out;
  for (int i = 0; i < count; ++i) {
    NoGradGuard ng;
    Batch b;
    // U[0, 1) scaled to the ids 1..vocab−1 and labels 0..classes−1 (floor), drawn from the engine's generator.
    const Tensor u = rand({o.batch, o.length}, TensorOptions(DType::f64));
    std::vector<int64_t> ids(size_t(o.batch * o.length));
    const std::vector<double> uv = u.to_vector<double>();
    for (size_t j = 0; j < ids.size(); ++j) ids[j] = 1 + std::min<int64_t>(int64_t(uv[j] * double(o.vocab - 1)), o.vocab - 2);
    b.tokens = from_vector(ids, {o.batch, o.length});
    b.lengths = from_vector(std::vector<int32_t>(size_t(o.batch), int32_t(o.length)), {o.batch});
    const std::vector<double> lv = rand({o.batch}, TensorOptions(DType::f64)).to_vector<double>();
    std::vector<int64_t> labels(size_t(o.batch));
    for (size_t j = 0; j < labels.size(); ++j)
      labels[j] = std::min<int64_t>(int64_t(lv[j] * double(o.classes)), o.classes - 1);
    b.labels = from_vector(labels, {o.batch});
    out.push_back(std::move(b));
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

MegaTrainResult run_mega_train(const MegaTrainOptions& o, Device device) {
  MIXGRAD_CHECK(o.steps >= 1 && o.warmup_steps >= 0, "bench --mega-train: --steps ({}) must be >= 1 and "
                "--warmup-steps ({}) >= 0", o.steps, o.warmup_steps);
  const models::LraConfig cfg = mega_train_config(o);
  manual_seed(o.seed);
  std::unique_ptr<models::LraModel> model = models::make_lra_model(cfg);
  model->to(device);
  model->train();
  MegaTrainResult r;
  r.params = model->num_parameters();
  nn::AdamW opt(model->parameters(), AdamWHyper{o.lr, 0.9, 0.98, 1e-8, o.weight_decay});  // MEGA's LRA recipe
  const std::vector<Batch> batches = make_batches(o, o.warmup_steps + o.steps);
  reset_peak_memory(device);
  std::vector<double> ms;
  for (int i = 0; i < int(batches.size()); ++i) {
    synchronize(device);
    const auto t0 = std::chrono::steady_clock::now();
    const Batch& b = batches[size_t(i)];
    const Tensor loss = cross_entropy(model->forward(b.tokens.to(device), b.lengths.to(device)), b.labels.to(device));
    opt.zero_grad();
    loss.backward();
    if (o.clip_norm > 0) nn::clip_grad_norm(model->parameters(), o.clip_norm);
    opt.set_lr(o.lr * std::min(1.0, double(i + 1) / double(std::max<int64_t>(1, o.lr_warmup))));
    opt.step();
    synchronize(device);
    const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const double value = loss.item();  // after the clock, as the peer reads its loss
    MIXGRAD_CHECK(std::isfinite(value), "bench --mega-train: the loss is {} at step {}", value, i + 1);
    if (i == 0) r.loss_first = value;
    r.loss_last = value;
    if (i >= o.warmup_steps) ms.push_back(dt);
  }
  r.peak_bytes = memory_stats(device).peak_bytes;
  r.ms_median = median(ms);
  r.ms_mean = std::accumulate(ms.begin(), ms.end(), 0.0) / double(ms.size());
  r.tokens_per_s = double(o.batch * o.length) / (r.ms_mean * 1e-3);  // tokens over the timed steps' total time
  return r;
}

}  // namespace mixgrad::bench
