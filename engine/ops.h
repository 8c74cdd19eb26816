// Every differentiable op of the engine, PyTorch names and semantics. Each validates its inputs (throwing
// mixgrad::Error naming the op, the shapes and what was expected), allocates its outputs on the inputs' device,
// calls the CPU or CUDA kernel, and records a tape node whose backward calls the backward kernels.
// Implementations: engine/ops_<family>.cpp.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "kernels/precision.h"

namespace mixgrad {

// ---- element-wise, broadcasting (ops_elementwise.cpp) ---------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor pow(const Tensor& a, double exponent);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor relu(const Tensor& a);
// approximate = "none" (erf, PyTorch default) or "tanh".
Tensor gelu(const Tensor& a, const std::string& approximate = "none");
Tensor silu(const Tensor& a);
// where(cond, a, b): cond is uint8 (nonzero = true), all three broadcast together.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// Positions where mask (uint8, broadcast to x) is nonzero become `value`.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
Tensor dropout(const Tensor& x, double p, bool training);
// Shape both operands broadcast to (error naming the op when they don't).
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Sums a gradient of shape `grad.shape()` down to `shape` (the inverse of broadcasting).
Tensor sum_to_shape(const Tensor& grad, const Shape& shape);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator*(double s, const Tensor& a);

// ---- reductions (ops_reduce.cpp) ------------------------------------------------------------------------------
Tensor sum(const Tensor& x);  // all elements -> shape []
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Max over one dimension: values and int64 indices (first on ties).
struct MaxResult {
  Tensor values, indices;
};
MaxResult max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);

// ---- layout (ops_layout.cpp) ----------------------------------------------------------------------------------
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor expand(const Tensor& x, const Shape& shape);  // materialised broadcast
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);

// ---- linear algebra (ops_linalg.cpp) --------------------------------------------------------------------------
// torch.matmul semantics: 1-D/2-D/batched with broadcast batch dims.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x · Wᵀ + b, weight [out, in], bias [out] (optional); x [..., in].
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// Compute precision of matrix products (kernels/precision.h): fp32 (default), tf32 (CUDA tensor cores; the CPU
// computes fp32) or bf16 (operands rounded to bfloat16, fp32 accumulation and outputs: cuBLAS bf16 GEMMs and the
// tensor-core attention on CUDA; on the CPU matmul / linear round their operands the same way). Applies to
// matmul, linear (forward and backward) and the fused attention; the LSTM and Compose GEMMs use TF32 on CUDA
// under both tf32 and bf16. Process-wide, read when an op runs.
using MatmulPrecision = kernels::MatmulPrecision;
void set_matmul_precision(MatmulPrecision precision);
MatmulPrecision matmul_precision();
// Parses "fp32", "tf32" or "bf16"; throws std::invalid_argument naming the accepted values otherwise.
MatmulPrecision parse_matmul_precision(const std::string& name);
// set_allow_tf32(on) = set_matmul_precision(on ? tf32 : fp32); allow_tf32() = matmul_precision() != fp32 (TF32 or
// something coarser is allowed).
void set_allow_tf32(bool on);
bool allow_tf32();

// ---- softmax, normalisation, losses, embedding (ops_nn.cpp) ---------------------------------------------------
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Normalises over the last len(normalized_shape) dims; weight/bias optional.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(), double eps = 1e-6);
// Fused log-softmax + NLL over logits [N, C] (or [C]) and int64 targets [N]; reduction "mean" | "sum" | "none".
// Mean divides by the number of non-ignored targets (PyTorch).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0, const std::string& reduction = "mean");
// weight [num_embeddings, dim], indices int64 of any shape -> [..., dim]; deterministic backward.
Tensor embedding(const Tensor& weight, const Tensor& indices);

}  // namespace mixgrad
