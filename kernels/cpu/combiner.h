// Combiner attention (specs/mixers.md §5): span summaries (max-pool abstractions + a small attention per span) and
// the joint softmax over [direct keys ‖ span summaries], forward and backward; the CPU reference for
// kernels/cuda/combiner.h.
#pragma once
#include <cstdint>

#include "kernels/combiner_index.h"

namespace mixgrad::kernels::cpu {

// Layout: q, k, v, o, dout, dq, dk, dv [B, H, L, d]; lse, delta [B, H, L]; the span tensors sq, sk, sv, dsq, dsk, dsv,
// qarg, karg [B, H, S, d]; slse, sdelta [B, H, S]. lengths [B] (sample b's valid tokens are [0, lengths[b])) or null.
// Every logit is scale·q·k. A padded token is never a member, a direct column or a query; a span without a valid
// member (or a padded query row) contributes nothing. The index ix is the one of kernels/combiner_index.h.

// Summaries: sq = summary query (a member's query or the max-pool of the valid members' queries; qarg the token it
// came from per channel, the first one on ties), sk = max-pool of the valid members' keys (karg), sv = softmax
// attention of sq over the valid members, slse its log-sum-exp. Spans without a valid member: zeros, arg -1,
// slse = +inf.
template <class T>
void combiner_summary_forward(T* sq, T* sk, T* sv, T* slse, int32_t* qarg, int32_t* karg, const T* q, const T* k,
                              const T* v, const int32_t* lengths, const CombinerIndex& ix, int64_t B, int64_t H,
                              int64_t d, T scale);

// Main attention: o_i = softmax over [q_i·k_j (direct j) ‖ q_i·sk_s (span s)] applied to [v_j ‖ sv_s]; lse_i its
// log-sum-exp. Padded query rows: o = 0, lse = +inf.
template <class T>
void combiner_forward(T* o, T* lse, const T* q, const T* k, const T* v, const T* sk, const T* sv,
                      const int32_t* lengths, const CombinerIndex& ix, int64_t B, int64_t H, int64_t d, T scale);

// Backward of combiner_forward: delta = rowsum(dout ⊙ o) (a workspace the caller provides), then dq, dk, dv (of the
// direct part; padded rows 0) and dsk, dsv (gradients of the summaries; spans without a valid member 0), every one
// written once by a gather over the index's transposes (deterministic).
template <class T>
void combiner_backward(T* dq, T* dk, T* dv, T* dsk, T* dsv, T* delta, const T* dout, const T* q, const T* k, const T* v,
                       const T* sk, const T* sv, const T* o, const T* lse, const int32_t* lengths,
                       const CombinerIndex& ix, int64_t B, int64_t H, int64_t d, T scale);

// Backward of combiner_summary_forward, ADDED to dq, dk, dv: the summary attention's gradients reach every valid
// member, the max-pool gradients reach the argmax token of each channel (dsk to karg, the summary query's gradient
// to qarg). dsq [B, H, S, d] and sdelta [B, H, S] are workspaces the caller provides.
template <class T>
void combiner_summary_backward(T* dq, T* dk, T* dv, T* dsq, T* sdelta, const T* dsk, const T* dsv, const T* k,
                               const T* v, const T* sq, const T* sv, const T* slse, const int32_t* qarg,
                               const int32_t* karg, const int32_t* lengths, const CombinerIndex& ix, int64_t B,
                               int64_t H, int64_t d, T scale);

}  // namespace mixgrad::kernels::cpu
