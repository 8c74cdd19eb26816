// mlp: trains a 784-256-10 MLP on Fashion-MNIST (Debian's dataset-fashion-mnist) for one epoch and prints the test
// accuracy — the engine's end-to-end smoke job (the ViT app is the main job).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "apps/common/blas_core.h"
#include "apps/common/options.h"
#include "apps/data/idx.h"
#include "apps/data/image_batches.h"
#include "apps/data/loader.h"
#include "engine/mixgrad.h"
#include "nn/layers.h"
#include "nn/optim/optimizer.h"

using namespace mixgrad;

namespace {

Tensor batch_images(const data::Batch& b, Device dev) {
  return from_vector(b.images, {b.size, int64_t(b.images.size()) / std::max<int64_t>(b.size, 1)}).to(dev);
}
Tensor batch_labels(const data::Batch& b, Device dev) { return from_vector(b.labels, {b.size}).to(dev); }

// Fashion-MNIST normalisation, no augmentation.
data::AugmentConfig normalisation() {
  data::AugmentConfig a;
  a.stats = data::fashion_mnist_stats();
  return a;
}

// The MLP takes 784 = 28×28 gray pixels: any other image size is an error naming the folder and the sizes.
void check_images(const data::ImageDataset& ds, const std::string& dir, const char* which) {
  if (ds.channels != 1 || ds.height != 28 || ds.width != 28)
    throw Error(
        fmt::format("--data {}: the {} images are {}x{}x{} (channels x height x width); the 784-256-10 MLP "
                    "expects 1x28x28 (Fashion-MNIST or MNIST)",
                    dir, which, ds.channels, ds.height, ds.width));
}

double evaluate(nn::Sequential& model, const data::ImageDataset& ds, Device dev) {
  NoGradGuard ng;
  model.eval();
  data::LoaderConfig cfg;
  cfg.batch_size = 1000;
  cfg.shuffle = false;
  cfg.augment = false;
  std::vector<int64_t> idx(size_t(ds.n));
  for (int64_t i = 0; i < ds.n; ++i) idx[size_t(i)] = i;
  const data::ImageBatches batches(ds, normalisation());
  data::BatchLoader loader(batches, idx, cfg);
  int64_t correct = 0;
  while (auto b = loader.next()) {
    std::vector<int64_t> pred = argmax(model.forward(batch_images(*b, dev)), 1).to(kCPU).to_vector<int64_t>();
    for (int64_t i = 0; i < b->size; ++i) correct += pred[size_t(i)] == b->labels[size_t(i)];
  }
  model.train();
  return double(correct) / double(ds.n);
}

}  // namespace

int main(int argc, char** argv) {
  app::ensure_fast_blas_kernels(argv);
  CLI::App app{"mixgrad mlp: a 784-256-10 MLP on Fashion-MNIST (engine smoke job)"};
  std::string data_dir = data::default_fashion_mnist_dir().string(), device = "auto";
  int epochs = 1, batch_size = 64;
  double lr = 2e-3;
  uint64_t seed = 0;
  app.add_option("--data", data_dir, "Folder with the Fashion-MNIST idx files (.gz or plain)");
  app.add_option("--device", device, "auto, cpu, cuda or cuda:N")->check(app::device_spec());
  app.add_option("--epochs", epochs, "Training epochs")->check(app::integer_range(1, 1000));
  app.add_option("--batch-size", batch_size, "Batch size")->check(app::integer_range(1, 65536));
  app.add_option("--lr", lr, "Peak AdamW learning rate (cosine decay to 0 over the run)")
      ->check(app::finite_number(true));
  app.add_option("--seed", seed, "Random seed");
  CLI11_PARSE(app, argc, argv);
  try {
    const Device dev = app::resolve_device(device);
    manual_seed(seed);
    const data::ImageDataset train = data::load_mnist_like(data_dir, true);
    const data::ImageDataset test = data::load_mnist_like(data_dir, false);
    check_images(train, data_dir, "training");
    check_images(test, data_dir, "test");
    std::printf("mlp: %lld training / %lld test images from %s, device %s\n", (long long)train.n, (long long)test.n,
                data_dir.c_str(), dev.str().c_str());

    nn::Sequential model;
    model.push_back(std::make_shared<nn::Linear>(784, 256));
    model.push_back(nn::ReLU());
    model.push_back(std::make_shared<nn::Linear>(256, 10));
    model.to(dev);
    nn::AdamW opt(model.parameters(), {lr, 0.9, 0.999, 1e-8, 0.0});

    std::vector<int64_t> idx(size_t(train.n));
    for (int64_t i = 0; i < train.n; ++i) idx[size_t(i)] = i;
    const int64_t steps_per_epoch = (train.n + batch_size - 1) / batch_size;
    const nn::WarmupCosine schedule{lr, 0.0, 0, steps_per_epoch * epochs};
    int64_t global_step = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int epoch = 0; epoch < epochs; ++epoch) {
      data::LoaderConfig cfg;
      cfg.batch_size = batch_size;
      cfg.seed = seed;
      cfg.epoch = uint64_t(epoch);
      cfg.augment = false;
      const data::ImageBatches batches(train, normalisation());
      data::BatchLoader loader(batches, idx, cfg);
      double loss_sum = 0;
      int64_t steps = 0;
      while (auto b = loader.next()) {
        Tensor loss = cross_entropy(model.forward(batch_images(*b, dev)), batch_labels(*b, dev));
        opt.zero_grad();
        loss.backward();
        opt.set_lr(schedule(global_step++));
        opt.step();
        const double l = loss.item();
        if (!std::isfinite(l)) throw Error(fmt::format("mlp: loss became {} at epoch {} step {}", l, epoch, steps));
        loss_sum += l;
        ++steps;
        if (steps % 100 == 0)
          std::printf("epoch %d step %lld/%lld loss %.4f\n", epoch + 1, (long long)steps, (long long)loader.num_batches(),
                      loss_sum / double(steps));
      }
      std::printf("epoch %d done: mean train loss %.4f\n", epoch + 1, loss_sum / double(std::max<int64_t>(steps, 1)));
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double acc = evaluate(model, test, dev);
    std::printf("test accuracy: %.4f (%d epoch(s), %.1f s of training)\n", acc, epochs, secs);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mlp: error: %s\n", e.what());
    return 1;
  }
}
