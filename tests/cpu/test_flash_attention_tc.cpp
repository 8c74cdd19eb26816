// The TF32 tensor-core flash attention (kernels/flash_attention_tc.h), forward and backward, run on the CPU block
// emulator (tests/common/warp_emulator.h): the very source the CUDA kernels compile, against the float64 CPU kernels
// on the same inputs rounded to TF32 (or bfloat16 for the bf16 rows). Cases cover the head-dim tiles (32, 64, 128,
// and 48 zero-padded to 64), lengths off the 64-row tiles, causal with T != Tk, key lengths including an empty one,
// dropout, a strided fused-qkv layout and NaN propagation. Failures name the worst element.
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/flash_attention.h"
#include "kernels/flash_attention_tc.h"
#include "kernels/flash_params.h"
#include "tests/common/warp_emulator.h"

namespace {

namespace tc = mixgrad::kernels::flash_tc;
using mixgrad::kernels::FlashParams;
using mixgrad::kernels::FlashStrides;
using mixgrad::testing::BlockEmulator;

using mixgrad::kernels::MatmulPrecision;

float tf32(float x) { return std::bit_cast<float>(tc::tf32_round_bits(std::bit_cast<uint32_t>(x))); }
float bf16(float x) { return std::bit_cast<float>(tc::bf16_round_bits(std::bit_cast<uint32_t>(x))); }
float round_to(MatmulPrecision p, float x) { return p == MatmulPrecision::bf16 ? bf16(x) : tf32(x); }

// One row of the table: sizes, masks, dropout, layout.
struct Case {
  std::string name;
  int64_t B, H, T, Tk, d;
  bool causal = false;
  std::vector<int32_t> kv_len = {};  // empty: no key lengths
  float dropout = 0.0f;
  bool packed = false;    // q, k, v interleaved in one [B, T, 3, H, d] buffer (T == Tk), o as [B, T, H, d]
  bool nan_in_q = false;  // q[0] (batch 0, head 0, row 0) is NaN
  MatmulPrecision precision = MatmulPrecision::tf32;
};

struct Buffers {
  std::vector<float> q, k, v;  // storage the strides in p index (one qkv buffer in q when packed)
  std::vector<float> o, lse, dout;
  std::vector<float> dq, dk, dv;  // one dqkv buffer in dq when packed
  FlashParams p;
};

Buffers make_buffers(const Case& c, uint32_t seed) {
  Buffers bf;
  FlashParams& p = bf.p;
  if (c.packed) {
    p.B = c.B, p.H = c.H, p.T = c.T, p.Tk = c.Tk, p.d = c.d;
    const int64_t dim = c.H * c.d;
    p.q = p.k = p.v = p.dq = p.dk = p.dv = FlashStrides{c.T * 3 * dim, c.d, 3 * dim};
    p.o = p.dout = FlashStrides{c.T * dim, c.d, dim};
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.d));
  } else {
    p = mixgrad::kernels::flash_params_contiguous(c.B, c.H, c.T, c.Tk, c.d);
  }
  p.causal = c.causal;
  if (c.dropout > 0.0f) p.dropout_p = c.dropout, p.seed = 1234, p.offset = 7;
  std::mt19937 gen(seed);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  const auto fill = [&](std::vector<float>& x, int64_t count) {
    x.resize(static_cast<size_t>(count));
    for (float& e : x) e = n01(gen);
  };
  if (c.packed) {
    fill(bf.q, c.B * c.T * 3 * c.H * c.d);
  } else {
    fill(bf.q, c.B * c.H * c.T * c.d);
    fill(bf.k, c.B * c.H * c.Tk * c.d);
    fill(bf.v, c.B * c.H * c.Tk * c.d);
  }
  fill(bf.dout, c.B * c.T * c.H * c.d);
  if (c.nan_in_q) bf.q[0] = std::numeric_limits<float>::quiet_NaN();
  // Outputs start as NaN so that an element the kernels fail to write is caught.
  bf.o.assign(static_cast<size_t>(c.B * c.T * c.H * c.d), std::nanf(""));
  bf.lse.assign(static_cast<size_t>(c.B * c.H * c.T), std::nanf(""));
  bf.dq.assign(bf.q.size(), std::nanf(""));
  bf.dk.assign(bf.k.size(), std::nanf(""));
  bf.dv.assign(bf.v.size(), std::nanf(""));
  return bf;
}

// Where K and V (and dK, dV) start: offsets into the one (d)qkv buffer when packed.
template <class T>
T* k_base(std::vector<T>& q, std::vector<T>& k, const Case& c) {
  return c.packed ? q.data() + c.H * c.d : k.data();
}
template <class T>
T* v_base(std::vector<T>& q, std::vector<T>& v, const Case& c) {
  return c.packed ? q.data() + 2 * c.H * c.d : v.data();
}

// D = rowsum(dO ∘ O) per (b, h, query), contiguous [B, H, T], in float (the CUDA preprocess kernel's output).
std::vector<float> row_dots(const Buffers& bf) {
  const FlashParams& p = bf.p;
  std::vector<float> D(static_cast<size_t>(p.B * p.H * p.T));
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      for (int64_t i = 0; i < p.T; ++i) {
        double s = 0.0;
        for (int64_t x = 0; x < p.d; ++x)
          s += double(bf.dout[size_t(b * p.dout.batch + h * p.dout.head + i * p.dout.row + x)]) *
               double(bf.o[size_t(b * p.o.batch + h * p.o.head + i * p.o.row + x)]);
        D[size_t((b * p.H + h) * p.T + i)] = float(s);
      }
  return D;
}

// Runs fn(dev, cta) for every CTA of a grid, each on a fresh emulated block; returns the non-TF32 mma operands seen.
template <class Fn>
int64_t run_grid(int64_t ctas, size_t smem_bytes, Fn&& fn) {
  int64_t bad = 0;
  for (int64_t cta = 0; cta < ctas; ++cta) {
    BlockEmulator block(tc::kThreads, smem_bytes);
    block.run([&](BlockEmulator::Dev& dev) { fn(dev, cta); });
    bad += block.non_tf32_operands();
  }
  return bad;
}

// The tensor-core forward, then (with D from its O) the dK/dV and dQ CTAs, on the emulator; returns the count of
// non-TF32 mma operands.
template <int D, MatmulPrecision Prec>
int64_t run_emulated(Buffers& bf, const Case& c) {
  const FlashParams& p = bf.p;
  const int64_t nqb = (p.T + tc::kRows - 1) / tc::kRows, nkb = (p.Tk + tc::kRows - 1) / tc::kRows;
  const uint64_t dkey = p.dropout_p > 0.0f ? mixgrad::kernels::flash_dropout_key(p.seed, p.offset) : 0;
  const float inv_keep = 1.0f / (1.0f - p.dropout_p);
  const float* k = k_base(bf.q, bf.k, c);
  const float* v = v_base(bf.q, bf.v, c);
  int64_t bad = run_grid(nqb * p.B * p.H, tc::forward_smem_bytes(D), [&](BlockEmulator::Dev& dev, int64_t cta) {
    tc::forward_cta<D, Prec>(dev, cta, bf.o.data(), bf.lse.data(), bf.q.data(), k, v, p, nqb, dkey, inv_keep);
  });
  const std::vector<float> Dsum = row_dots(bf);
  float* dk = k_base(bf.dq, bf.dk, c);
  float* dv = v_base(bf.dq, bf.dv, c);
  bad += run_grid(nkb * p.B * p.H, tc::backward_dkdv_smem_bytes(D), [&](BlockEmulator::Dev& dev, int64_t cta) {
    tc::backward_dkdv_cta<D, Prec>(dev, cta, dk, dv, bf.dout.data(), bf.q.data(), k, v, bf.lse.data(), Dsum.data(), p,
                                   nkb, dkey, inv_keep);
  });
  bad += run_grid(nqb * p.B * p.H, tc::backward_dq_smem_bytes(D), [&](BlockEmulator::Dev& dev, int64_t cta) {
    tc::backward_dq_cta<D, Prec>(dev, cta, bf.dq.data(), bf.dout.data(), bf.q.data(), k, v, bf.lse.data(), Dsum.data(),
                                 p, nqb, dkey, inv_keep);
  });
  return bad;
}

template <MatmulPrecision Prec>
int64_t run_emulated_at(Buffers& bf, const Case& c) {
  if (c.d <= 32) return run_emulated<32, Prec>(bf, c);
  if (c.d <= 64) return run_emulated<64, Prec>(bf, c);
  return run_emulated<128, Prec>(bf, c);
}

int64_t run_emulated_any(Buffers& bf, const Case& c) {
  return c.precision == MatmulPrecision::bf16 ? run_emulated_at<MatmulPrecision::bf16>(bf, c)
                                              : run_emulated_at<MatmulPrecision::tf32>(bf, c);
}

struct Reference {
  std::vector<double> o, dq, dk, dv;
  std::vector<float> lse;
};

// The float64 CPU kernels on the inputs and dO rounded to the case's precision (what the tensor cores multiply), same
// strides, masks and dropout mask.
Reference reference(const Buffers& bf, const Case& c) {
  const auto rounded = [&](const std::vector<float>& x) {
    std::vector<double> r(x.size());
    for (size_t i = 0; i < x.size(); ++i) r[i] = round_to(c.precision, x[i]);
    return r;
  };
  std::vector<double> q = rounded(bf.q), k = rounded(bf.k), v = rounded(bf.v), g = rounded(bf.dout);
  Reference r;
  r.o.assign(bf.o.size(), std::nan(""));
  r.lse.assign(bf.lse.size(), std::nanf(""));
  r.dq.assign(bf.dq.size(), std::nan(""));
  r.dk.assign(bf.dk.size(), std::nan(""));
  r.dv.assign(bf.dv.size(), std::nan(""));
  const double* kb = k_base(q, k, c);
  const double* vb = v_base(q, v, c);
  namespace kc = mixgrad::kernels::cpu;
  kc::flash_attention_forward(r.o.data(), r.lse.data(), q.data(), kb, vb, bf.p);
  std::vector<double> ws(kc::flash_attention_backward_workspace_bytes(bf.p) / sizeof(double) + 1);
  kc::flash_attention_backward(r.dq.data(), k_base(r.dq, r.dk, c), v_base(r.dq, r.dv, c), g.data(), q.data(), kb, vb,
                               r.o.data(), r.lse.data(), bf.p, ws.data());
  return r;
}

// |got − want| <= abs + rel·|want| everywhere; infinities must match; NaN must match NaN.
void require_close(const std::vector<float>& got, const std::vector<double>& want, double abs_tol, double rel_tol,
                   const std::string& what) {
  REQUIRE(got.size() == want.size());
  REQUIRE(!got.empty());
  size_t worst = 0, bad = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    double excess;
    if (std::isnan(w) || std::isnan(g)) {
      excess = std::isnan(w) && std::isnan(g) ? -1.0 : std::numeric_limits<double>::infinity();
    } else if (std::isinf(w) || std::isinf(g)) {
      excess = g == w ? -1.0 : std::numeric_limits<double>::infinity();
    } else {
      excess = std::abs(g - w) - (abs_tol + rel_tol * std::abs(w));
    }
    if (excess > 0) ++bad;
    if (excess > worst_excess) worst_excess = excess, worst = i;
  }
  INFO(what << ": " << bad << " of " << got.size() << " elements out of tolerance; worst at flat index " << worst
            << ": got " << got[worst] << ", want " << want[worst] << " (abs " << abs_tol << ", rel " << rel_tol << ")");
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("flash attention tc: round_tf32 is cvt.rna (nearest, ties away from zero)", "[flash][tc]") {
  const auto bits = [](float x) { return std::bit_cast<uint32_t>(x); };
  CHECK(tf32(1.0f) == 1.0f);
  // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: away from zero. Just below the tie rounds down.
  CHECK(tf32(1.0f + std::ldexp(1.0f, -11)) == 1.0f + std::ldexp(1.0f, -10));
  CHECK(tf32(-(1.0f + std::ldexp(1.0f, -11))) == -(1.0f + std::ldexp(1.0f, -10)));
  CHECK(tf32(std::nextafter(1.0f + std::ldexp(1.0f, -11), 0.0f)) == 1.0f);
  CHECK((bits(tf32(0.1f)) & 0x1fffu) == 0);
  CHECK(std::abs(tf32(0.1f) - 0.1f) <= 0.1f * std::ldexp(1.0f, -11));
  CHECK(tf32(std::numeric_limits<float>::max()) == std::numeric_limits<float>::infinity());
  CHECK(tf32(-std::numeric_limits<float>::infinity()) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(tf32(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(tf32(std::bit_cast<float>(0x7f800001u))));  // a NaN whose payload sits in the dropped bits
  CHECK(tf32(std::numeric_limits<float>::denorm_min()) == 0.0f);
}

constexpr MatmulPrecision kBf16 = MatmulPrecision::bf16;
struct Tolerances {
  double o_abs, o_rel, grad_abs, grad_rel;
};
// Worst seen over the table: TF32 O 3e-4, gradients 1.4e-3 (dK, d 48; 1e-3 at N = 1000 in a one-off run); bf16
// O 4.7e-3 (at |O| = 3), gradients 1.3e-2: D = rowsum(dO ∘ O) comes from the unrounded dO while dP uses the rounded
// one, so a row that sees one key gets dS ~ 2^-8·|dP| instead of 0. An indexing slip shows as O(0.1-1), and the
// TF32 rows check the shared code tightly.
constexpr Tolerances kTf32Tol{1e-3, 1e-3, 5e-3, 2e-3}, kBf16Tol{1e-2, 5e-3, 3e-2, 1e-2};

TEST_CASE("flash attention tc: emulated tensor-core forward and backward match the float64 kernels on TF32 inputs",
          "[flash][tc]") {
  const std::vector<Case> cases = {
      {"d64 one tile", 1, 1, 64, 64, 64},
      {"d64 two heads, T and Tk off the tile", 1, 2, 100, 77, 64},
      {"d32 causal T < Tk (bottom-right)", 2, 1, 40, 130, 32, true},
      {"d64 causal T > Tk (the first 60 rows see no key)", 1, 2, 130, 70, 64, true},
      {"d128 long keys", 1, 1, 33, 200, 128},
      {"d48 padded to 64, causal", 1, 1, 70, 70, 48, true},
      {"d16 padded to 32, key lengths 0 and 50", 2, 1, 65, 90, 16, false, {0, 50}},
      {"d64 causal with key lengths", 2, 1, 80, 80, 64, true, {80, 17}},
      {"d64 dropout 0.2", 1, 2, 80, 96, 64, false, {}, 0.2f},
      {"d32 packed qkv", 2, 3, 70, 70, 32, false, {}, 0.0f, true},
      {"d32 NaN in one query", 1, 1, 20, 20, 32, false, {}, 0.0f, false, true},
      {"bf16 d64 two heads, T and Tk off the tile", 1, 2, 100, 77, 64, false, {}, 0.0f, false, false, kBf16},
      {"bf16 d128 causal, key lengths, dropout", 2, 1, 90, 90, 128, true, {90, 33}, 0.1f, false, false, kBf16},
      {"bf16 d32 packed qkv", 1, 2, 70, 70, 32, false, {}, 0.0f, true, false, kBf16},
  };
  uint32_t seed = 17;
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.name) {
      Buffers bf = make_buffers(c, seed++);
      if (!c.kv_len.empty()) bf.p.kv_len = c.kv_len.data();
      const int64_t bad_operands = run_emulated_any(bf, c);
      CHECK(bad_operands == 0);  // every mma operand was a TF32 value
      const Reference ref = reference(bf, c);
      // P is rounded (TF32: relative 2^-11, bf16: 2^-8) before P·V and sums are fp32. The backward also rounds P and
      // dS and starts from the tensor-core forward's O and LSE.
      const Tolerances tol = c.precision == kBf16 ? kBf16Tol : kTf32Tol;
      require_close(bf.o, ref.o, tol.o_abs, tol.o_rel, "O " + c.name);
      require_close(bf.lse, std::vector<double>(ref.lse.begin(), ref.lse.end()), 1e-4, 1e-5, "LSE " + c.name);
      require_close(bf.dq, ref.dq, tol.grad_abs, tol.grad_rel, c.packed ? "dQKV " + c.name : "dQ " + c.name);
      if (!c.packed) {  // packed: dK and dV live in the dqkv buffer checked above
        require_close(bf.dk, ref.dk, tol.grad_abs, tol.grad_rel, "dK " + c.name);
        require_close(bf.dv, ref.dv, tol.grad_abs, tol.grad_rel, "dV " + c.name);
      }
    }
  }
}
