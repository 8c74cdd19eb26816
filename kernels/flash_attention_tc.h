// Tensor-core (TF32 mma.sync) flash attention: the bodies of the forward CTA and the two backward CTAs (dK/dV, dQ),
// written once against a small "warp device" interface so that the CUDA kernels (kernels/cuda/flash_attention.cu,
// with PTX mma.sync and shuffles) and a CPU block emulator (tests/common/warp_emulator.h, threads and barriers) run
// the same code. The emulator checks the tiling, the fragment bookkeeping, masks, dropout and the online softmax on
// any machine; only the instruction itself is taken from the PTX ISA's description.
//
// Semantics: those of FlashParams (kernels/flash_params.h, specs/mixers.md §2.1), with every operand of a product
// (q, k, v, dO, and P, dS) rounded to the precision Prec (kernels/precision.h: TF32, or bfloat16, whose values the
// TF32 instruction multiplies exactly) and fp32 accumulation. Chosen by FlashParams::precision (the engine sets it
// from matmul_precision()). The backward's D = rowsum(dO ∘ O) is the fp32 SIMT preprocess kernel's.
//
// Tiling: a CTA of 4 warps owns 64 rows (queries in the forward and dQ, keys in dK/dV), 16 per warp, and streams
// 64-row tiles of the other side through shared memory. Tiles are stored rounded to Prec, row-major with row stride
// D + 4 floats: with that stride the fragment reads below touch 32 distinct banks. Per streamed tile a warp computes
// its 16 × 64 scores as 8 n-tiles of m16n8k8 (warp_scores), then accumulates scores × rows (warp_accumulate)
// with the score accumulators used directly as A fragments (see below), so scores never leave registers.
//
// mma.sync.m16n8k8.row.col.f32.tf32.tf32.f32 fragment layout (PTX ISA, "Matrix fragments for mma.m16n8k8"),
// lane = 4·g + t (g = groupID 0..7, t = thread in group 0..3):
//   A (16 × 8, row): a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4]
//   B (8 × 8, col):  b0 = B[t][g], b1 = B[t+4][g]
//   C, D (16 × 8):   c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1]
// The k index of one mma is only a summation index, so warp_accumulate uses k slot t for row 2t and slot t+4 for
// row 2t+1: then the scores' A fragment is (c0, c2, c1, c3) of their accumulator, and the B fragment reads rows
// 2t, 2t+1.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/common.h"
#include "kernels/flash_params.h"
#include "kernels/precision.h"

// Device-only under nvcc (the CUDA Dev's members are device functions), plain inline for the host emulator. Loops
// over fragments are fully unrolled on the device so that accumulators stay in registers.
#if defined(__CUDACC__)
#define MIXGRAD_WARP_FN __device__ __forceinline__
#define MIXGRAD_TC_UNROLL _Pragma("unroll")
#else
#define MIXGRAD_WARP_FN inline
#define MIXGRAD_TC_UNROLL
#endif

namespace mixgrad::kernels::flash_tc {

using kernels::bf16_round_bits;
using kernels::MatmulPrecision;
using kernels::tf32_round_bits;

constexpr int kRows = 64;              // query rows per CTA and keys per streamed tile
constexpr int kWarps = 4;              // 16 query rows each
constexpr int kThreads = 32 * kWarps;  // threads per CTA
constexpr int kKeyTiles = kRows / 8;   // n-tiles of S per key tile (8 keys each)

// Row stride, in floats, of the Q, K and V tiles in shared memory.
template <int D>
constexpr int kRowStride = D + 4;
// Dynamic shared memory of the forward CTA: Q, K and V tiles.
constexpr size_t forward_smem_bytes(int D) {
  return sizeof(float) * 3 * static_cast<size_t>(kRows) * static_cast<size_t>(D + 4);
}

// Keys visible to query row i of batch b (the FlashParams rules): kv_len clamped to [0, Tk], then causal.
MIXGRAD_HD int64_t tc_kv_len(const FlashParams& p, int64_t b) {
  if (p.kv_len == nullptr) return p.Tk;
  const int64_t n = p.kv_len[b];
  return n < 0 ? 0 : (n > p.Tk ? p.Tk : n);
}

// An mma operand at precision Prec: TF32 (cvt.rna) or bfloat16 (round to nearest even; a bf16 value is also a TF32
// value, so the TF32 instruction multiplies it exactly).
template <MatmulPrecision Prec, class Dev>
MIXGRAD_WARP_FN float round_operand(Dev& dev, float x) {
  if constexpr (Prec == MatmulPrecision::bf16)
    return dev.from_bits(bf16_round_bits(dev.bits(x)));
  else
    return dev.round_tf32(x);
}

// dst[r·(D+4) + x] = round(src[(r0 + r)·row_stride + x]) for the 64 rows from r0; zero outside nrows and d.
// Consecutive threads read consecutive x (coalesced).
template <int D, MatmulPrecision Prec, class Dev>
MIXGRAD_WARP_FN void load_tile(Dev& dev, float* dst, const float* src, int64_t src_row_stride, int64_t r0,
                               int64_t nrows, int d) {
  constexpr int S = kRowStride<D>;
  for (int idx = dev.tid(); idx < kRows * D; idx += kThreads) {
    const int r = idx / D, x = idx % D;
    float val = 0.0f;
    if (r0 + r < nrows && x < d) val = src[(r0 + r) * src_row_stride + x];
    dst[r * S + x] = round_operand<Prec>(dev, val);
  }
}

// The Dev interface every CTA body below is written against, per thread: tid() in [0, kThreads); smem() (the
// body's *_smem_bytes(D), 16-byte aligned); sync() (CTA barrier); shfl_xor(float, lane mask) (whole warp);
// round_tf32(float) (cvt.rna, as a float whose low 13 bits are 0); bits(float); from_bits(uint32_t);
// mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) (d += A·B, whole warp); exp2(float);
// log2(float). Every lane of a warp reaches every shfl_xor and mma: loop bounds and branches around them are uniform
// per CTA.

// Scores of one warp: acc[nt][c] = Σ_x own[r(c)][x] · str[8·nt + 2t + (c & 1)][x], r(c) = g (c < 2) or g + 8;
// `own` points at the warp's 16 rows, `str` at a 64-row tile (both rounded, row stride D + 4).
template <int D, class Dev>
MIXGRAD_WARP_FN void warp_scores(Dev& dev, float (&acc)[kKeyTiles][4], const float* own, const float* str) {
  constexpr int S = kRowStride<D>;
  const int lane = dev.tid() & 31, g = lane >> 2, t = lane & 3;
  MIXGRAD_TC_UNROLL
  for (int nt = 0; nt < kKeyTiles; ++nt) {
    MIXGRAD_TC_UNROLL
    for (int c = 0; c < 4; ++c) acc[nt][c] = 0.0f;
  }
  MIXGRAD_TC_UNROLL
  for (int kk = 0; kk < D; kk += 8) {
    const float* oa = own + g * S + kk + t;
    const uint32_t a[4] = {dev.bits(oa[0]), dev.bits(oa[8 * S]), dev.bits(oa[4]), dev.bits(oa[8 * S + 4])};
    MIXGRAD_TC_UNROLL
    for (int nt = 0; nt < kKeyTiles; ++nt) {
      const float* sb = str + (8 * nt + g) * S + kk + t;
      const uint32_t bb[2] = {dev.bits(sb[0]), dev.bits(sb[4])};
      dev.mma(acc[nt], a, bb);
    }
  }
}

// acc[ot][c] += Σ_j w[r(c)][j] · rows[j][8·ot + 2t + (c & 1)] over the 64 rows of `rows` (rounded, stride D + 4),
// with w in warp_scores' accumulator layout (rounded to precision Prec here). k slot t of each mma is row 2t, slot
// t + 4 row 2t + 1, so w's A fragment is its accumulator (c0, c2, c1, c3) as it stands.
template <int D, MatmulPrecision Prec, class Dev>
MIXGRAD_WARP_FN void warp_accumulate(Dev& dev, float (&acc)[D / 8][4], const float (&w)[kKeyTiles][4],
                                     const float* rows) {
  constexpr int S = kRowStride<D>;
  const int lane = dev.tid() & 31, g = lane >> 2, t = lane & 3;
  MIXGRAD_TC_UNROLL
  for (int kt = 0; kt < kKeyTiles; ++kt) {
    const uint32_t a[4] = {
        dev.bits(round_operand<Prec>(dev, w[kt][0])), dev.bits(round_operand<Prec>(dev, w[kt][2])),
        dev.bits(round_operand<Prec>(dev, w[kt][1])), dev.bits(round_operand<Prec>(dev, w[kt][3]))};
    const float* rb = rows + (8 * kt + 2 * t) * S + g;
    MIXGRAD_TC_UNROLL
    for (int ot = 0; ot < D / 8; ++ot) {
      const uint32_t bb[2] = {dev.bits(rb[8 * ot]), dev.bits(rb[S + 8 * ot])};
      dev.mma(acc[ot], a, bb);
    }
  }
}

template <int D>
MIXGRAD_WARP_FN void zero_acc(float (&acc)[D / 8][4]) {
  MIXGRAD_TC_UNROLL
  for (int ot = 0; ot < D / 8; ++ot) {
    MIXGRAD_TC_UNROLL
    for (int c = 0; c < 4; ++c) acc[ot][c] = 0.0f;
  }
}

// rows[r][8·ot + 2t + e] = scale · acc[ot][2·half + e] for this lane's row `row` (half 0: g, 1: g + 8) of a
// [rows, d] operand with row stride `stride`; columns at or past d are padding and not written.
template <int D>
MIXGRAD_WARP_FN void store_row(float* base, int64_t row, int64_t stride, int half, int t, int d,
                               const float (&acc)[D / 8][4], float scale) {
  MIXGRAD_TC_UNROLL
  for (int ot = 0; ot < D / 8; ++ot) {
    MIXGRAD_TC_UNROLL
    for (int e = 0; e < 2; ++e) {
      const int col = 8 * ot + 2 * t + e;
      if (col < d) base[row * stride + col] = scale * acc[ot][2 * half + e];
    }
  }
}

// One CTA of the forward: query block `cta % nqb` of head (b, h) = `cta / nqb`. Writes O rows (strides p.o) and
// LSE (contiguous [B, H, T], natural log, +inf on rows that see no key, whose O is 0). `dkey` is
// flash_dropout_key(p.seed, p.offset) when p.dropout_p > 0, `inv_keep` 1/(1 − p.dropout_p).
template <int D, MatmulPrecision Prec, class Dev>
MIXGRAD_WARP_FN void forward_cta(Dev& dev, int64_t cta, float* o, float* lse, const float* q, const float* k,
                                 const float* v, const FlashParams& p, int64_t nqb, uint64_t dkey, float inv_keep) {
  static_assert(D % 8 == 0 && D >= 8, "head dim tile must be a multiple of 8");
  constexpr int S = kRowStride<D>, OT = D / 8;
  constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
  float* Qs = dev.smem();
  float* Ks = Qs + kRows * S;
  float* Vs = Ks + kRows * S;

  const int tid = dev.tid(), lane = tid & 31, g = lane >> 2, t = lane & 3, wr = (tid >> 5) * 16;
  const int dd = static_cast<int>(p.d);
  const int64_t qb = cta % nqb, bh = cta / nqb, h = bh % p.H, b = bh / p.H;
  const int64_t i0 = qb * kRows, Tq = p.T, Tk = p.Tk, kvl = tc_kv_len(p, b);
  const float* kh = k + b * p.k.batch + h * p.k.head;
  const float* vh = v + b * p.v.batch + h * p.v.head;
  const bool dropout = p.dropout_p > 0.0f;
  const float sl2 = p.scale * kLog2e;

  load_tile<D, Prec>(dev, Qs, q + b * p.q.batch + h * p.q.head, p.q.row, i0, Tq, dd);
  // This lane's two query rows: g and g + 8 of the warp's 16 (accumulator elements 0, 1 and 2, 3).
  const int64_t row[2] = {i0 + wr + g, i0 + wr + g + 8};
  int64_t lim[2];
  MIXGRAD_TC_UNROLL
  for (int r = 0; r < 2; ++r) lim[r] = row[r] < Tq ? flash_key_limit(row[r], Tq, Tk, p.causal, kvl) : 0;
  const int64_t last = (i0 + kRows < Tq ? i0 + kRows : Tq) - 1;
  const int64_t kend = flash_key_limit(last, Tq, Tk, p.causal, kvl);

  float acc[OT][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  zero_acc<D>(acc);
  for (int64_t j0 = 0; j0 < kend; j0 += kRows) {
    dev.sync();  // every warp is done with the previous K / V tile (and, the first time, Q is stored)
    load_tile<D, Prec>(dev, Ks, kh, p.k.row, j0, Tk, dd);
    load_tile<D, Prec>(dev, Vs, vh, p.v.row, j0, Tk, dd);
    dev.sync();

    float s[kKeyTiles][4];  // S = Q Kᵀ: row r(c), key j0 + 8·nt + 2t + (c & 1)
    warp_scores<D>(dev, s, Qs + wr * S, Ks);

    // Online softmax in log2 units; each row's 64 scores are spread over the 4 lanes of a quad.
    float alpha[2];
    MIXGRAD_TC_UNROLL
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
      MIXGRAD_TC_UNROLL
      for (int nt = 0; nt < kKeyTiles; ++nt) {
        MIXGRAD_TC_UNROLL
        for (int e = 0; e < 2; ++e) {
          float& x = s[nt][2 * r + e];
          x = (j0 + 8 * nt + 2 * t + e < lim[r]) ? x * sl2 : -INFINITY;
          mx = fmaxf(mx, x);
        }
      }
      mx = fmaxf(mx, dev.shfl_xor(mx, 1));
      mx = fmaxf(mx, dev.shfl_xor(mx, 2));
      const float m_new = fmaxf(m[r], mx);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // nothing visible yet: avoid -inf - -inf
      alpha[r] = dev.exp2(m[r] - m_use);
      float rs = 0.0f;
      MIXGRAD_TC_UNROLL
      for (int nt = 0; nt < kKeyTiles; ++nt) {
        MIXGRAD_TC_UNROLL
        for (int e = 0; e < 2; ++e) {
          float& x = s[nt][2 * r + e];
          x = dev.exp2(x - m_use);
          rs += x;
        }
      }
      l[r] = alpha[r] * l[r] + rs;  // this lane's partial; the quad's four are summed at the end
      m[r] = m_new;
    }
    MIXGRAD_TC_UNROLL
    for (int ot = 0; ot < OT; ++ot) {
      MIXGRAD_TC_UNROLL
      for (int c = 0; c < 4; ++c) acc[ot][c] *= alpha[c >> 1];
    }
    if (dropout) {
      // Keys 2t and 2t + 1 of an n-tile share one Philox block (keys are grouped by 4).
      MIXGRAD_TC_UNROLL
      for (int r = 0; r < 2; ++r) {
        MIXGRAD_TC_UNROLL
        for (int nt = 0; nt < kKeyTiles; ++nt) {
          const int64_t j = j0 + 8 * nt + 2 * t;
          const Philox4 bits4 = flash_dropout_bits4(dkey, b, h, row[r], j >> 2);
          MIXGRAD_TC_UNROLL
          for (int e = 0; e < 2; ++e) {
            const bool keep =
                flash_dropout_keep_word(flash_philox_word(bits4, static_cast<int>((j + e) & 3)), p.dropout_p);
            s[nt][2 * r + e] *= keep ? inv_keep : 0.0f;
          }
        }
      }
    }
    warp_accumulate<D, Prec>(dev, acc, s, Vs);  // O += P V
  }

  float lt[2];
  MIXGRAD_TC_UNROLL
  for (int r = 0; r < 2; ++r) {  // every lane takes part in the shuffles before any lane skips a row
    lt[r] = l[r];
    lt[r] += dev.shfl_xor(lt[r], 1);
    lt[r] += dev.shfl_xor(lt[r], 2);
  }
  float* oh = o + b * p.o.batch + h * p.o.head;
  MIXGRAD_TC_UNROLL
  for (int r = 0; r < 2; ++r) {
    if (row[r] >= Tq) continue;
    // lt = 0 only when the row saw no key (O = 0, LSE = +inf); a NaN score makes lt NaN and NaN comes out.
    const bool saw_keys = lt[r] != 0.0f;
    store_row<D>(oh, row[r], p.o.row, r, t, dd, acc, saw_keys ? 1.0f / lt[r] : 0.0f);
    if (t == 0) lse[bh * Tq + row[r]] = saw_keys ? (m[r] + dev.log2(lt[r])) * kLn2 : INFINITY;
  }
}

// Dynamic shared memory of the backward CTAs: four operand tiles, and for dK/dV per streamed query LSE·log2e, D and the
// key limit.
constexpr size_t backward_dkdv_smem_bytes(int D) {
  return sizeof(float) * (4 * static_cast<size_t>(kRows) * static_cast<size_t>(D + 4) + 2 * kRows) +
         sizeof(int32_t) * kRows;
}
constexpr size_t backward_dq_smem_bytes(int D) {
  return sizeof(float) * 4 * static_cast<size_t>(kRows) * static_cast<size_t>(D + 4);
}

// One CTA of the backward's dK / dV: key block `cta % nkb` of head `cta / nkb`, streaming the query blocks that
// can see it. Per query tile a warp forms, for its 16 keys, Sᵀ = K Qᵀ and dPᵀ = V dOᵀ (warp_scores), then
// Pᵀ = exp2(Sᵀ·scale·log2e − LSE_i·log2e) on visible pairs, dV += (P∘Z)ᵀ dO and dK += (P∘(dP∘Z − D_i))ᵀ Q
// (warp_accumulate), dK scaled once at the end. `Dsum` = rowsum(dO ∘ O) [B, H, T]. Writes every dK / dV row
// of the block (zeros for keys no query sees).
template <int D, MatmulPrecision Prec, class Dev>
MIXGRAD_WARP_FN void backward_dkdv_cta(Dev& dev, int64_t cta, float* dk, float* dv, const float* dout, const float* q,
                                       const float* k, const float* v, const float* lse, const float* Dsum,
                                       const FlashParams& p, int64_t nkb, uint64_t dkey, float inv_keep) {
  constexpr int S = kRowStride<D>, OT = D / 8;
  constexpr float kLog2e = 1.4426950408889634f;
  float* Ks = dev.smem();
  float* Vs = Ks + kRows * S;
  float* Qs = Vs + kRows * S;
  float* dOs = Qs + kRows * S;
  float* lse2s = dOs + kRows * S;
  float* Ds = lse2s + kRows;
  int32_t* limq = reinterpret_cast<int32_t*>(Ds + kRows);

  const int tid = dev.tid(), lane = tid & 31, g = lane >> 2, t = lane & 3, wr = (tid >> 5) * 16;
  const int dd = static_cast<int>(p.d);
  const int64_t kb = cta % nkb, bh = cta / nkb, h = bh % p.H, b = bh / p.H;
  const int64_t j0 = kb * kRows, Tq = p.T, Tk = p.Tk, kvl = tc_kv_len(p, b);
  const float* qh = q + b * p.q.batch + h * p.q.head;
  const float* gh = dout + b * p.dout.batch + h * p.dout.head;
  const bool dropout = p.dropout_p > 0.0f;
  const float sl2 = p.scale * kLog2e;
  const int64_t key[2] = {j0 + wr + g, j0 + wr + g + 8};  // this lane's keys: accumulator rows 0, 1 and 2, 3

  float dka[OT][4], dva[OT][4];
  zero_acc<D>(dka);
  zero_acc<D>(dva);
  if (j0 < kvl) {  // keys at or past kv_len are seen by no query: their gradients stay 0
    load_tile<D, Prec>(dev, Ks, k + b * p.k.batch + h * p.k.head, p.k.row, j0, Tk, dd);
    load_tile<D, Prec>(dev, Vs, v + b * p.v.batch + h * p.v.head, p.v.row, j0, Tk, dd);
    // Causal: query i sees key j0 iff j0 <= i + Tk − T, so earlier query blocks are skipped.
    const int64_t q_first = p.causal ? (j0 - (Tk - Tq) > 0 ? j0 - (Tk - Tq) : 0) : 0;
    for (int64_t i0 = (q_first / kRows) * kRows; i0 < Tq; i0 += kRows) {
      dev.sync();  // every warp is done with the previous query tile
      load_tile<D, Prec>(dev, Qs, qh, p.q.row, i0, Tq, dd);
      load_tile<D, Prec>(dev, dOs, gh, p.dout.row, i0, Tq, dd);
      for (int r = tid; r < kRows; r += kThreads) {
        const int64_t row = i0 + r;
        const bool in = row < Tq;
        lse2s[r] = in ? lse[bh * Tq + row] * kLog2e : INFINITY;
        Ds[r] = in ? Dsum[bh * Tq + row] : 0.0f;
        limq[r] = in ? static_cast<int32_t>(flash_key_limit(row, Tq, Tk, p.causal, kvl)) : 0;
      }
      dev.sync();
      float st[kKeyTiles][4], dpt[kKeyTiles][4];  // keys × queries: key[c >> 1], query i0 + 8·nt + 2t + (c & 1)
      warp_scores<D>(dev, st, Ks + wr * S, Qs);
      warp_scores<D>(dev, dpt, Vs + wr * S, dOs);
      MIXGRAD_TC_UNROLL
      for (int nt = 0; nt < kKeyTiles; ++nt) {
        MIXGRAD_TC_UNROLL
        for (int c = 0; c < 4; ++c) {
          const int qc = 8 * nt + 2 * t + (c & 1);
          const int64_t kr = key[c >> 1];
          const float P = kr < limq[qc] ? dev.exp2(st[nt][c] * sl2 - lse2s[qc]) : 0.0f;
          float z = 1.0f;
          if (dropout) {
            const Philox4 bits4 = flash_dropout_bits4(dkey, b, h, i0 + qc, kr >> 2);
            z = flash_dropout_keep_word(flash_philox_word(bits4, static_cast<int>(kr & 3)), p.dropout_p) ? inv_keep
                                                                                                          : 0.0f;
          }
          st[nt][c] = P * z;
          dpt[nt][c] = P * (dpt[nt][c] * z - Ds[qc]);
        }
      }
      warp_accumulate<D, Prec>(dev, dva, st, dOs);
      warp_accumulate<D, Prec>(dev, dka, dpt, Qs);
    }
  }
  float* dkh = dk + b * p.dk.batch + h * p.dk.head;
  float* dvh = dv + b * p.dv.batch + h * p.dv.head;
  MIXGRAD_TC_UNROLL
  for (int r = 0; r < 2; ++r) {
    if (key[r] >= Tk) continue;
    store_row<D>(dkh, key[r], p.dk.row, r, t, dd, dka, p.scale);
    store_row<D>(dvh, key[r], p.dv.row, r, t, dd, dva, 1.0f);
  }
}

// One CTA of the backward's dQ: query block `cta % nqb` of head `cta / nqb`, streaming its visible key blocks:
// S = Q Kᵀ and dP = dO Vᵀ (warp_scores), dS = P∘(dP∘Z − D), dQ += dS K (warp_accumulate), scaled at the end.
// Its preamble repeats forward_cta's on purpose: moving both into one helper returning a struct cost registers
// (nvcc 13, sm_90: forward d = 64 159 -> 198, dQ d = 64 then spilled 8 bytes), i.e. a CTA less per SM.
template <int D, MatmulPrecision Prec, class Dev>
MIXGRAD_WARP_FN void backward_dq_cta(Dev& dev, int64_t cta, float* dq, const float* dout, const float* q,
                                     const float* k, const float* v, const float* lse, const float* Dsum,
                                     const FlashParams& p, int64_t nqb, uint64_t dkey, float inv_keep) {
  constexpr int S = kRowStride<D>, OT = D / 8;
  constexpr float kLog2e = 1.4426950408889634f;
  float* Qs = dev.smem();
  float* dOs = Qs + kRows * S;
  float* Ks = dOs + kRows * S;
  float* Vs = Ks + kRows * S;

  const int tid = dev.tid(), lane = tid & 31, g = lane >> 2, t = lane & 3, wr = (tid >> 5) * 16;
  const int dd = static_cast<int>(p.d);
  const int64_t qb = cta % nqb, bh = cta / nqb, h = bh % p.H, b = bh / p.H;
  const int64_t i0 = qb * kRows, Tq = p.T, Tk = p.Tk, kvl = tc_kv_len(p, b);
  const float* kh = k + b * p.k.batch + h * p.k.head;
  const float* vh = v + b * p.v.batch + h * p.v.head;
  const bool dropout = p.dropout_p > 0.0f;
  const float sl2 = p.scale * kLog2e;

  load_tile<D, Prec>(dev, Qs, q + b * p.q.batch + h * p.q.head, p.q.row, i0, Tq, dd);
  load_tile<D, Prec>(dev, dOs, dout + b * p.dout.batch + h * p.dout.head, p.dout.row, i0, Tq, dd);
  const int64_t row[2] = {i0 + wr + g, i0 + wr + g + 8};
  int64_t lim[2];
  float lse2[2], Dr[2];
  MIXGRAD_TC_UNROLL
  for (int r = 0; r < 2; ++r) {
    const bool in = row[r] < Tq;
    lim[r] = in ? flash_key_limit(row[r], Tq, Tk, p.causal, kvl) : 0;
    lse2[r] = in ? lse[bh * Tq + row[r]] * kLog2e : INFINITY;
    Dr[r] = in ? Dsum[bh * Tq + row[r]] : 0.0f;
  }
  const int64_t last = (i0 + kRows < Tq ? i0 + kRows : Tq) - 1;
  const int64_t kend = flash_key_limit(last, Tq, Tk, p.causal, kvl);

  float dqa[OT][4];
  zero_acc<D>(dqa);
  for (int64_t j0 = 0; j0 < kend; j0 += kRows) {
    dev.sync();
    load_tile<D, Prec>(dev, Ks, kh, p.k.row, j0, Tk, dd);
    load_tile<D, Prec>(dev, Vs, vh, p.v.row, j0, Tk, dd);
    dev.sync();
    float s[kKeyTiles][4], dp[kKeyTiles][4];  // queries × keys: row[c >> 1], key j0 + 8·nt + 2t + (c & 1)
    warp_scores<D>(dev, s, Qs + wr * S, Ks);
    warp_scores<D>(dev, dp, dOs + wr * S, Vs);
    MIXGRAD_TC_UNROLL
    for (int r = 0; r < 2; ++r) {
      MIXGRAD_TC_UNROLL
      for (int nt = 0; nt < kKeyTiles; ++nt) {
        const int64_t j = j0 + 8 * nt + 2 * t;
        Philox4 bits4{};
        if (dropout) bits4 = flash_dropout_bits4(dkey, b, h, row[r], j >> 2);  // keys j, j + 1 share a block
        MIXGRAD_TC_UNROLL
        for (int e = 0; e < 2; ++e) {
          const int c = 2 * r + e;
          const float P = j + e < lim[r] ? dev.exp2(s[nt][c] * sl2 - lse2[r]) : 0.0f;
          const float z =
              dropout ? (flash_dropout_keep_word(flash_philox_word(bits4, static_cast<int>((j + e) & 3)), p.dropout_p)
                             ? inv_keep
                             : 0.0f)
                      : 1.0f;
          s[nt][c] = P * (dp[nt][c] * z - Dr[r]);
        }
      }
    }
    warp_accumulate<D, Prec>(dev, dqa, s, Ks);
  }
  float* dqh = dq + b * p.dq.batch + h * p.dq.head;
  MIXGRAD_TC_UNROLL
  for (int r = 0; r < 2; ++r)
    if (row[r] < Tq) store_row<D>(dqh, row[r], p.dq.row, r, t, dd, dqa, p.scale);
}

}  // namespace mixgrad::kernels::flash_tc
