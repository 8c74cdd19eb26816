// bench --mega-train: training steps of the MEGA LRA encoder (models/lra_mega.h) on random fixed-length token batches
// with AdamW, timed as tokens/s — the same model, sizes, data and recipe as the PyTorch peer
// apps/bench/peers/mega_train_torch.py, whose flags and defaults these mirror, so one command pair gives the ratio.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"
#include "models/lra_config.h"

namespace mixgrad::bench {

// Defaults: MEGA's ListOps row of specs/lra.md §7.2 at L = 2000 with batch 4 (the peer's defaults).
struct MegaTrainOptions {
  int64_t embed_dim = 80, zdim = 64, hdim = 160, ffn = 160, layers = 6, ndim = 16, truncation = 1024;
  int64_t length = 2000, batch = 4, vocab = 16, classes = 10, cls_out = 0, chunk = -1;  // cls_out 0 = 2·embed_dim
  std::string attention = "softmax", norm = "layernorm";
  bool prenorm = false;
  double dropout = 0.1, act_dropout = 0.0;
  double lr = 1e-3, weight_decay = 0.01, clip_norm = 1.0;
  int64_t lr_warmup = 3000;
  int steps = 10, warmup_steps = 2;
  uint64_t seed = 0;
};

// The model configuration these options describe (family mega, token input, masked-mean pool, no positions).
models::LraConfig mega_train_config(const MegaTrainOptions& o);
// The record's shape string, identical to the peer's for the same sizes.
std::string mega_train_shape(const MegaTrainOptions& o);

struct MegaTrainResult {
  double ms_median = 0, ms_mean = 0, tokens_per_s = 0;
  double loss_first = 0, loss_last = 0;
  int64_t params = 0, peak_bytes = 0;
};

// Builds the model on `device`, runs warmup_steps untimed and `steps` timed training steps (batch to the device,
// forward, cross-entropy, backward, gradient clipping, AdamW with a linear warm-up), each between two synchronize
// calls. The random batches (ids 1..vocab−1, every sample `length` tokens, random labels) are made before the clock.
MegaTrainResult run_mega_train(const MegaTrainOptions& o, Device device);

}  // namespace mixgrad::bench
