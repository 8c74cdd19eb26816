// Combiner attention (specs/mixers.md §6 item 6): joint softmax rows sum to 1 over direct + span columns; every
// variant, causal and not, against a brute-force float64 implementation written from the index rules (not from the op's
// tables); the tables cover exactly what the rules say (Logsparse: the blocks tile [0, i) exactly); causality;
// max-pool gradients reach the argmax (first index on ties); float64 finite differences of q, k, v and of the
// mixer's projections; clear errors for bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/combiner.h"
#include "engine/mixgrad.h"
#include "nn/mixer.h"
#include "nn/mixers/combiner_mixer.h"
#include "tests/common/check.h"

using namespace mixgrad;
using Catch::Contains;
using testing::Compare;
using testing::tolerance;

namespace {

const std::vector<CombinerVariant> kVariants = {CombinerVariant::fixed, CombinerVariant::logsparse,
                                                CombinerVariant::axial, CombinerVariant::mixture};

// ---- The brute-force reference, from the rules of §5.2 and their mirror images (docs/mixers.md) -----------------

struct RefSpan {
  std::vector<int64_t> members;
  int64_t query = -1;  // the token whose query summarises the span, or -1 = max-pool
};
struct RefColumns {
  std::vector<int64_t> direct;
  std::vector<RefSpan> spans;
};

std::vector<int64_t> tokens_where(int64_t L, const std::function<bool(int64_t)>& pred) {
  std::vector<int64_t> out;
  for (int64_t j = 0; j < L; ++j)
    if (pred(j)) out.push_back(j);
  return out;
}

void add_span(RefColumns& c, std::vector<int64_t> members, int64_t query = -1) {
  if (!members.empty()) c.spans.push_back({std::move(members), query});
}

RefColumns reference_columns(CombinerVariant variant, int64_t L, int64_t s, bool causal, int64_t i) {
  RefColumns c;
  const auto visible = [&](int64_t j) { return !causal || j <= i; };
  switch (variant) {
    case CombinerVariant::fixed:
      c.direct = tokens_where(L, [&](int64_t j) { return j / s == i / s && visible(j); });
      for (int64_t r = 0; r * s < L; ++r)
        if (r != i / s && (!causal || r < i / s)) add_span(c, tokens_where(L, [&](int64_t j) { return j / s == r; }));
      break;
    case CombinerVariant::logsparse: {
      c.direct = {i};
      int64_t levels = 0;
      while ((int64_t{1} << levels) < L) ++levels;
      for (int64_t l = 0; l < levels; ++l) {
        const int64_t blk = i >> l, other = (blk % 2 == 1) ? blk - 1 : blk + 1;
        if (blk % 2 == 0 && causal) continue;
        add_span(c, tokens_where(L, [&](int64_t j) { return (j >> l) == other; }));
      }
      break;
    }
    case CombinerVariant::axial: {
      const int64_t m = s, g = i / m, col = i % m;
      c.direct = tokens_where(L, [&](int64_t j) { return j / m == g && visible(j); });
      for (int64_t g2 = 0; g2 * m < L; ++g2)
        if (g2 != g && (!causal || g2 < g))
          add_span(c, tokens_where(L, [&](int64_t j) { return j / m == g2; }), g2 * m + col < L ? g2 * m + col : -1);
      break;
    }
    case CombinerVariant::mixture: {
      const int64_t m = s, u = i / m, w = i % m;
      c.direct = tokens_where(L, [&](int64_t j) { return (j % m == w || j / m == u) && visible(j); });
      for (int64_t t = 0; t < m; ++t) {
        if (t == w) continue;
        add_span(c, tokens_where(L, [&](int64_t j) { return j % m == t && j / m < u; }));
        if (!causal) add_span(c, tokens_where(L, [&](int64_t j) { return j % m == t && j / m > u; }));
      }
      for (int64_t r = 0; r * m < L; ++r) {
        if (r == u || (causal && r > u)) continue;
        add_span(c, tokens_where(L, [&](int64_t j) { return j / m == r && j % m < w; }));
        add_span(c, tokens_where(L, [&](int64_t j) { return j / m == r && j % m > w; }));
      }
      break;
    }
  }
  return c;
}

struct Problem {
  int64_t B, H, L, d;
  std::vector<double> q, k, v;
  std::vector<int32_t> lengths;  // empty = all valid
  Tensor t(const std::vector<double>& x, DType dtype = DType::f64) const {
    return from_vector<double>(x, {B, H, L, d}, TensorOptions(DType::f64)).to(dtype);
  }
  Tensor len() const {
    return lengths.empty() ? Tensor() : from_vector<int32_t>(lengths, {B}, TensorOptions(DType::i32));
  }
};

Problem random_problem(int64_t B, int64_t H, int64_t L, int64_t d, std::vector<int32_t> lengths, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd;
  Problem p{B, H, L, d, {}, {}, {}, std::move(lengths)};
  for (auto* x : {&p.q, &p.k, &p.v})
    for (int64_t e = 0; e < B * H * L * d; ++e) x->push_back(nd(gen));
  return p;
}

double dot(const double* a, const double* b, int64_t d) {
  double s = 0;
  for (int64_t c = 0; c < d; ++c) s += a[c] * b[c];
  return s;
}

// Materialised softmax of `logits` applied to `values` (rows of d) into out; returns the log-sum-exp.
double softmax_apply(const std::vector<double>& logits, const std::vector<const double*>& values, int64_t d,
                     double* out) {
  double mx = -INFINITY, z = 0;
  for (double l : logits) mx = std::max(mx, l);
  for (double l : logits) z += std::exp(l - mx);
  for (int64_t c = 0; c < d; ++c) out[c] = 0;
  for (size_t e = 0; e < logits.size(); ++e)
    for (int64_t c = 0; c < d; ++c) out[c] += std::exp(logits[e] - mx) / z * values[e][c];
  return mx + std::log(z);
}

// o [B, H, L, d] and lse [B, H, L] by brute force.
std::pair<std::vector<double>, std::vector<double>> reference(const Problem& p, const CombinerLayout& layout) {
  const int64_t L = p.L, d = p.d, s = combiner_span_for(layout, L);
  const double scale = 1.0 / std::sqrt(double(d));
  std::vector<double> o(size_t(p.B * p.H * L * d), 0.0), lse(size_t(p.B * p.H * L), INFINITY);
  std::vector<std::vector<double>> summaries;  // kept alive while a row's values point into them
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h) {
      const int64_t len = p.lengths.empty() ? L : p.lengths[size_t(b)], base = (b * p.H + h) * L * d;
      const auto row = [&](const std::vector<double>& x, int64_t j) { return x.data() + base + j * d; };
      for (int64_t i = 0; i < len; ++i) {
        const RefColumns cols = reference_columns(layout.variant, L, s, layout.causal, i);
        std::vector<double> logits;
        std::vector<const double*> values;
        summaries.clear();
        summaries.reserve(cols.spans.size());
        for (int64_t j : cols.direct)
          if (j < len) logits.push_back(scale * dot(row(p.q, i), row(p.k, j), d)), values.push_back(row(p.v, j));
        for (const RefSpan& sp : cols.spans) {
          std::vector<int64_t> mem;
          for (int64_t j : sp.members)
            if (j < len) mem.push_back(j);
          if (mem.empty()) continue;
          std::vector<double> qbar(size_t(d), -INFINITY), kbar(size_t(d), -INFINITY);
          for (int64_t j : mem)
            for (int64_t c = 0; c < d; ++c) {
              qbar[size_t(c)] = std::max(qbar[size_t(c)], row(p.q, j)[c]);
              kbar[size_t(c)] = std::max(kbar[size_t(c)], row(p.k, j)[c]);
            }
          if (sp.query >= 0 && sp.query < len) qbar.assign(row(p.q, sp.query), row(p.q, sp.query) + d);
          std::vector<double> inner;
          std::vector<const double*> inner_values;
          for (int64_t j : mem)
            inner.push_back(scale * dot(qbar.data(), row(p.k, j), d)), inner_values.push_back(row(p.v, j));
          summaries.emplace_back(size_t(d));
          softmax_apply(inner, inner_values, d, summaries.back().data());
          logits.push_back(scale * dot(row(p.q, i), kbar.data(), d));
          values.push_back(summaries.back().data());
        }
        lse[size_t((b * p.H + h) * L + i)] = softmax_apply(logits, values, d, o.data() + base + i * d);
      }
    }
  return {o, lse};
}

CombinerLayout layout_of(CombinerVariant v, int64_t span, bool causal) { return {v, span, causal}; }

std::string describe(const CombinerLayout& l, int64_t L) {
  return fmt::format("{} span {} causal {} L {}", combiner_variant_name(l.variant), l.span, l.causal, L);
}

}  // namespace

TEST_CASE("combiner: every variant matches the brute-force float64 reference built from the index rules",
          "[combiner]") {
  uint32_t seed = 10;
  for (CombinerVariant v : kVariants)
    for (bool causal : {false, true})
      for (int64_t L : {1, 2, 5, 8, 13, 16})
        for (int64_t span : {0, 3, 4}) {
          const CombinerLayout layout = layout_of(v, span, causal);
          INFO(describe(layout, L));
          const std::vector<int32_t> lengths = {int32_t(L), int32_t((L + 1) / 2), 1};
          const Problem p = random_problem(3, 2, L, 5, lengths, seed++);
          const auto [o_ref, lse_ref] = reference(p, layout);
          const Tensor o_expect = from_vector<double>(o_ref, {3, 2, L, 5}, TensorOptions(DType::f64));
          const Tensor lse_expect = from_vector<double>(lse_ref, {3, 2, L}, TensorOptions(DType::f64));
          const CombinerForward f = combiner_attention_forward(p.t(p.q), p.t(p.k), p.t(p.v), layout, p.len());
          REQUIRE_CLOSE(testing::all_close(f.o, o_expect, tolerance(Compare::forward_f64)));
          REQUIRE_CLOSE(testing::all_close(f.lse, lse_expect, tolerance(Compare::forward_f64)));
          const Tensor o32 =
              combiner_attention(p.t(p.q, DType::f32), p.t(p.k, DType::f32), p.t(p.v, DType::f32), layout, p.len());
          REQUIRE_CLOSE(testing::all_close(o32, o_expect, {1e-5, 2e-6}));
        }
}

TEST_CASE("combiner: joint softmax rows sum to 1 over the direct and span columns", "[combiner]") {
  for (CombinerVariant v : kVariants)
    for (bool causal : {false, true}) {
      const CombinerLayout layout = layout_of(v, 3, causal);
      const int64_t L = 11, d = 4;
      INFO(describe(layout, L));
      const Problem p = random_problem(2, 1, L, d, {11, 7}, 77);
      const CombinerForward f = combiner_attention_forward(p.t(p.q), p.t(p.k), p.t(p.v), layout, p.len());
      const CombinerTables& tab = combiner_tables(layout, L);
      const std::vector<double>& q = p.q;
      const std::vector<double> sk = f.summary_key.to_vector<double>(), lse = f.lse.to_vector<double>();
      const int64_t S = tab.num_spans();
      const double scale = 1.0 / std::sqrt(double(d));
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t i = 0; i < p.lengths[size_t(b)]; ++i) {
          const int64_t len = p.lengths[size_t(b)];
          double total = 0;
          int columns = 0;
          for (int32_t e = tab.dir_off[size_t(i)]; e < tab.dir_off[size_t(i) + 1]; ++e) {
            const int64_t j = tab.dir_idx[size_t(e)];
            if (j >= len) continue;
            total += std::exp(scale * dot(&q[size_t((b * L + i) * d)], &p.k[size_t((b * L + j) * d)], d) -
                              lse[size_t(b * L + i)]);
            ++columns;
          }
          for (int32_t e = tab.col_off[size_t(i)]; e < tab.col_off[size_t(i) + 1]; ++e) {
            const int64_t s = tab.col_idx[size_t(e)];
            if (tab.span_start[size_t(s)] >= len) continue;  // no valid member
            total += std::exp(scale * dot(&q[size_t((b * L + i) * d)], &sk[size_t((b * S + s) * d)], d) -
                              lse[size_t(b * L + i)]);
            ++columns;
          }
          INFO("sample " << b << " row " << i << " columns " << columns);
          REQUIRE(columns >= 1);
          REQUIRE(std::abs(total - 1.0) < 1e-12);
        }
      // Constant values: every summary is that constant and so is every valid output row.
      const Tensor ones =
          from_vector<double>(std::vector<double>(size_t(2 * L * d), 1.5), {2, 1, L, d}, TensorOptions(DType::f64));
      const std::vector<double> o = combiner_attention(p.t(p.q), p.t(p.k), ones, layout, p.len()).to_vector<double>();
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t i = 0; i < L; ++i)
          for (int64_t c = 0; c < d; ++c)
            REQUIRE(std::abs(o[size_t((b * L + i) * d + c)] - (i < p.lengths[size_t(b)] ? 1.5 : 0.0)) < 1e-12);
    }
}

TEST_CASE("combiner: the index tables cover exactly what the rules say (Logsparse tiles [0, i) exactly)",
          "[combiner]") {
  for (CombinerVariant v : kVariants)
    for (bool causal : {false, true})
      for (int64_t L = 1; L <= 40; ++L)
        for (int64_t span : {0, 3, 5}) {
          const CombinerLayout layout = layout_of(v, span, causal);
          INFO(describe(layout, L));
          const CombinerTables& t = combiner_tables(layout, L);
          const int64_t m = combiner_span_for(layout, L);
          for (int64_t i = 0; i < L; ++i) {
            INFO("query " << i);
            std::vector<int> direct(size_t(L), 0), summarised(size_t(L), 0);
            for (int32_t e = t.dir_off[size_t(i)]; e < t.dir_off[size_t(i) + 1]; ++e)
              ++direct[size_t(t.dir_idx[size_t(e)])];
            for (int32_t e = t.col_off[size_t(i)]; e < t.col_off[size_t(i) + 1]; ++e)
              for (int64_t j : t.members(t.col_idx[size_t(e)])) ++summarised[size_t(j)];
            REQUIRE(direct[size_t(i)] == 1);  // every row keeps itself: never fully masked
            for (int64_t j = 0; j < L; ++j) {
              INFO("token " << j);
              REQUIRE(direct[size_t(j)] <= 1);
              const int seen = direct[size_t(j)] + summarised[size_t(j)];
              if (causal && j > i) {
                REQUIRE(seen == 0);
              } else if (v == CombinerVariant::mixture && j / m != i / m && j % m != i % m) {
                REQUIRE((direct[size_t(j)] == 0 && summarised[size_t(j)] == 2));  // both factorisations
              } else {
                REQUIRE(seen == 1);  // an exact partition of what i may see
              }
              if (v == CombinerVariant::logsparse && j != i) REQUIRE(direct[size_t(j)] == 0);
            }
          }
        }
}

TEST_CASE("combiner: causal variants ignore future tokens", "[combiner]") {
  for (CombinerVariant v : kVariants) {
    const CombinerLayout layout = layout_of(v, 3, true);
    const int64_t L = 14;
    const Problem p = random_problem(1, 2, L, 4, {}, 90);
    const std::vector<double> base = combiner_attention(p.t(p.q), p.t(p.k), p.t(p.v), layout).to_vector<double>();
    for (int64_t cut = 0; cut < L; ++cut) {
      INFO(describe(layout, L) << ", tokens after " << cut << " perturbed");
      Problem x = p;
      for (auto* t : {&x.q, &x.k, &x.v})
        for (int64_t h = 0; h < 2; ++h)
          for (int64_t j = cut + 1; j < L; ++j)
            for (int64_t c = 0; c < 4; ++c) (*t)[size_t((h * L + j) * 4 + c)] += 7.0 + double(j);
      const std::vector<double> o = combiner_attention(x.t(x.q), x.t(x.k), x.t(x.v), layout).to_vector<double>();
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t i = 0; i <= cut; ++i)
          for (int64_t c = 0; c < 4; ++c) REQUIRE(o[size_t((h * L + i) * 4 + c)] == base[size_t((h * L + i) * 4 + c)]);
    }
  }
}

TEST_CASE("combiner: gradients of q, k and v match float64 finite differences", "[combiner]") {
  for (CombinerVariant v : kVariants)
    for (bool causal : {false, true})
      for (int64_t span : {0, 3}) {
        const CombinerLayout layout = layout_of(v, span, causal);
        INFO(describe(layout, 10));
        manual_seed(31);
        const Tensor lengths = from_vector<int32_t>({10, 6}, {2}, TensorOptions(DType::i32));
        std::vector<Tensor> in = {testing::rand_f64({2, 2, 10, 3}), testing::rand_f64({2, 2, 10, 3}),
                                  testing::rand_f64({2, 2, 10, 3})};
        REQUIRE_CLOSE(testing::gradcheck(
            [&](const std::vector<Tensor>& x) { return combiner_attention(x[0], x[1], x[2], layout, lengths); }, in));
      }
}

TEST_CASE("combiner: padded tokens get zero gradient and never reach valid outputs", "[combiner]") {
  for (CombinerVariant v : kVariants) {
    const CombinerLayout layout = layout_of(v, 3, false);
    INFO(describe(layout, 9));
    Problem p = random_problem(2, 1, 9, 4, {9, 4}, 55);
    Tensor q = p.t(p.q).requires_grad_(), k = p.t(p.k).requires_grad_(), vv = p.t(p.v).requires_grad_();
    const Tensor w = from_vector<double>(std::vector<double>(72, 1.0), {2, 1, 9, 4}, TensorOptions(DType::f64));
    sum(mul(combiner_attention(q, k, vv, layout, p.len()), w)).backward();
    for (const Tensor& g : {q.grad(), k.grad(), vv.grad()}) {
      const std::vector<double> gv = g.to_vector<double>();
      for (int64_t j = 4; j < 9; ++j)
        for (int64_t c = 0; c < 4; ++c) REQUIRE(gv[size_t((9 + j) * 4 + c)] == 0.0);
    }
    const std::vector<double> o = combiner_attention(p.t(p.q), p.t(p.k), p.t(p.v), layout, p.len()).to_vector<double>();
    for (auto* t : {&p.q, &p.k, &p.v})
      for (int64_t e = (9 + 4) * 4; e < 18 * 4; ++e) (*t)[size_t(e)] = 1e6;
    const std::vector<double> o2 =
        combiner_attention(p.t(p.q), p.t(p.k), p.t(p.v), layout, p.len()).to_vector<double>();
    for (int64_t e = 0; e < (9 + 4) * 4; ++e) REQUIRE(o2[size_t(e)] == o[size_t(e)]);
  }
}

TEST_CASE("combiner: max-pool gradients reach the argmax, the first index on ties", "[combiner]") {
  // Fixed, span 4, L 8, non-causal: the span of tokens 4..7 is summarised for queries 0..3. Tokens 5 and 6 tie for
  // the maximum of channel 0 of k (and of q); their gradients are compared with the tie broken towards token 6.
  const CombinerLayout layout = layout_of(CombinerVariant::fixed, 4, false);
  for (bool of_query : {false, true}) {
    INFO((of_query ? "query" : "key") << " max-pool");
    Problem p = random_problem(1, 1, 8, 3, {}, 5);
    std::vector<double>& x = of_query ? p.q : p.k;
    for (int64_t j = 4; j < 8; ++j) x[size_t(j * 3)] = -1.0;
    x[5 * 3] = x[6 * 3] = 2.0;
    const auto grads = [&](const std::vector<double>& xv) {
      Problem pp = p;
      (of_query ? pp.q : pp.k) = xv;
      Tensor q = pp.t(pp.q).requires_grad_(), k = pp.t(pp.k).requires_grad_(), v = pp.t(pp.v).requires_grad_();
      const Tensor w = from_vector<double>({0.3, -1.2, 0.7, 1.1, -0.4, 0.9, 0.2, -0.8, 1.3, -0.6, 0.5, 0.1},
                                           {1, 1, 4, 3}, TensorOptions(DType::f64));
      sum(mul(narrow(combiner_attention(q, k, v, layout), 2, 0, 4), w)).backward();
      return (of_query ? q : k).grad().to_vector<double>();
    };
    const CombinerTables& tab = combiner_tables(layout, 8);
    int64_t span = -1;
    for (int64_t s = 0; s < tab.num_spans(); ++s)
      if (tab.span_start[size_t(s)] == 4) span = s;
    REQUIRE(span >= 0);
    const CombinerForward f = combiner_attention_forward(p.t(p.q), p.t(p.k), p.t(p.v), layout);
    const std::vector<int32_t> arg = (of_query ? f.query_arg : f.key_arg).to_vector<int32_t>();
    CHECK(arg[size_t(span * 3)] == 5);  // channel 0: the first of the tied tokens
    const std::vector<double> g_tie = grads(x);
    std::vector<double> x6 = x;
    x6[6 * 3] += 1e-9;  // token 6 now holds the maximum
    const std::vector<double> g_6 = grads(x6);
    const double moved_from_5 = g_tie[5 * 3] - g_6[5 * 3], moved_to_6 = g_6[6 * 3] - g_tie[6 * 3];
    INFO("moved from 5: " << moved_from_5 << ", to 6: " << moved_to_6);
    REQUIRE(std::abs(moved_from_5) > 1e-3);
    REQUIRE(std::abs(moved_from_5 - moved_to_6) < 1e-6);
    // The other tokens of the span and the other channels barely move.
    for (int64_t e : {4 * 3, 7 * 3, 5 * 3 + 1, 6 * 3 + 2}) REQUIRE(std::abs(g_tie[size_t(e)] - g_6[size_t(e)]) < 1e-6);
  }
}

TEST_CASE("combiner: two runs are bitwise identical", "[combiner]") {
  const CombinerLayout layout = layout_of(CombinerVariant::mixture, 0, false);
  const Problem p = random_problem(2, 3, 30, 8, {30, 17}, 3);
  std::vector<Tensor> grads[2];
  for (auto& g : grads) {
    Tensor q = p.t(p.q, DType::f32).requires_grad_(), k = p.t(p.k, DType::f32).requires_grad_(),
           v = p.t(p.v, DType::f32).requires_grad_();
    sum(mul(combiner_attention(q, k, v, layout, p.len()), q.detach())).backward();
    g = {q.grad(), k.grad(), v.grad()};
  }
  for (int t = 0; t < 3; ++t) REQUIRE_CLOSE(testing::bit_equal(grads[0][size_t(t)], grads[1][size_t(t)]));
}

TEST_CASE("combiner mixer: causal and ragged spans; gradients of the input and projections (float64)", "[combiner]") {
  for (const std::string name : {"combiner-fixed", "combiner-logsparse", "combiner-axial", "combiner-mixture"}) {
    INFO("mixer " << name);
    nn::MixerContext ctx;
    ctx.dim = 6, ctx.num_heads = 2, ctx.inner_dim = 8, ctx.seq_len = 7, ctx.causal = true;
    ctx.options = nn::resolve_mixer_options(name, name == "combiner-logsparse"
                                                      ? std::map<std::string, std::string>{}
                                                      : std::map<std::string, std::string>{{"combiner_span", "3"}});
    manual_seed(70);
    auto m = nn::make_mixer(name, ctx);
    m->to(DType::f64);
    m->eval();
    std::vector<Tensor> inputs = {testing::rand_f64({2, 7, 6})};
    for (const auto& [pname, prm] : m->named_parameters()) inputs.push_back(prm);
    const Tensor lengths = from_vector<int32_t>({7, 4}, {2}, TensorOptions(DType::i32));
    REQUIRE_CLOSE(
        testing::gradcheck([&](const std::vector<Tensor>& in) { return m->forward(in[0], lengths); }, inputs));
    // Causal: the output at token 2 ignores tokens 3..6.
    NoGradGuard ng;
    Tensor x = inputs[0].detach().clone();
    const std::vector<double> y = m->forward(x).to_vector<double>();
    for (int64_t e = 3 * 6; e < 7 * 6; ++e) x.data<double>()[e] += 5.0;
    const std::vector<double> y2 = m->forward(x).to_vector<double>();
    for (int64_t e = 0; e < 3 * 6; ++e) REQUIRE(y2[size_t(e)] == y[size_t(e)]);
  }
}

TEST_CASE("combiner: invalid shapes and options are clear errors", "[combiner]") {
  const CombinerLayout layout = layout_of(CombinerVariant::fixed, 0, false);
  const Tensor q = randn({2, 2, 6, 4}), q64 = randn({2, 2, 6, 4}, TensorOptions(DType::f64));
  CHECK_THROWS_WITH(combiner_attention(randn({2, 6, 4}), q, q, layout), Contains("q must be 4-D [B, H, L, d]"));
  CHECK_THROWS_WITH(combiner_attention(q, randn({2, 2, 5, 4}), q, layout), Contains("must have one shape"));
  CHECK_THROWS_WITH(combiner_attention(q, q64, q, layout), Contains("combiner_attention"));
  CHECK_THROWS_WITH(combiner_attention(q, q, q, layout_of(CombinerVariant::axial, -2, false)),
                    Contains("span = -2 is negative"));
  CHECK_THROWS_WITH(combiner_attention(q, q, q, layout, from_vector<int32_t>({6, 7}, {2}, TensorOptions(DType::i32))),
                    Contains("lengths[1] = 7 is outside [0, L] = [0, 6]"));
  CHECK_THROWS_WITH(combiner_attention(q, q, q, layout, from_vector<int64_t>({6, 6}, {2})),
                    Contains("lengths has dtype"));
  CHECK_THROWS_WITH(combiner_attention(q, q, q, layout, from_vector<int32_t>({6}, {1}, TensorOptions(DType::i32))),
                    Contains("expected [B] = [2]"));
  CHECK_THROWS_WITH(combiner_variant("diagonal"), Contains("unknown variant \"diagonal\""));
  CHECK_THROWS_WITH(nn::resolve_mixer_options("combiner-fixed", {{"combiner_span", "-1"}}),
                    Contains("combiner_span = \"-1\" is out of range"));
  CHECK_THROWS_WITH(nn::resolve_mixer_options("combiner-logsparse", {{"combiner_span", "4"}}),
                    Contains("option combiner_span belongs to mixer"));
  nn::MixerContext ctx;
  ctx.dim = 8, ctx.num_heads = 3;
  CHECK_THROWS_WITH(nn::make_mixer("combiner-axial", ctx), Contains("num_heads (3) must be positive and divide dim"));
  ctx.num_heads = 2;
  CHECK_THROWS_WITH(nn::make_mixer("combiner-axial", ctx), Contains("the context's seq_len is 0"));
  ctx.seq_len = 5;
  auto m = nn::make_mixer("combiner-axial", ctx);
  CHECK_THROWS_WITH(m->forward(randn({2, 5, 7})), Contains("expected input [B, N, 8], got [2, 5, 7]"));
}
