// One LSTM cell formula for the CPU kernels and their CUDA twins (kernels/cpu/lstm.h, kernels/cuda/lstm.h).
// Gate order i, f, g, o as in PyTorch's nn.LSTM: i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o),
// c = f·c_prev + i·g, h = o·tanh(c) (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common.h"

namespace mixgrad::kernels {

// Where step t of sample b goes: a sample of n_b valid tokens runs steps t < n_b, at position t (dir 0) or n_b − 1 − t
// (dir 1, the reverse direction starts at the last valid token); `prev` is the position of step t − 1 (−1 at the
// first step). Steps t >= n_b are not valid and own position t (a padded position) instead.
struct LstmStep {
  int64_t len, pos, prev;
  bool valid;
};

MIXGRAD_HD LstmStep lstm_step(const int32_t* lengths, int64_t b, int64_t L, int64_t t, int64_t dir) {
  LstmStep s;
  s.len = lengths ? static_cast<int64_t>(lengths[b]) : L;
  s.valid = t < s.len;
  if (!s.valid) {
    s.pos = t;
    s.prev = -1;
  } else if (dir == 0) {
    s.pos = t;
    s.prev = t - 1;
  } else {
    s.pos = s.len - 1 - t;
    s.prev = t == 0 ? -1 : s.pos + 1;
  }
  return s;
}

template <class T>
MIXGRAD_HD T lstm_sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// Activated gates and the new cell/hidden state from the pre-activations a[4] = (a_i, a_f, a_g, a_o).
template <class T>
MIXGRAD_HD void lstm_cell_forward(const T a[4], T c_prev, T gates[4], T& c, T& h) {
  gates[0] = lstm_sigmoid(a[0]);
  gates[1] = lstm_sigmoid(a[1]);
  gates[2] = std::tanh(a[2]);
  gates[3] = lstm_sigmoid(a[3]);
  c = gates[1] * c_prev + gates[0] * gates[2];
  h = gates[3] * std::tanh(c);
}

// Gradients of the pre-activations da[4] and of c_prev from dh (total gradient of h) and dc_next (gradient of c
// arriving from the next step), given the saved activated gates, c and c_prev.
template <class T>
MIXGRAD_HD void lstm_cell_backward(const T gates[4], T c, T c_prev, T dh, T dc_next, T da[4], T& dc_prev) {
  const T i = gates[0], f = gates[1], g = gates[2], o = gates[3];
  const T tc = std::tanh(c);
  const T dc = dc_next + dh * o * (T(1) - tc * tc);
  da[0] = dc * g * i * (T(1) - i);
  da[1] = dc * c_prev * f * (T(1) - f);
  da[2] = dc * i * (T(1) - g * g);
  da[3] = dh * tc * o * (T(1) - o);
  dc_prev = dc * f;
}

}  // namespace mixgrad::kernels
