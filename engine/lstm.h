// The fused LSTM layer op (PyTorch nn.LSTM semantics, batch-first): one tape node per layer, not per time step.
// Implemented in engine/ops_lstm.cpp on top of kernels/cpu/lstm.h and kernels/cuda/lstm.h.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace mixgrad {

// One direction's parameters, PyTorch's weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} (or their
// _reverse): w_ih [4H, D], w_hh [4H, H], b_ih [4H], b_hh [4H], gate blocks in the order i, f, g, o.
struct LstmDirection {
  Tensor w_ih, w_hh, b_ih, b_hh;
};

struct LstmLayerOutput {
  Tensor y;    // [B, L, dirs·H]: forward direction's h in columns [0, H), the reverse direction's in [H, 2H)
  Tensor h_n;  // [dirs, B, H]: each direction's state at its last step (forward: the last valid token; reverse:
               // position 0), PyTorch's h_n for this layer
};

// One LSTM layer over x [B, L, D] (float32/float64 CPU, float32 CUDA) with one (unidirectional) or two
// (bidirectional: forward, reverse) directions, zero initial states. lengths (optional, int32 [B] on the CPU or on
// x's device) gives each sample's valid prefix n_b in [1, L]: the forward direction stops after token n_b − 1, the
// reverse direction starts there (PyTorch packed sequences), y is 0 at padded positions and padded inputs get a zero
// gradient (padded x never reaches a weight gradient either). CPU lengths are checked at the call; lengths on the GPU
// are checked there (no read-back) and a bad one is reported at the next read-back.
// The input projections of both directions are one GEMM over the whole sequence; the recurrence runs once per
// direction (a batched GEMM and a pointwise pass per step); the backward through time reuses the saved gates and
// cell states. Gradients flow to x and every weight and bias.
LstmLayerOutput lstm_layer(const Tensor& x, const std::vector<LstmDirection>& directions,
                           const Tensor& lengths = Tensor());

}  // namespace mixgrad
