// S2-MLPv2 (specs/mixers.md §1): the out-of-place spatial shifts and the split attention of S2Attention, as
// differentiable ops. Implemented in engine/ops_s2mlp.cpp on top of kernels/cpu/spatial_shift.h and
// kernels/cuda/spatial_shift.h (float32/float64 on the CPU, float32 on CUDA).
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mixgrad {

// y = spatial_shift<variant>(x) for x [B, H, W, C] (NHWC; §1.2): quarter q of the channels moves one position along
// rows or columns (shift1: down, up, right, left; shift2: right, left, down, up), the edge row/column keeping its
// own value. Out of place; the gradient is the exact transpose (a gather of at most two dY elements).
Tensor spatial_shift1(const Tensor& x);
Tensor spatial_shift2(const Tensor& x);
Tensor spatial_shift(const Tensor& x, int variant);  // variant 1 or 2
// The transpose for dY [B, H, W, C] (what the tape node runs). Not differentiable.
Tensor spatial_shift_backward(const Tensor& dy, int variant);

// Where the tokens of a [B, N, ·] sequence sit: token 0 is a class token when cls_token (on no grid position),
// the others fill an h × w grid in raster order (i·w + j). N may be shorter than the grid (cls + h·w): the missing
// positions are absent, exactly like padding. With per-sample lengths (int32 [B] on the data's device, each in
// [1, N], class token included) the first lengths[b] tokens are valid: a partial last grid row is a row of the
// valid grid, and a shift along a row or column replicates the edge of its valid part (the rule of §1.2 applied to
// each row and column's valid length), so valid outputs never read padding and padding gets no gradient.
struct S2Grid {
  int64_t h = 0, w = 0;
  bool cls_token = false;
};

// Split attention's input sum (§1.3, K1): z [B, N, 3C] (mlp1's output) -> a [B, C],
// a[b,c] = Σ_{valid n} (shift1(z[..., 0:C]) + shift2(z[..., C:2C]) + z[..., 2C:3C])[b,n,c] — a sum, not a mean.
// The class token takes part unshifted in every branch. Differentiable in z.
Tensor s2_branch_sum(const Tensor& z, const S2Grid& grid, const Tensor& lengths = Tensor());

// The weighted combination (§1.3, K3): out[b,n,c] = Σ_k abar[b,k,c] · X_k[b,n,c] with X_0 = shift1(z[..., 0:C]),
// X_1 = shift2(z[..., C:2C]), X_2 = z[..., 2C:3C], read at shifted indices (no [B, 3, N, C] copy); abar [B, 3, C];
// out [B, N, C], 0 at padded tokens. Differentiable in z and abar.
Tensor s2_split_combine(const Tensor& z, const Tensor& abar, const S2Grid& grid, const Tensor& lengths = Tensor());

// Split attention with k = 3 (§1.3 steps 2–3): a = s2_branch_sum(z); ĥ = w2 · GELU(w1 · a) (exact erf GELU; w1
// [C, C], w2 [3C, C], no biases); abar = softmax over the 3 branches of ĥ viewed as [B, 3, C]; out =
// s2_split_combine(z, abar). The intermediate a and abar are returned for inspection; all are differentiable.
struct S2SplitAttention {
  Tensor a, abar, out;
};
S2SplitAttention s2_split_attention(const Tensor& z, const Tensor& w1, const Tensor& w2, const S2Grid& grid,
                                    const Tensor& lengths = Tensor());

}  // namespace mixgrad
