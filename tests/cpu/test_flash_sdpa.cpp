// scaled_dot_product_attention's fused path (engine/ops_attention.cpp) on the CPU: fused vs composite vs a float64
// loop reference (forward and dQ, dK, dV) over head dims and lengths, backend choice for masks, fully masked rows,
// dropout (its own mask, finite differences), the ViT mixer under both backends, and peak memory linear in N.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "engine/attention.h"
#include "engine/mixgrad.h"
#include "kernels/flash_params.h"
#include "models/vit.h"
#include "tests/common/check.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

using Vec = std::vector<double>;
// allowed(b, i, j): may query i of batch b attend to key j.
using Allowed = std::function<bool(int64_t, int64_t, int64_t)>;

// float32 fused/composite against float64: the forward uses the table's forward_f32; the gradients sum T·Tk terms
// of O(1) products in float32, so they get a looser bound (the table has no float32-gradient entry).
constexpr testing::Tolerance kGradF32{2e-4, 2e-5};

struct Ref {
  Vec o, dq, dk, dv;
};

// Materialised softmax attention and the gradients of sum(O ⊙ G), in float64 loops; no dropout.
Ref reference(const Tensor& q_t, const Tensor& k_t, const Tensor& v_t, const Tensor& g_t, const Allowed& allowed,
              double scale) {
  const int64_t B = q_t.size(0), H = q_t.size(1), T = q_t.size(2), d = q_t.size(3), Tk = k_t.size(2);
  const auto host = [](const Tensor& t) { return t.detach().to(DType::f64).to_vector<double>(); };
  const Vec Q = host(q_t), K = host(k_t), V = host(v_t), G = host(g_t);
  Ref r{Vec(Q.size(), 0.0), Vec(Q.size(), 0.0), Vec(K.size(), 0.0), Vec(K.size(), 0.0)};
  Vec s(static_cast<size_t>(Tk)), dp(static_cast<size_t>(Tk));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const size_t qo = size_t((b * H + h) * T * d), ko = size_t((b * H + h) * Tk * d);
      for (int64_t i = 0; i < T; ++i) {
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Tk; ++j) {
          if (!allowed(b, i, j)) continue;
          double dot = 0;
          for (int64_t e = 0; e < d; ++e) dot += Q[qo + size_t(i * d + e)] * K[ko + size_t(j * d + e)];
          s[size_t(j)] = dot * scale;
          mx = std::max(mx, s[size_t(j)]);
        }
        if (mx == -std::numeric_limits<double>::infinity()) continue;  // no visible key: O = 0, no gradient
        double z = 0;
        for (int64_t j = 0; j < Tk; ++j)
          if (allowed(b, i, j)) z += std::exp(s[size_t(j)] - mx);
        double D = 0;
        for (int64_t j = 0; j < Tk; ++j) {
          if (!allowed(b, i, j)) continue;
          const double p = std::exp(s[size_t(j)] - mx) / z;
          s[size_t(j)] = p;
          double gv = 0;
          for (int64_t e = 0; e < d; ++e) {
            r.o[qo + size_t(i * d + e)] += p * V[ko + size_t(j * d + e)];
            r.dv[ko + size_t(j * d + e)] += p * G[qo + size_t(i * d + e)];
            gv += G[qo + size_t(i * d + e)] * V[ko + size_t(j * d + e)];
          }
          dp[size_t(j)] = gv;
          D += p * gv;
        }
        for (int64_t j = 0; j < Tk; ++j) {
          if (!allowed(b, i, j)) continue;
          const double ds = s[size_t(j)] * (dp[size_t(j)] - D) * scale;
          for (int64_t e = 0; e < d; ++e) {
            r.dq[qo + size_t(i * d + e)] += ds * K[ko + size_t(j * d + e)];
            r.dk[ko + size_t(j * d + e)] += ds * Q[qo + size_t(i * d + e)];
          }
        }
      }
    }
  return r;
}

Tensor as_tensor(const Vec& v, const Shape& s) { return from_vector(v, s, TensorOptions(DType::f64)); }

Tensor leaf(const Shape& s, DType dt = DType::f32) {
  Tensor t = randn(s, TensorOptions(dt)).detach();
  t.requires_grad_();
  return t;
}

struct Run {
  Tensor o, dq, dk, dv;
  std::string node;  // name of the node that produced o
  size_t tape = 0;   // tape length right after the forward
};

// Forward with fresh leaves copied from q, k, v, then backward with gradient g.
Run run_sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& mask, bool causal,
             AttentionBackend backend, double dropout = 0.0, double scale = -1.0) {
  autograd::clear_tape();
  Tensor ql = q.detach().clone(), kl = k.detach().clone(), vl = v.detach().clone();
  for (Tensor* t : {&ql, &kl, &vl}) t->requires_grad_();
  Run r;
  r.o = scaled_dot_product_attention(ql, kl, vl, mask, causal, dropout, scale, backend);
  r.tape = autograd::tape_size();
  const auto node = r.o.impl().grad_fn.lock();
  r.node = node ? node->name() : "";
  autograd::backward(r.o, g);
  r.o = r.o.detach();
  r.dq = ql.grad(), r.dk = kl.grad(), r.dv = vl.grad();
  return r;
}

void require_matches(const Run& r, const Ref& want, const Shape& qs, const Shape& ks, testing::Tolerance fwd,
                     testing::Tolerance grad) {
  REQUIRE_CLOSE(testing::all_close(r.o.to(DType::f64), as_tensor(want.o, qs), fwd));
  REQUIRE_CLOSE(testing::all_close(r.dq.to(DType::f64), as_tensor(want.dq, qs), grad));
  REQUIRE_CLOSE(testing::all_close(r.dk.to(DType::f64), as_tensor(want.dk, ks), grad));
  REQUIRE_CLOSE(testing::all_close(r.dv.to(DType::f64), as_tensor(want.dv, ks), grad));
}

bool finite_all(const Tensor& t) {
  for (double x : t.detach().to(DType::f64).to_vector<double>())
    if (!std::isfinite(x)) return false;
  return true;
}

Tensor key_padding(const std::vector<std::vector<int>>& rows) {
  const int64_t b = int64_t(rows.size()), tk = int64_t(rows[0].size());
  Tensor m = empty({b, 1, 1, tk}, TensorOptions(DType::u8));
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < tk; ++j) m.data<uint8_t>()[i * tk + j] = uint8_t(rows[size_t(i)][size_t(j)]);
  return m;
}

std::vector<int> prefix(int64_t n, int64_t tk) {
  std::vector<int> r(size_t(tk), 0);
  for (int64_t j = 0; j < n && j < tk; ++j) r[size_t(j)] = 1;
  return r;
}

const Allowed kAll = [](int64_t, int64_t, int64_t) { return true; };

}  // namespace

TEST_CASE("fused sdpa matches composite and a float64 reference over head dims and lengths", "[attention][flash]") {
  struct Case {
    int64_t b, h, t, tk, d;
  };
  const std::vector<Case> cases = {{1, 1, 1, 1, 16},   {2, 2, 1, 70, 32},   {2, 2, 63, 63, 16}, {1, 2, 64, 64, 32},
                                   {2, 1, 65, 65, 64}, {1, 2, 130, 97, 128}, {1, 1, 200, 333, 64},
                                   {1, 1, 2048, 2048, 64}, {1, 1, 2048, 2048, 128}};
  manual_seed(101);
  for (const Case& c : cases) {
    INFO("B " << c.b << " H " << c.h << " T " << c.t << " Tk " << c.tk << " d " << c.d);
    const Shape qs{c.b, c.h, c.t, c.d}, ks{c.b, c.h, c.tk, c.d};
    Tensor q = randn(qs), k = randn(ks), v = randn(ks), g = randn(qs);
    const Ref want = reference(q, k, v, g, kAll, 1.0 / std::sqrt(double(c.d)));
    const Run fused = run_sdpa(q, k, v, g, Tensor(), false, AttentionBackend::automatic);
    CHECK(fused.node == "flash_attention");
    CHECK(fused.tape == 1);  // one node for the whole op
    require_matches(fused, want, qs, ks, tolerance(Compare::forward_f32), kGradF32);
    if (c.t <= 256) {  // the composite path at 2048 is exercised by the memory test
      const Run comp = run_sdpa(q, k, v, g, Tensor(), false, AttentionBackend::composite);
      CHECK(comp.node != "flash_attention");
      CHECK(comp.tape > 1);
      require_matches(comp, want, qs, ks, tolerance(Compare::forward_f32), kGradF32);
      REQUIRE_CLOSE(testing::all_close(fused.o, comp.o, tolerance(Compare::forward_f32)));
    }
  }
}

TEST_CASE("fused sdpa in float64 (forced) and explicit scale", "[attention][flash]") {
  manual_seed(102);
  const Shape qs{2, 2, 37, 24}, ks{2, 2, 45, 24};
  Tensor q = randn(qs, TensorOptions(DType::f64)), k = randn(ks, TensorOptions(DType::f64)),
         v = randn(ks, TensorOptions(DType::f64)), g = randn(qs, TensorOptions(DType::f64));
  // automatic keeps float64 on the composite path (LSE is float32 in the kernels).
  CHECK(run_sdpa(q, k, v, g, Tensor(), false, AttentionBackend::automatic).node != "flash_attention");
  for (double scale : {-1.0, 0.37, 0.125}) {
    INFO("scale " << scale);
    const double s = scale > 0 ? scale : 1.0 / std::sqrt(24.0);
    const Ref want = reference(q, k, v, g, kAll, s);
    const Run r = run_sdpa(q, k, v, g, Tensor(), false, AttentionBackend::fused, 0.0, scale);
    REQUIRE(r.node == "flash_attention");
    // Forward exact to float64 rounding (a scale float cannot hold is applied to Q exactly); gradients carry the
    // float32 LSE's ~1e-7 relative error.
    require_matches(r, want, qs, ks, tolerance(Compare::forward_f64), {1e-5, 1e-6});
  }
}

TEST_CASE("fused sdpa: causal and key padding take the fused path; other masks fall back", "[attention][flash]") {
  manual_seed(103);
  const int64_t b = 3, h = 2, d = 32;
  for (auto [t, tk] : std::vector<std::pair<int64_t, int64_t>>{{70, 70}, {40, 100}, {100, 40}, {1, 65}}) {
    INFO("T " << t << " Tk " << tk);
    const Shape qs{b, h, t, d}, ks{b, h, tk, d};
    Tensor q = randn(qs), k = randn(ks), v = randn(ks), g = randn(qs);
    const std::vector<int64_t> lens = {tk, tk / 2 + 1, 1};
    Tensor pad = key_padding({prefix(lens[0], tk), prefix(lens[1], tk), prefix(lens[2], tk)});
    const auto causal_ok = [t = t, tk = tk](int64_t i, int64_t j) { return j <= i + (tk - t); };
    const auto pad_ok = [&lens](int64_t bb, int64_t j) { return j < lens[size_t(bb)]; };
    for (bool causal : {false, true}) {
      INFO("causal " << causal);
      const Allowed with_pad = [&](int64_t bb, int64_t i, int64_t j) {
        return pad_ok(bb, j) && (!causal || causal_ok(i, j));
      };
      const Allowed no_pad = [&](int64_t, int64_t i, int64_t j) { return !causal || causal_ok(i, j); };
      const double s = 1.0 / std::sqrt(double(d));
      const Run plain = run_sdpa(q, k, v, g, Tensor(), causal, AttentionBackend::automatic);
      CHECK(plain.node == "flash_attention");
      require_matches(plain, reference(q, k, v, g, no_pad, s), qs, ks, tolerance(Compare::forward_f32), kGradF32);
      const Run padded = run_sdpa(q, k, v, g, pad, causal, AttentionBackend::automatic);
      CHECK(padded.node == "flash_attention");
      require_matches(padded, reference(q, k, v, g, with_pad, s), qs, ks, tolerance(Compare::forward_f32), kGradF32);
      // A [1, Tk] prefix mask broadcast over the batch is a key-padding mask too.
      Tensor shared = from_vector<uint8_t>(
          [&] { std::vector<uint8_t> m(size_t(tk), 0); for (int64_t j = 0; j < lens[1]; ++j) m[size_t(j)] = 1; return m; }(),
          {1, tk}, TensorOptions(DType::u8));
      const Allowed shared_ok = [&](int64_t, int64_t i, int64_t j) { return j < lens[1] && (!causal || causal_ok(i, j)); };
      const Run bc = run_sdpa(q, k, v, g, shared, causal, AttentionBackend::automatic);
      CHECK(bc.node == "flash_attention");
      require_matches(bc, reference(q, k, v, g, shared_ok, s), qs, ks, tolerance(Compare::forward_f32), kGradF32);
    }
    // A mask with a hole (not a prefix) falls back to the composite path and is still right; forcing fused throws.
    std::vector<int> holes(size_t(tk), 1);
    for (int64_t j = 1; j < tk; j += 3) holes[size_t(j)] = 0;
    Tensor hole_mask = key_padding({holes, prefix(lens[1], tk), holes});
    const Allowed hole_ok = [&](int64_t bb, int64_t, int64_t j) {
      return bb == 1 ? j < lens[1] : holes[size_t(j)] != 0;
    };
    const Run fb = run_sdpa(q, k, v, g, hole_mask, false, AttentionBackend::automatic);
    CHECK(fb.node != "flash_attention");
    require_matches(fb, reference(q, k, v, g, hole_ok, 1.0 / std::sqrt(double(d))), qs, ks,
                    tolerance(Compare::forward_f32), kGradF32);
    CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, v, hole_mask, false, 0.0, -1.0, AttentionBackend::fused),
                      Catch::Contains("fused") && Catch::Contains("prefix"));
    // A per-query mask [B, 1, T, Tk] (T > 1) is not a key-padding mask either.
    Tensor per_query = ones({b, 1, t, tk}, TensorOptions(DType::u8));
    CHECK((run_sdpa(q, k, v, g, per_query, false, AttentionBackend::automatic).node == "flash_attention") == (t == 1));
  }
}

TEST_CASE("fused sdpa: fully masked rows give zero output and zero gradients, no NaN", "[attention][flash]") {
  manual_seed(104);
  const int64_t b = 2, h = 2, t = 70, tk = 67, d = 16;
  const Shape qs{b, h, t, d}, ks{b, h, tk, d};
  Tensor q = randn(qs), k = randn(ks), v = randn(ks), g = randn(qs);
  Tensor pad = key_padding({prefix(tk, tk), prefix(0, tk)});  // batch 1: every key padded
  // causal with T > Tk: the first T - Tk queries of batch 0 see no key.
  const Run r = run_sdpa(q, k, v, g, pad, true, AttentionBackend::automatic);
  REQUIRE(r.node == "flash_attention");
  for (const Tensor* x : {&r.o, &r.dq, &r.dk, &r.dv}) REQUIRE(finite_all(*x));
  const Vec o = r.o.to(DType::f64).to_vector<double>(), dq = r.dq.to(DType::f64).to_vector<double>();
  const Vec dk = r.dk.to(DType::f64).to_vector<double>(), dv = r.dv.to(DType::f64).to_vector<double>();
  for (int64_t hh = 0; hh < h; ++hh)
    for (int64_t i = 0; i < t - tk; ++i)
      for (int64_t e = 0; e < d; ++e) {
        CHECK(o[size_t(((0 * h + hh) * t + i) * d + e)] == 0.0);
        CHECK(dq[size_t(((0 * h + hh) * t + i) * d + e)] == 0.0);
      }
  for (int64_t x = 0; x < h * t * d; ++x) {
    CHECK(o[size_t(h * t * d + x)] == 0.0);
    CHECK(dq[size_t(h * t * d + x)] == 0.0);
  }
  for (int64_t x = 0; x < h * tk * d; ++x) {
    CHECK(dk[size_t(h * tk * d + x)] == 0.0);
    CHECK(dv[size_t(h * tk * d + x)] == 0.0);
  }
  const Allowed vis = [&](int64_t bb, int64_t i, int64_t j) { return bb == 0 && j <= i + (tk - t); };
  require_matches(r, reference(q, k, v, g, vis, 0.25), qs, ks, tolerance(Compare::forward_f32), kGradF32);
}

TEST_CASE("fused sdpa dropout: the documented keep-mask, regenerated in backward (finite differences)",
          "[attention][flash]") {
  manual_seed(105);
  const double p = 0.3;
  // v = identity (d = Tk): the output is the dropped probability matrix, P ⊙ M / (1 - p).
  const int64_t b = 2, h = 2, t = 9, tk = 12;
  Tensor q = randn({b, h, t, tk}), k = randn({b, h, tk, tk});
  Tensor eye = zeros({tk, tk});
  for (int64_t j = 0; j < tk; ++j) eye.data<float>()[j * tk + j] = 1.0f;
  Tensor v = expand(eye.reshape({1, 1, tk, tk}), {b, h, tk, tk});
  Tensor probs = scaled_dot_product_attention(q, k, v, Tensor(), false, 0.0, -1.0, AttentionBackend::fused);
  const GeneratorState s0 = generator_state();
  const uint64_t stream = next_random_stream();  // the stream the next random op takes
  set_generator_state(s0);
  Tensor dropped = scaled_dot_product_attention(q, k, v, Tensor(), false, p, -1.0, AttentionBackend::fused);
  CHECK(generator_state().offset == s0.offset + 1);  // one stream per call, like dropout()
  const Vec P = probs.to(DType::f64).to_vector<double>(), Dr = dropped.to(DType::f64).to_vector<double>();
  int64_t dropped_n = 0;
  for (int64_t bb = 0; bb < b; ++bb)
    for (int64_t hh = 0; hh < h; ++hh)
      for (int64_t i = 0; i < t; ++i)
        for (int64_t j = 0; j < tk; ++j) {
          const size_t x = size_t(((bb * h + hh) * t + i) * tk + j);
          const bool keep = kernels::flash_dropout_keep(s0.seed, stream, bb, hh, i, j, float(p));
          INFO("b " << bb << " h " << hh << " i " << i << " j " << j);
          if (keep) {
            REQUIRE(std::abs(Dr[x] - P[x] / (1 - p)) <= 1e-6 * (1 + P[x]));
          } else {
            REQUIRE(Dr[x] == 0.0);
            ++dropped_n;
          }
        }
  CHECK(dropped_n > 0);

  // Finite differences in float64 with dropout on: every call replays the same generator state, so the mask is
  // fixed and the analytic gradient must be the gradient of exactly that masked function.
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    Tensor q64 = testing::rand_f64({2, 2, 7, 5}), k64 = testing::rand_f64({2, 2, 9, 5}),
           v64 = testing::rand_f64({2, 2, 9, 5});
    Tensor mask = key_padding({prefix(9, 9), prefix(6, 9)});
    const GeneratorState st = generator_state();
    REQUIRE_CLOSE(testing::gradcheck(
        [&](const std::vector<Tensor>& x) {
          set_generator_state(st);
          return scaled_dot_product_attention(x[0], x[1], x[2], mask, causal, 0.4, 0.7, AttentionBackend::fused);
        },
        {q64, k64, v64}));
  }
}

TEST_CASE("ViT softmax mixer: same logits with the fused and the composite backend", "[attention][flash][vit]") {
  manual_seed(106);
  models::ViTConfig c;
  c.img_size = 16, c.in_chans = 3, c.patch_size = 4, c.embed_dim = 64, c.depth = 2, c.num_heads = 2;
  c.mlp_hidden = 128, c.num_classes = 10;
  models::VisionTransformer m(c);
  m.eval();
  Tensor x = randn({3, 3, 16, 16});
  Tensor fused, composite;
  {
    AttentionBackendGuard guard(AttentionBackend::fused);
    fused = m.forward(x);
  }
  {
    AttentionBackendGuard guard(AttentionBackend::composite);
    composite = m.forward(x);
  }
  CHECK(attention_backend() == AttentionBackend::automatic);
  REQUIRE(fused.shape() == Shape({3, 10}));
  REQUIRE_CLOSE(testing::all_close(fused, composite, tolerance(Compare::forward_f32)));
  // And the gradients of a loss agree.
  Tensor labels = from_vector<int64_t>({1, 4, 7}, {3});
  std::vector<Vec> grads[2];
  for (int pass = 0; pass < 2; ++pass) {
    AttentionBackendGuard guard(pass == 0 ? AttentionBackend::fused : AttentionBackend::composite);
    m.zero_grad();
    cross_entropy(m.forward(x), labels).backward();
    for (const Tensor& prm : m.parameters()) grads[pass].push_back(prm.grad().to(DType::f64).to_vector<double>());
  }
  for (size_t i = 0; i < grads[0].size(); ++i)
    for (size_t j = 0; j < grads[0][i].size(); ++j)
      REQUIRE(std::abs(grads[0][i][j] - grads[1][i][j]) <= kGradF32.atol + kGradF32.rtol * std::abs(grads[1][i][j]));
}

TEST_CASE("fused sdpa peak memory grows linearly with N, the composite path's quadratically", "[attention][flash]") {
  // An allocator assertion (memory_stats peak over forward + backward), not a timing one.
  const auto peak_of = [](int64_t n, AttentionBackend backend) {
    manual_seed(107);
    Tensor q = leaf({1, 1, n, 64}), k = leaf({1, 1, n, 64}), v = leaf({1, 1, n, 64});
    Tensor g = randn({1, 1, n, 64});
    autograd::clear_tape();
    const int64_t base = memory_stats(kCPU).bytes_in_use;
    reset_peak_memory(kCPU);
    {
      Tensor o = scaled_dot_product_attention(q, k, v, Tensor(), false, 0.0, -1.0, backend);
      autograd::backward(o, g);
    }
    return memory_stats(kCPU).peak_bytes - base;
  };
  const double f1 = double(peak_of(1024, AttentionBackend::fused)), f4 = double(peak_of(4096, AttentionBackend::fused));
  const double c1 = double(peak_of(1024, AttentionBackend::composite)),
               c4 = double(peak_of(4096, AttentionBackend::composite));
  INFO("fused peak " << f1 << " -> " << f4 << " bytes; composite " << c1 << " -> " << c4);
  CHECK(f4 / f1 < 4.0 * 1.5);
  CHECK(c4 / c1 > 8.0);
  CHECK(f4 < 64.0 * 4096 * 4 * 12);  // a dozen [N, d] float32 buffers at most, never an N×N one (64 MiB)
}

namespace {

// packed_qkv_attention on a fresh leaf copy of qkv; its output, dqkv for gradient g, and the output's node name.
struct PackedRun {
  std::vector<double> o, dqkv;
  std::string node;
};

PackedRun run_packed(const Tensor& qkv, int64_t heads, const Tensor& g, const Tensor& mask, bool causal,
                     double dropout, uint64_t seed) {
  autograd::clear_tape();
  Tensor x = qkv.detach().clone();
  x.requires_grad_();
  manual_seed(seed);
  Tensor o = packed_qkv_attention(x, heads, mask, causal, dropout);
  const auto node = o.impl().grad_fn.lock();
  PackedRun r{o.detach().to(DType::f64).to_vector<double>(), {}, node ? node->name() : ""};
  autograd::backward(o, g);
  r.dqkv = x.grad().to(DType::f64).to_vector<double>();
  return r;
}

// The same call unpacked: split and permute to q, k, v [B, H, T, d], scaled_dot_product_attention on the fused
// backend, permute back.
PackedRun run_unpacked(const Tensor& qkv, int64_t heads, const Tensor& g, const Tensor& mask, bool causal,
                       double dropout, uint64_t seed) {
  autograd::clear_tape();
  Tensor x = qkv.detach().clone();
  x.requires_grad_();
  const int64_t b = x.size(0), t = x.size(1), d = x.size(2) / (3 * heads);
  Tensor hh = permute(x.reshape({b, t, 3, heads, d}), {2, 0, 3, 1, 4});
  const Shape hs{b, heads, t, d};
  manual_seed(seed);
  Tensor o = scaled_dot_product_attention(hh.slice0(0, 1).reshape(hs), hh.slice0(1, 1).reshape(hs),
                                          hh.slice0(2, 1).reshape(hs), mask, causal, dropout, -1.0,
                                          AttentionBackend::fused);
  o = permute(o, {0, 2, 1, 3}).reshape({b, t, heads * d});
  PackedRun r{o.detach().to(DType::f64).to_vector<double>(), {}, ""};
  autograd::backward(o, g);
  r.dqkv = x.grad().to(DType::f64).to_vector<double>();
  return r;
}

}  // namespace

TEST_CASE("packed_qkv_attention: the fused CPU path equals the unpacked fused call bit for bit", "[attention][flash]") {
  manual_seed(107);
  for (auto [heads, d] : std::vector<std::pair<int64_t, int64_t>>{{4, 16}, {2, 24}, {1, 64}}) {
    const int64_t b = 3, t = 53, dim = heads * d;
    Tensor qkv = randn({b, t, 3 * dim}), g = randn({b, t, dim});
    Tensor pad = key_padding({prefix(t, t), prefix(20, t), prefix(0, t)});
    for (bool causal : {false, true})
      for (bool masked : {false, true})
        for (double dropout : {0.0, 0.2}) {
          INFO("heads " << heads << " d " << d << " causal " << causal << " masked " << masked << " dropout "
                        << dropout);
          const Tensor mask = masked ? pad : Tensor();
          const PackedRun packed = run_packed(qkv, heads, g, mask, causal, dropout, 5);
          CHECK(packed.node == "flash_attention_packed");
          const PackedRun unpacked = run_unpacked(qkv, heads, g, mask, causal, dropout, 5);
          CHECK(packed.o == unpacked.o);
          CHECK(packed.dqkv == unpacked.dqkv);
          bool finite = true;
          for (double v : packed.dqkv) finite = finite && std::isfinite(v);
          CHECK(finite);
        }
  }
}

TEST_CASE("packed_qkv_attention: composite and float64 calls take the unpacked path and agree", "[attention][flash]") {
  manual_seed(108);
  const int64_t b = 2, t = 37, heads = 4, d = 8, dim = heads * d;
  Tensor qkv = randn({b, t, 3 * dim}), g = randn({b, t, dim});
  const PackedRun fused = run_packed(qkv, heads, g, Tensor(), true, 0.0, 1);
  REQUIRE(fused.node == "flash_attention_packed");
  PackedRun composite;
  {
    AttentionBackendGuard guard(AttentionBackend::composite);
    composite = run_packed(qkv, heads, g, Tensor(), true, 0.0, 1);
  }
  CHECK(composite.node != "flash_attention_packed");
  const PackedRun f64 = run_packed(qkv.to(DType::f64), heads, g.to(DType::f64), Tensor(), true, 0.0, 1);
  CHECK(f64.node != "flash_attention_packed");  // automatic keeps float64 on the composite path
  const auto close = [](const std::vector<double>& a, const std::vector<double>& want, testing::Tolerance tol) {
    REQUIRE(a.size() == want.size());
    for (size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(a[i] - want[i]) <= tol.atol + tol.rtol * std::abs(want[i]));
  };
  close(fused.o, f64.o, tolerance(Compare::forward_f32));
  close(composite.o, f64.o, tolerance(Compare::forward_f32));
  close(fused.dqkv, f64.dqkv, kGradF32);
  close(composite.dqkv, f64.dqkv, kGradF32);
}

TEST_CASE("packed_qkv_attention rejects bad inputs with clear errors", "[attention][flash]") {
  Tensor qkv = randn({2, 5, 24});
  CHECK_THROWS_WITH(packed_qkv_attention(randn({5, 24}), 2), Catch::Contains("expected qkv [B, T, 3·H·d]"));
  CHECK_THROWS_WITH(packed_qkv_attention(qkv, 5), Catch::Contains("must be 3·H·d") && Catch::Contains("5"));
  CHECK_THROWS_WITH(packed_qkv_attention(qkv, 0), Catch::Contains("num_heads = 0"));
  CHECK_THROWS_WITH(packed_qkv_attention(qkv, 2, ones({2, 1, 1, 5})), Catch::Contains("attn_mask must be uint8"));
  CHECK_THROWS_WITH(packed_qkv_attention(qkv, 2, ones({3, 1, 1, 5}, TensorOptions(DType::u8))),
                    Catch::Contains("cannot be broadcast"));
  CHECK_THROWS_WITH(packed_qkv_attention(qkv, 2, Tensor(), false, 1.0), Catch::Contains("dropout_p"));
}
