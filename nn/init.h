// Parameter initialisers (in place, no autograd), drawn from the engine's Philox generator on the CPU and copied to
// the tensor's device, so a seed initialises a model identically on the CPU and on CUDA.
#pragma once
#include "engine/mixgrad.h"

namespace mixgrad::nn::init {

void uniform_(Tensor& t, double lo, double hi);
void normal_(Tensor& t, double mean, double std);
// Normal(mean, std) truncated to [a, b] (timm's trunc_normal_ defaults: a = -2, b = 2 in absolute units).
void trunc_normal_(Tensor& t, double std = 0.02, double mean = 0.0, double a = -2.0, double b = 2.0);
// U(-a, a) with a = gain·sqrt(6 / (fan_in + fan_out)) for a [fan_out, fan_in, ...] weight (PyTorch's xavier_uniform_).
void xavier_uniform_(Tensor& t, double gain = 1.0);
void zeros_(Tensor& t);
void ones_(Tensor& t);
// PyTorch's nn.Linear default: weight ~ U(±1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)), bias likewise.
void linear_default_(Tensor& weight, Tensor& bias);

}  // namespace mixgrad::nn::init
