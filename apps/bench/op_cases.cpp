// Op cases for the bench: GEMM shapes (square and the fmnist-tiny ViT's) and the memory-bound ops at
// transformer-sized activations, with the byte and FLOP counts used for GB/s and GFLOP/s.
#include "apps/bench/op_cases.h"

#include <algorithm>

#include "apps/bench/aft_cases.h"
#include "apps/bench/combiner_cases.h"
#include "apps/bench/csp_cases.h"
#include "apps/bench/dcmha_cases.h"
#include "apps/bench/ema_cases.h"
#include "apps/bench/gated_attention_cases.h"
#include "apps/bench/s2mlp_cases.h"
#include "apps/bench/lstm_cases.h"

#include <random>

#include "engine/attention.h"

namespace mixgrad::bench {
namespace {

constexpr double kF32 = 4.0;  // bytes per float32
constexpr double kI64 = 8.0;  // bytes per int64 target

Tensor param(const Shape& shape, Device d) { return randn(shape, TensorOptions(DType::f32, d, true)); }

OpCase gemm_case(int64_t m, int64_t k, int64_t n) {
  OpCase c;
  c.op = "gemm";
  c.shape = fmt::format("[{}, {}] @ [{}, {}]", m, k, k, n);
  const double mnk = double(m) * double(n) * double(k);
  c.forward_flops = 2 * mnk;   // C = A·B
  c.backward_flops = 4 * mnk;  // dA = dC·Bᵀ and dB = Aᵀ·dC
  c.make_inputs = [=](Device d) { return std::vector<Tensor>{param({m, k}, d), param({k, n}, d)}; };
  c.forward = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  return c;
}

// Memory-bound cases on a [rows, cols] activation; N = rows * cols.
OpCase add_case(int64_t rows, int64_t cols) {
  OpCase c;
  c.op = "add";
  c.shape = fmt::format("[{}, {}] + [{}]", rows, cols, cols);
  const double n = double(rows) * double(cols), C = double(cols);
  c.forward_bytes = kF32 * (2 * n + C);   // read x and bias, write y
  c.backward_bytes = kF32 * (2 * n + C);  // read dy, write dx and dbias (= dy summed over rows)
  c.make_inputs = [=](Device d) { return std::vector<Tensor>{param({rows, cols}, d), param({cols}, d)}; };
  c.forward = [](const std::vector<Tensor>& in) { return add(in[0], in[1]); };
  return c;
}

OpCase gelu_case(int64_t rows, int64_t cols) {
  OpCase c;
  c.op = "gelu";
  c.shape = fmt::format("[{}, {}]", rows, cols);
  const double n = double(rows) * double(cols);
  c.forward_bytes = kF32 * 2 * n;   // read x, write y
  c.backward_bytes = kF32 * 3 * n;  // read dy and x, write dx
  c.make_inputs = [=](Device d) { return std::vector<Tensor>{param({rows, cols}, d)}; };
  c.forward = [](const std::vector<Tensor>& in) { return gelu(in[0]); };
  return c;
}

OpCase softmax_case(int64_t rows, int64_t cols) {
  OpCase c;
  c.op = "softmax";
  c.shape = fmt::format("[{}, {}]", rows, cols);
  const double n = double(rows) * double(cols);
  c.forward_bytes = kF32 * 2 * n;   // read x, write y
  c.backward_bytes = kF32 * 3 * n;  // read dy and y, write dx
  c.make_inputs = [=](Device d) { return std::vector<Tensor>{param({rows, cols}, d)}; };
  c.forward = [](const std::vector<Tensor>& in) { return softmax(in[0], -1); };
  return c;
}

OpCase layer_norm_case(int64_t rows, int64_t cols) {
  OpCase c;
  c.op = "layer_norm";
  c.shape = fmt::format("[{}, {}]", rows, cols);
  const double n = double(rows) * double(cols), R = double(rows), C = double(cols);
  c.forward_bytes = kF32 * (2 * n + 2 * C);              // read x, weight, bias; write y
  c.backward_bytes = kF32 * (3 * n + 2 * R + 3 * C);     // read dy, x, mean, rstd, weight; write dx, dweight, dbias
  c.make_inputs = [=](Device d) {
    return std::vector<Tensor>{param({rows, cols}, d), param({cols}, d), param({cols}, d)};
  };
  c.forward = [=](const std::vector<Tensor>& in) { return layer_norm(in[0], {cols}, in[1], in[2]); };
  return c;
}

OpCase cross_entropy_case(int64_t rows, int64_t classes) {
  OpCase c;
  c.op = "cross_entropy";
  c.shape = fmt::format("[{}, {}]", rows, classes);
  const double n = double(rows) * double(classes), R = double(rows);
  c.forward_bytes = kF32 * n + kI64 * R;               // read logits and targets (the scalar loss is negligible)
  c.backward_bytes = kF32 * (2 * n + 2 * R) + kI64 * R;  // read logits, lse, dloss, targets; write dlogits
  c.make_inputs = [=](Device d) {
    std::mt19937_64 gen(uint64_t(rows * 131 + classes));
    std::uniform_int_distribution<int64_t> pick(0, classes - 1);
    std::vector<int64_t> target(static_cast<size_t>(rows));
    for (int64_t& t : target) t = pick(gen);
    return std::vector<Tensor>{param({rows, classes}, d), from_vector(target, {rows}).to(d)};
  };
  c.forward = [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]); };
  c.forward_for_backward = [](const std::vector<Tensor>& in) {
    return cross_entropy(in[0], in[1], -100, 0.0, "none");
  };
  // What the mean reduction's backward would feed the kernel.
  c.grad_output = [](const Tensor& loss) {
    return full(loss.shape(), 1.0 / double(loss.numel()), TensorOptions(loss.dtype(), loss.device()));
  };
  return c;
}

// scaled_dot_product_attention on q, k, v [B, H, N, d] (self-attention, Tk = N) with one backend. FLOPs follow
// specs/mixers.md §2.4 (the FlashAttention convention): forward 4·B·H·N·N·d, backward 2.5× that, both halved when
// causal. Bytes: the minimum — read q, k, v, write o (forward); read q, k, v, o, dO, write dq, dk, dv (backward).
OpCase attention_case(int64_t b, int64_t h, int64_t n, int64_t d, bool causal, AttentionBackend backend) {
  OpCase c;
  c.op = "attention";
  c.impl = attention_backend_name(backend);
  c.shape = fmt::format("[{}, {}, {}, {}]{}", b, h, n, d, causal ? " causal" : "");
  const double bhnd = double(b) * double(h) * double(n) * double(d);
  c.forward_flops = 4.0 * bhnd * double(n) * (causal ? 0.5 : 1.0);
  c.backward_flops = 2.5 * c.forward_flops;
  c.forward_bytes = kF32 * 4 * bhnd;
  c.backward_bytes = kF32 * 8 * bhnd;
  c.tokens = double(b) * double(n);
  c.report_forward_backward = true;
  c.make_inputs = [=](Device dev) {
    return std::vector<Tensor>{param({b, h, n, d}, dev), param({b, h, n, d}, dev), param({b, h, n, d}, dev)};
  };
  c.forward = [=](const std::vector<Tensor>& in) {
    return scaled_dot_product_attention(in[0], in[1], in[2], Tensor(), causal, 0.0, -1.0, backend);
  };
  return c;
}

// The softmax mixer's call: packed_qkv_attention on a fused projection qkv [B, N, 3·H·d] (the thread's automatic
// backend: the fused kernels read it in place on the CPU, the unpacked call with its layout copies on CUDA). Same
// FLOP and byte model as attention_case.
OpCase packed_attention_case(int64_t b, int64_t h, int64_t n, int64_t d) {
  OpCase c = attention_case(b, h, n, d, false, AttentionBackend::automatic);
  c.impl = "packed";
  c.shape = fmt::format("qkv [{}, {}, {}]", b, n, 3 * h * d);
  c.make_inputs = [=](Device dev) { return std::vector<Tensor>{param({b, n, 3 * h * d}, dev)}; };
  c.forward = [=](const std::vector<Tensor>& in) { return packed_qkv_attention(in[0], h); };
  return c;
}

}  // namespace

std::vector<OpCase> all_op_cases(bool smoke) {
  std::vector<OpCase> cases;
  for (int64_t s : {256, 512, 1024, 2048}) cases.push_back(gemm_case(s, s, s));
  // fmnist-tiny ViT: B = 128 images, N = 50 tokens, D = 64, MLP ratio 4; tokens folded into rows [B·N, D].
  const int64_t tokens = 128 * 50, dim = 64;
  cases.push_back(gemm_case(tokens, dim, 3 * dim));  // qkv projection
  cases.push_back(gemm_case(tokens, dim, dim));      // attention output projection
  cases.push_back(gemm_case(tokens, dim, 4 * dim));  // MLP fc1
  cases.push_back(gemm_case(tokens, 4 * dim, dim));  // MLP fc2

  const std::vector<std::pair<int64_t, int64_t>> activations = {{4096, 768}, {tokens, dim}, {8192, 1024}};
  for (auto make : {layer_norm_case, softmax_case, gelu_case, add_case})
    for (auto [r, c] : activations) cases.push_back(make(r, c));
  cases.push_back(cross_entropy_case(128, 10));  // the ViT's classification head on one batch
  for (auto [r, c] : activations) cases.push_back(cross_entropy_case(r, c));

  // Attention, CUDA: FlashAttention's benchmark layout — B·N = 16k tokens, H·d = 2048 — non-causal and causal. The
  // composite path materialises B·H·N² scores per tensor, so it stops at N = 4096 (17 GB per score tensor at 16k).
  for (int64_t d : {64, 128})
    for (int64_t n : {512, 1024, 4096, 16384})
      for (bool causal : {false, true})
        for (AttentionBackend be : {AttentionBackend::fused, AttentionBackend::composite}) {
          if (be == AttentionBackend::composite && n > 4096) continue;
          OpCase c = attention_case(16384 / n, 2048 / d, n, d, causal, be);
          c.on_cpu = false;
          cases.push_back(std::move(c));
        }
  // Attention, CPU: one head group at N = 2048 (tokens/s and peak memory, fused vs composite).
  for (AttentionBackend be : {AttentionBackend::fused, AttentionBackend::composite}) {
    OpCase c = attention_case(1, 4, 2048, 64, false, be);
    c.on_cuda = false;
    c.report_peak_memory = true;
    cases.push_back(std::move(c));
  }
  // Attention at the fmnist-tiny ViT's size (B 128, 4 heads, N 50, d 16): both backends on q, k, v [B, H, N, d],
  // and the mixer's packed call on qkv [B, N, 3·H·d].
  for (AttentionBackend be : {AttentionBackend::fused, AttentionBackend::composite})
    cases.push_back(attention_case(128, 4, 50, 16, false, be));
  cases.push_back(packed_attention_case(128, 4, 50, 16));
  // CSP (specs/csp.md §8.1 sizes) next to a device copy of the same tensor; Path-X with batch 4 on the CPU.
  for (OpCase c : csp_op_cases(4)) {
    c.on_cuda = false;
    cases.push_back(std::move(c));
  }
  for (OpCase c : csp_op_cases(60)) {
    c.on_cpu = false;
    cases.push_back(std::move(c));
  }
  for (OpCase c : aft_op_cases(smoke)) cases.push_back(std::move(c));
  // DCMHA: Compose alone (GB/s) and the dcmha mixer forward + backward (apps/bench/dcmha_cases.h).
  for (OpCase c : dcmha_op_cases()) cases.push_back(std::move(c));
  // MEGA's EMA at the LRA sizes and L = 4K, 16K, scan and convolution paths (apps/bench/ema_cases.h).
  for (OpCase c : ema_op_cases(smoke)) cases.push_back(std::move(c));
  // MEGA's / GAU's gated attention (softmax, laplace, relu²), full and chunked (apps/bench/gated_attention_cases.h).
  for (OpCase c : gated_attention_op_cases(smoke)) cases.push_back(std::move(c));
  // Combiner (specs/mixers.md §5): every variant, non-causal and causal, L 1024 / 4096 (16384 on CUDA only).
  for (OpCase c : combiner_op_cases()) cases.push_back(std::move(c));
  // S2-MLPv2: the spatial shift and the split-attention passes (GB/s), on both devices.
  for (OpCase c : s2mlp_op_cases()) cases.push_back(std::move(c));
  // LSTM: one fused bidirectional layer at LRA sizes (apps/bench/lstm_cases.h).
  for (OpCase c : lstm_op_cases(smoke)) cases.push_back(std::move(c));
  return cases;
}

std::vector<std::string> op_names() {
  std::vector<std::string> names;
  for (const OpCase& c : all_op_cases())
    if (std::find(names.begin(), names.end(), c.op) == names.end()) names.push_back(c.op);
  return names;
}

}  // namespace mixgrad::bench
