// S2-MLPv2 spatial shifts and split-attention passes on the CPU (the reference). Every pass walks tokens in
// ascending order and, per token, the four channel quarters with the quarter's source (or reader) tokens computed
// once, so the inner loops run over contiguous channels. Sums accumulate in double.
#include "kernels/cpu/spatial_shift.h"

#include <cstddef>
#include <vector>

namespace mixgrad::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = 1 << 15;  // elements per call below which OpenMP is not worth starting

using s2::S2Geometry;

// Channel bounds of the four quarters: quarter q is [qb[q], qb[q + 1]).
struct Quarters {
  int64_t qb[5];
  explicit Quarters(int64_t C) {
    for (int q = 0; q <= 4; ++q) qb[q] = s2::quarter_begin(q, C);
  }
};

// dst[c] = Σ_{i < n} src[i][c] for c in [c0, c1) (the readers' rows of one quarter; n <= 2).
template <class T>
void gather_rows(T* dst, const T* const* src, int n, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; ++c) {
    T s = T(0);
    for (int i = 0; i < n; ++i) s += src[i][c];
    dst[c] = s;
  }
}

}  // namespace

template <class T>
void spatial_shift_forward(T* y, const T* x, int64_t B, int64_t H, int64_t W, int64_t C, int variant) {
  const Quarters Q(C);
  const int64_t N = H * W;
#pragma omp parallel for schedule(static) if (B * N * C > kParallelWork)
  for (int64_t bp = 0; bp < B * N; ++bp) {
    const int64_t b = bp / N, p = bp - b * N;
    T* out = y + bp * C;
    for (int q = 0; q < 4; ++q) {
      const int64_t s = s2::grid_source(p, s2::quarter_shift(variant, q), H, W, N);
      const T* in = x + (b * N + s) * C;
      for (int64_t c = Q.qb[q]; c < Q.qb[q + 1]; ++c) out[c] = in[c];
    }
  }
}

template <class T>
void spatial_shift_backward(T* dx, const T* dy, int64_t B, int64_t H, int64_t W, int64_t C, int variant) {
  const Quarters Q(C);
  const int64_t N = H * W;
#pragma omp parallel for schedule(static) if (B * N * C > kParallelWork)
  for (int64_t bp = 0; bp < B * N; ++bp) {
    const int64_t b = bp / N, p = bp - b * N;
    for (int q = 0; q < 4; ++q) {
      int64_t r[2] = {0, 0};
      const int n = s2::grid_readers(p, s2::quarter_shift(variant, q), H, W, N, r);
      const T* src[2] = {dy + (b * N + r[0]) * C, n > 1 ? dy + (b * N + r[1]) * C : nullptr};
      gather_rows(dx + bp * C, src, n, Q.qb[q], Q.qb[q + 1]);
    }
  }
}

template <class T>
void s2_branch_sum(T* a, const T* z, const int32_t* lengths, S2Geometry g) {
  const Quarters Q(g.C);
  const int64_t row = 3 * g.C;
#pragma omp parallel for schedule(static) if (g.B * g.N * row > kParallelWork)
  for (int64_t b = 0; b < g.B; ++b) {
    const int64_t n = s2::valid_tokens(lengths, b, g.N), ng = s2::grid_present(n, g);
    std::vector<double> acc(std::size_t(g.C), 0.0);
    for (int64_t p = 0; p < n; ++p)
      for (int k = 0; k < 3; ++k)
        for (int q = 0; q < 4; ++q) {
          const T* in = z + (b * g.N + s2::source_token(p, k, q, g, ng)) * row + k * g.C;
          for (int64_t c = Q.qb[q]; c < Q.qb[q + 1]; ++c) acc[std::size_t(c)] += double(in[c]);
        }
    for (int64_t c = 0; c < g.C; ++c) a[b * g.C + c] = T(acc[std::size_t(c)]);
  }
}

template <class T>
void s2_branch_sum_backward(T* dz, const T* da, const int32_t* lengths, S2Geometry g) {
  const Quarters Q(g.C);
  const int64_t row = 3 * g.C;
#pragma omp parallel for schedule(static) if (g.B * g.N * row > kParallelWork)
  for (int64_t bp = 0; bp < g.B * g.N; ++bp) {
    const int64_t b = bp / g.N, p = bp - b * g.N;
    const int64_t n = s2::valid_tokens(lengths, b, g.N), ng = s2::grid_present(n, g);
    T* out = dz + bp * row;
    const T* d = da + b * g.C;
    if (p >= n) {  // padding: exactly zero, whatever dA holds
      for (int64_t i = 0; i < row; ++i) out[i] = T(0);
      continue;
    }
    for (int k = 0; k < 3; ++k)
      for (int q = 0; q < 4; ++q) {
        int64_t r[2] = {0, 0};
        const T count = T(s2::reader_tokens(p, k, q, g, ng, r));
        for (int64_t c = Q.qb[q]; c < Q.qb[q + 1]; ++c) out[k * g.C + c] = d[c] * count;
      }
  }
}

template <class T>
void s2_split_combine(T* out, const T* z, const T* abar, const int32_t* lengths, S2Geometry g) {
  const Quarters Q(g.C);
  const int64_t row = 3 * g.C;
#pragma omp parallel for schedule(static) if (g.B * g.N * row > kParallelWork)
  for (int64_t bp = 0; bp < g.B * g.N; ++bp) {
    const int64_t b = bp / g.N, p = bp - b * g.N;
    const int64_t n = s2::valid_tokens(lengths, b, g.N), ng = s2::grid_present(n, g);
    T* o = out + bp * g.C;
    if (p >= n) {
      for (int64_t c = 0; c < g.C; ++c) o[c] = T(0);
      continue;
    }
    const T* w = abar + b * 3 * g.C;
    for (int q = 0; q < 4; ++q) {
      const T* x0 = z + (b * g.N + s2::source_token(p, 0, q, g, ng)) * row;
      const T* x1 = z + (b * g.N + s2::source_token(p, 1, q, g, ng)) * row + g.C;
      const T* x2 = z + bp * row + 2 * g.C;
      for (int64_t c = Q.qb[q]; c < Q.qb[q + 1]; ++c) o[c] = w[c] * x0[c] + w[g.C + c] * x1[c] + w[2 * g.C + c] * x2[c];
    }
  }
}

namespace {

// dz of one token p of sample b (split_combine backward): abar[k, c] times the sum of dout over p's readers.
template <class T>
void combine_backward_token(T* dz_row, const T* dout_b, const T* abar_b, int64_t p, int64_t n, int64_t ng,
                            const S2Geometry& g, const Quarters& Q) {
  for (int k = 0; k < 3; ++k)
    for (int q = 0; q < 4; ++q) {
      T* out = dz_row + k * g.C;
      if (p >= n) {
        for (int64_t c = Q.qb[q]; c < Q.qb[q + 1]; ++c) out[c] = T(0);
        continue;
      }
      int64_t r[2] = {0, 0};
      const int m = s2::reader_tokens(p, k, q, g, ng, r);
      const T* src[2] = {dout_b + r[0] * g.C, m > 1 ? dout_b + r[1] * g.C : nullptr};
      gather_rows(out, src, m, Q.qb[q], Q.qb[q + 1]);
      for (int64_t c = Q.qb[q]; c < Q.qb[q + 1]; ++c) out[c] *= abar_b[k * g.C + c];
    }
}

}  // namespace

template <class T>
void s2_split_combine_backward(T* dz, T* dabar, const T* dout, const T* z, const T* abar, const int32_t* lengths,
                               S2Geometry g) {
  const Quarters Q(g.C);
  const int64_t row = 3 * g.C;
#pragma omp parallel for schedule(static) if (g.B * g.N * row > kParallelWork)
  for (int64_t b = 0; b < g.B; ++b) {
    const int64_t n = s2::valid_tokens(lengths, b, g.N), ng = s2::grid_present(n, g);
    const T* dout_b = dout + b * g.N * g.C;
    const T* abar_b = abar + b * 3 * g.C;
    std::vector<double> acc(std::size_t(3 * g.C), 0.0);
    for (int64_t p = 0; p < g.N; ++p) {
      combine_backward_token(dz + (b * g.N + p) * row, dout_b, abar_b, p, n, ng, g, Q);
      if (p >= n) continue;
      const T* d = dout_b + p * g.C;
      for (int k = 0; k < 3; ++k)
        for (int q = 0; q < 4; ++q) {
          const T* x = z + (b * g.N + s2::source_token(p, k, q, g, ng)) * row + k * g.C;
          double* s = acc.data() + k * g.C;
          for (int64_t c = Q.qb[q]; c < Q.qb[q + 1]; ++c) s[c] += double(d[c]) * double(x[c]);
        }
    }
    for (int64_t i = 0; i < 3 * g.C; ++i) dabar[b * 3 * g.C + i] = T(acc[std::size_t(i)]);
  }
}

#define MIXGRAD_S2_INSTANTIATE(T)                                                                 \
  template void spatial_shift_forward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int);  \
  template void spatial_shift_backward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int); \
  template void s2_branch_sum<T>(T*, const T*, const int32_t*, S2Geometry);                       \
  template void s2_branch_sum_backward<T>(T*, const T*, const int32_t*, S2Geometry);              \
  template void s2_split_combine<T>(T*, const T*, const T*, const int32_t*, S2Geometry);          \
  template void s2_split_combine_backward<T>(T*, T*, const T*, const T*, const T*, const int32_t*, S2Geometry);
MIXGRAD_S2_INSTANTIATE(float)
MIXGRAD_S2_INSTANTIATE(double)
#undef MIXGRAD_S2_INSTANTIATE

}  // namespace mixgrad::kernels::cpu
