// LSTM recurrence on the CPU: per step one batched GEMM for h·W_hhᵀ (or dA·W_hh backward) and a pointwise pass
// over [B, H] (OpenMP over samples when the step is large enough, contiguous inner loops over j).
#include "kernels/cpu/lstm.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu/gemm.h"
#include "kernels/lstm_math.h"

namespace mixgrad::kernels::cpu {
namespace {

// OpenMP regions cost more than a small step's pointwise work.
constexpr int64_t kParallelMin = 1 << 14;

template <class T>
void forward_point(T* gates, T* y, T* cell, T* h_prev, T* h_state, T* c_state, const T* rec, const int32_t* lengths,
                   int64_t b, int64_t L, int64_t H, int64_t dirs, int64_t dir, int64_t t) {
  const LstmStep s = lstm_step(lengths, b, L, t, dir);
  T* g = gates + (b * L + s.pos) * dirs * 4 * H + dir * 4 * H;
  const int64_t o = (b * L + s.pos) * dirs * H + dir * H;
  if (!s.valid) {
    std::fill(g, g + 4 * H, T(0));
    std::fill(y + o, y + o + H, T(0));
    std::fill(cell + o, cell + o + H, T(0));
    std::fill(h_prev + o, h_prev + o + H, T(0));
    return;
  }
  const T* r = rec + b * 4 * H;
  T* hs = h_state + b * H;
  T* cs = c_state + b * H;
  for (int64_t j = 0; j < H; ++j) {
    const T a[4] = {g[j] + r[j], g[H + j] + r[H + j], g[2 * H + j] + r[2 * H + j], g[3 * H + j] + r[3 * H + j]};
    T act[4], c, h;
    lstm_cell_forward(a, cs[j], act, c, h);
    for (int q = 0; q < 4; ++q) g[q * H + j] = act[q];
    h_prev[o + j] = hs[j];
    cell[o + j] = c;
    y[o + j] = h;
    cs[j] = c;
    hs[j] = h;
  }
}

template <class T>
void backward_point(T* dgates, T* dstep, T* dh_rec, T* dc_state, const T* dy, const T* dh_n, const T* gates,
                    const T* cell, const int32_t* lengths, int64_t b, int64_t L, int64_t H, int64_t dirs, int64_t dir,
                    int64_t t) {
  const LstmStep s = lstm_step(lengths, b, L, t, dir);
  T* dg = dgates + (b * L + s.pos) * dirs * 4 * H + dir * 4 * H;
  T* ds = dstep + b * 4 * H;
  if (!s.valid) {
    std::fill(dg, dg + 4 * H, T(0));
    std::fill(ds, ds + 4 * H, T(0));
    return;
  }
  const bool first = t + 1 == s.len;  // the last step of the sample: the gradient enters from dh_n
  const T* g = gates + (b * L + s.pos) * dirs * 4 * H + dir * 4 * H;
  const int64_t o = (b * L + s.pos) * dirs * H + dir * H;
  const int64_t op = (b * L + s.prev) * dirs * H + dir * H;
  T* dhr = dh_rec + b * H;
  T* dcs = dc_state + b * H;
  for (int64_t j = 0; j < H; ++j) {
    const T dh = (first ? dh_n[b * H + j] : dhr[j]) + dy[o + j];
    const T dc_next = first ? T(0) : dcs[j];
    const T act[4] = {g[j], g[H + j], g[2 * H + j], g[3 * H + j]};
    const T c_prev = s.prev < 0 ? T(0) : cell[op + j];
    T da[4], dc_prev;
    lstm_cell_backward(act, cell[o + j], c_prev, dh, dc_next, da, dc_prev);
    for (int q = 0; q < 4; ++q) {
      dg[q * H + j] = da[q];
      ds[q * H + j] = da[q];
    }
    dcs[j] = dc_prev;
  }
}

}  // namespace

int64_t lstm_work_size(int64_t B, int64_t H) { return 6 * B * H; }

template <class T>
void lstm_forward(T* gates, T* y, T* cell, T* h_prev, T* h_n, const T* w_hh, const int32_t* lengths, int64_t B,
                  int64_t L, int64_t H, int64_t dirs, int64_t dir, T* work) {
  T* c_state = work;
  T* rec = work + B * H;
  std::fill(h_n, h_n + B * H, T(0));
  std::fill(c_state, c_state + B * H, T(0));
  const bool parallel = B * H * 4 >= kParallelMin;
  for (int64_t t = 0; t < L; ++t) {
    // rec[b] = h_state[b]·W_hhᵀ  ([B, H] x [H, 4H])
    gemm_strided_batched<T>(false, true, B, 4 * H, H, T(1), h_n, H, 0, w_hh, H, 0, T(0), rec, 4 * H, 0, 1);
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t b = 0; b < B; ++b)
      forward_point(gates, y, cell, h_prev, h_n, c_state, rec, lengths, b, L, H, dirs, dir, t);
  }
}

template <class T>
void lstm_backward(T* dgates, const T* dy, const T* dh_n, const T* gates, const T* cell, const T* w_hh,
                   const int32_t* lengths, int64_t B, int64_t L, int64_t H, int64_t dirs, int64_t dir, T* work) {
  T* dh_rec = work;
  T* dc_state = work + B * H;
  T* dstep = work + 2 * B * H;
  std::fill(dh_rec, dh_rec + 2 * B * H, T(0));
  const bool parallel = B * H * 4 >= kParallelMin;
  for (int64_t t = L - 1; t >= 0; --t) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t b = 0; b < B; ++b)
      backward_point(dgates, dstep, dh_rec, dc_state, dy, dh_n, gates, cell, lengths, b, L, H, dirs, dir, t);
    // dh_rec[b] = dstep[b]·W_hh  ([B, 4H] x [4H, H]): the gradient of the state that entered step t
    gemm_strided_batched<T>(false, false, B, H, 4 * H, T(1), dstep, 4 * H, 0, w_hh, H, 0, T(0), dh_rec, H, 0, 1);
  }
}

template <class T>
void lstm_zero_padding(T* x, const int32_t* lengths, int64_t B, int64_t L, int64_t D) {
  if (!lengths) return;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = std::clamp<int64_t>(lengths[b], 0, L);
    std::fill(x + (b * L + n) * D, x + (b + 1) * L * D, T(0));
  }
}

#define MIXGRAD_LSTM_INSTANTIATE(T)                                                                               \
  template void lstm_forward<T>(T*, T*, T*, T*, T*, const T*, const int32_t*, int64_t, int64_t, int64_t, int64_t, \
                                int64_t, T*);                                                                     \
  template void lstm_backward<T>(T*, const T*, const T*, const T*, const T*, const T*, const int32_t*, int64_t,   \
                                 int64_t, int64_t, int64_t, int64_t, T*);                                         \
  template void lstm_zero_padding<T>(T*, const int32_t*, int64_t, int64_t, int64_t);
MIXGRAD_LSTM_INSTANTIATE(float)
MIXGRAD_LSTM_INSTANTIATE(double)
#undef MIXGRAD_LSTM_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
