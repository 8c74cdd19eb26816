// The recurrence of one LSTM layer direction (PyTorch nn.LSTM semantics, gate order i, f, g, o) over a whole
// batch-first sequence, forward and backward through time; the CPU reference for kernels/cuda/lstm.h.
#pragma once
#include <cstdint>

namespace mixgrad::kernels::cpu {

// Layout (all row-major): `dirs` directions share the buffers, direction `dir` owns a column block.
//   gates  [B, L, dirs·4H]  in: x·W_ihᵀ + b_ih + b_hh (columns dir·4H + q·H + j for gate q); out: the activated
//                           gates (i, f, g, o) at each valid position, 0 at padded positions.
//   y      [B, L, dirs·H]   h at each valid position, 0 at padded positions.
//   cell   [B, L, dirs·H]   c at each valid position, 0 at padded positions (saved for the backward).
//   h_prev [B, L, dirs·H]   the state h that entered the step writing that position (0 for the first step).
//   h_n    [B, H]           this direction's final state (h at the last step of each sample).
//   w_hh   [4H, H]          the recurrent weight; lengths [B] in [1, L] or null (all L).
//   work   lstm_work_size(B, H) elements of scratch.
// Step t of sample b (t < n_b) handles position t (dir 0) or n_b − 1 − t (dir 1, the reverse direction starts at
// the last valid token, as PyTorch's packed sequences); steps t >= n_b write zeros at position t and leave the state.
// The recurrent product h·W_hhᵀ of each step is one GEMM over the batch (kernels/cpu/gemm.h).
int64_t lstm_work_size(int64_t B, int64_t H);

template <class T>
void lstm_forward(T* gates, T* y, T* cell, T* h_prev, T* h_n, const T* w_hh, const int32_t* lengths, int64_t B,
                  int64_t L, int64_t H, int64_t dirs, int64_t dir, T* work);

// Backward through time of the same direction: dgates [B, L, dirs·4H] receives the gradients of the gate
// pre-activations in this direction's column block (0 at padded positions), from dy [B, L, dirs·H] and dh_n [B, H]
// (gradient of this direction's final state) and the saved gates and cell of lstm_forward.
template <class T>
void lstm_backward(T* dgates, const T* dy, const T* dh_n, const T* gates, const T* cell, const T* w_hh,
                   const int32_t* lengths, int64_t B, int64_t L, int64_t H, int64_t dirs, int64_t dir, T* work);

// Zeroes rows x[b, t, :] with t >= n_b of x [B, L, D] (so garbage in padding never reaches a weight gradient).
template <class T>
void lstm_zero_padding(T* x, const int32_t* lengths, int64_t B, int64_t L, int64_t D);

}  // namespace mixgrad::kernels::cpu
