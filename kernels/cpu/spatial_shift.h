// S2-MLPv2 (specs/mixers.md §1): the out-of-place spatial shifts and the split-attention passes that read mlp1's
// output at shifted indices (no [B, 3, N, C] copy); the CPU reference for kernels/cuda/spatial_shift.h. Index
// formulas: kernels/spatial_shift_math.h.
#pragma once
#include <cstdint>

#include "kernels/spatial_shift_math.h"

namespace mixgrad::kernels::cpu {

// y[b,i,j,c] = x[b, clamp(i − δh, 0, H−1), clamp(j − δw, 0, W−1), c] with (δh, δw) of c's quarter in
// spatial_shift<variant> (variant 1 or 2); x, y [B, H, W, C] NHWC, out of place (y must not alias x).
template <class T>
void spatial_shift_forward(T* y, const T* x, int64_t B, int64_t H, int64_t W, int64_t C, int variant);

// The exact transpose (§1.2): dx[p] = Σ dy over the (at most two) positions reading p; every dx element written.
template <class T>
void spatial_shift_backward(T* dx, const T* dy, int64_t B, int64_t H, int64_t W, int64_t C, int variant);

// The S2Attention passes over z [B, N, 3C] (layout and lengths: s2::S2Geometry). X_k[b,p,c] is z at the token
// branch k reads (s2::source_token); only valid tokens take part, and sums run in ascending token order.
//   a [B, C]      a[b,c] = Σ_{valid p} Σ_k X_k[b,p,c]                                      (K1)
//   out [B, N, C] out[b,p,c] = Σ_k abar[b,k,c] · X_k[b,p,c] for valid p, 0 for padded p     (K3)
// abar, dabar [B, 3, C]. Backward: dz [B, N, 3C] written everywhere (padded tokens 0):
//   branch_sum:    dz[b,p,kC+c] = da[b,c] · (number of valid tokens reading p in branch k)
//   split_combine: dz[b,p,kC+c] = abar[b,k,c] · Σ_{readers r of p} dout[b,r,c];
//                  dabar[b,k,c] = Σ_{valid p} dout[b,p,c] · X_k[b,p,c]
template <class T>
void s2_branch_sum(T* a, const T* z, const int32_t* lengths, s2::S2Geometry g);
template <class T>
void s2_branch_sum_backward(T* dz, const T* da, const int32_t* lengths, s2::S2Geometry g);
template <class T>
void s2_split_combine(T* out, const T* z, const T* abar, const int32_t* lengths, s2::S2Geometry g);
template <class T>
void s2_split_combine_backward(T* dz, T* dabar, const T* dout, const T* z, const T* abar, const int32_t* lengths,
                               s2::S2Geometry g);

}  // namespace mixgrad::kernels::cpu
