// The combiner_attention op: the index structure of each variant (built once per layout and length, cached, and
// copied once per device), the plan validated once per call, and the forward / backward helpers the op, its tape
// node and combiner_attention_forward share.
#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/combiner.h"
#include "engine/error.h"
#include "kernels/combiner_index.h"
#include "kernels/cpu/combiner.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/combiner.h"
#endif

namespace mixgrad {

const char* combiner_variant_name(CombinerVariant v) {
  switch (v) {
    case CombinerVariant::fixed:
      return "fixed";
    case CombinerVariant::logsparse:
      return "logsparse";
    case CombinerVariant::axial:
      return "axial";
    case CombinerVariant::mixture:
      return "mixture";
  }
  return "?";
}

CombinerVariant combiner_variant(const std::string& name) {
  for (CombinerVariant v :
       {CombinerVariant::fixed, CombinerVariant::logsparse, CombinerVariant::axial, CombinerVariant::mixture})
    if (name == combiner_variant_name(v)) return v;
  throw Error(fmt::format("combiner: unknown variant \"{}\" (expected fixed, logsparse, axial or mixture)", name));
}

int64_t combiner_span_for(const CombinerLayout& layout, int64_t L) {
  MIXGRAD_CHECK(L >= 1, "combiner: sequence length L = {}, expected L >= 1", L);
  MIXGRAD_CHECK(layout.span >= 0,
                "combiner: span = {} is negative (expected a span length >= 1, or 0 for ceil(sqrt(L)))", layout.span);
  if (layout.variant == CombinerVariant::logsparse) return 0;
  int64_t s = layout.span;
  if (s == 0) {
    s = int64_t(std::ceil(std::sqrt(double(L))));
    while (s * s < L) ++s;  // exact ceil for large L
    while (s > 1 && (s - 1) * (s - 1) >= L) --s;
  }
  return std::min(s, L);
}

std::vector<int64_t> CombinerTables::members(int64_t s) const {
  std::vector<int64_t> m;
  for (int64_t t = 0; t < span_count[size_t(s)]; ++t) m.push_back(span_start[size_t(s)] + t * span_stride[size_t(s)]);
  return m;
}

namespace {

// Collects spans (deduplicated) and each query's columns, then lays out the CSR arrays and their transposes.
class TableBuilder {
 public:
  explicit TableBuilder(int64_t L) : L_(L), dir_(static_cast<size_t>(L)), col_(static_cast<size_t>(L)) {}

  void direct(int64_t i, int64_t j) { dir_[size_t(i)].push_back(int32_t(j)); }
  void direct_range(int64_t i, int64_t lo, int64_t hi) {
    for (int64_t j = lo; j < hi; ++j) direct(i, j);
  }
  // Query i reads the span of `count` tokens start + t·stride (summary query: token `query`, or -1 = max-pool).
  void column(int64_t i, int64_t start, int64_t stride, int64_t count, int64_t query = -1) {
    const std::array<int64_t, 4> key{start, stride, count, query};
    auto [it, inserted] = ids_.try_emplace(key, int32_t(t_.span_start.size()));
    if (inserted) {
      t_.span_start.push_back(int32_t(start));
      t_.span_stride.push_back(int32_t(stride));
      t_.span_count.push_back(int32_t(count));
      t_.span_query.push_back(int32_t(query));
    }
    col_[size_t(i)].push_back(it->second);
  }

  CombinerTables finish(int64_t span) && {
    t_.L = L_, t_.span = span;
    const int64_t S = t_.num_spans();
    std::vector<std::vector<int32_t>> key_q(static_cast<size_t>(L_)), span_q(static_cast<size_t>(S)),
        mem(static_cast<size_t>(L_));
    for (int64_t i = 0; i < L_; ++i) {
      for (int32_t j : dir_[size_t(i)]) key_q[size_t(j)].push_back(int32_t(i));
      for (int32_t s : col_[size_t(i)]) span_q[size_t(s)].push_back(int32_t(i));
    }
    for (int64_t s = 0; s < S; ++s)
      for (int64_t j : t_.members(s)) mem[size_t(j)].push_back(int32_t(s));
    csr(dir_, t_.dir_off, t_.dir_idx);
    csr(col_, t_.col_off, t_.col_idx);
    csr(key_q, t_.key_off, t_.key_q);
    csr(span_q, t_.span_off, t_.span_q);
    csr(mem, t_.mem_off, t_.mem_span);
    return std::move(t_);
  }

 private:
  static void csr(const std::vector<std::vector<int32_t>>& rows, std::vector<int32_t>& off, std::vector<int32_t>& idx) {
    off.assign(1, 0);
    for (const auto& r : rows) {
      idx.insert(idx.end(), r.begin(), r.end());
      MIXGRAD_CHECK(idx.size() <= size_t(std::numeric_limits<int32_t>::max()),
                    "combiner: the index structure has more than 2^31 - 1 entries (sequence too long)");
      off.push_back(int32_t(idx.size()));
    }
  }

  int64_t L_;
  std::vector<std::vector<int32_t>> dir_, col_;
  std::map<std::array<int64_t, 4>, int32_t> ids_;
  CombinerTables t_;
};

// Combiner-Fixed: spans [r·s, (r+1)·s) (the last one ragged). Query i in span r_i: direct = its span (causal: up to
// i); span columns = the spans before r_i (causal) or every other span (non-causal).
void build_fixed(TableBuilder& tb, int64_t L, int64_t s, bool causal) {
  const int64_t n = (L + s - 1) / s;
  for (int64_t i = 0; i < L; ++i) {
    const int64_t r = i / s, lo = r * s;
    tb.direct_range(i, lo, causal ? i + 1 : std::min(lo + s, L));
    for (int64_t r2 = 0; r2 < (causal ? r : n); ++r2)
      if (r2 != r) tb.column(i, r2 * s, 1, std::min(s, L - r2 * s));
  }
}

// Combiner-Logsparse: blocks [c·2^l, (c+1)·2^l) at levels l < bitlen(L - 1). Query i: direct {i}; at level l with
// c = i >> l it reads block c - 1 when c is odd (these tile [0, i)) and, non-causal, block c + 1 when c is even (the
// mirror image: these tile (i, 2^levels), clipped to L).
void build_logsparse(TableBuilder& tb, int64_t L, bool causal) {
  int64_t levels = 0;
  while ((int64_t{1} << levels) < L) ++levels;
  for (int64_t i = 0; i < L; ++i) {
    tb.direct(i, i);
    for (int64_t l = 0; l < levels; ++l) {
      const int64_t c = i >> l, size = int64_t{1} << l;
      const int64_t start = (c & 1) ? (c - 1) * size : (c + 1) * size;
      if (!(c & 1) && (causal || start >= L)) continue;
      tb.column(i, start, 1, std::min(size, L - start));
    }
  }
}

// Combiner-Axial (row-major, rows of m): query (g, l): direct = row g (causal: columns <= l); span columns = rows
// g' < g (causal) or g' != g (non-causal), each summarised for column l (summary query = token (g', l), or the
// row's max-pool where a ragged last row has no column l).
void build_axial(TableBuilder& tb, int64_t L, int64_t m, bool causal) {
  const int64_t n = (L + m - 1) / m;
  for (int64_t i = 0; i < L; ++i) {
    const int64_t g = i / m, l = i % m, lo = g * m;
    tb.direct_range(i, lo, causal ? i + 1 : std::min(lo + m, L));
    for (int64_t g2 = 0; g2 < (causal ? g : n); ++g2) {
      if (g2 == g) continue;
      const int64_t start = g2 * m, p = start + l;
      tb.column(i, start, 1, std::min(m, L - start), p < L ? p : -1);
    }
  }
}

// Combiner-Mixture (rows of m): query (u, w) reads its column w and row u directly and both factorisations of the
// rest: per other column t its part above row u (and, non-causal, below), and per other row its parts left and right
// of column w (causal: rows above u only) — one shared partition function over the union (§5.2).
void build_mixture(TableBuilder& tb, int64_t L, int64_t m, bool causal) {
  const int64_t n = (L + m - 1) / m, cols = std::min(m, L);
  const auto rows_in_column = [&](int64_t t) { return (L - t + m - 1) / m; };
  for (int64_t i = 0; i < L; ++i) {
    const int64_t u = i / m, w = i % m;
    for (int64_t r = 0; r < (causal ? u : rows_in_column(w)); ++r)
      if (r != u) tb.direct(i, r * m + w);
    tb.direct_range(i, u * m, causal ? i + 1 : std::min(u * m + m, L));
    for (int64_t t = 0; t < cols; ++t) {
      if (t == w) continue;
      if (u >= 1) tb.column(i, t, m, u);
      const int64_t below = rows_in_column(t) - (u + 1);
      if (!causal && below > 0) tb.column(i, (u + 1) * m + t, m, below);
    }
    for (int64_t r = 0; r < (causal ? u : n); ++r) {
      if (r == u) continue;
      const int64_t row_len = std::min(m, L - r * m), left = std::min(w, row_len), right = row_len - (w + 1);
      if (left > 0) tb.column(i, r * m, 1, left);
      if (right > 0) tb.column(i, r * m + w + 1, 1, right);
    }
  }
}

CombinerTables build_tables(CombinerVariant variant, int64_t L, int64_t span, bool causal) {
  TableBuilder tb(L);
  switch (variant) {
    case CombinerVariant::fixed:
      build_fixed(tb, L, span, causal);
      break;
    case CombinerVariant::logsparse:
      build_logsparse(tb, L, causal);
      break;
    case CombinerVariant::axial:
      build_axial(tb, L, span, causal);
      break;
    case CombinerVariant::mixture:
      build_mixture(tb, L, span, causal);
      break;
  }
  return std::move(tb).finish(span);
}

using TableKey = std::tuple<int, int64_t, int64_t, bool>;  // variant, L, span, causal

TableKey table_key(const CombinerLayout& layout, int64_t L) {
  return {int(layout.variant), L, combiner_span_for(layout, L), layout.causal};
}

// All index arrays of `t` in one int32 tensor on `device` (cached: a model uses the same few tables every step, and
// an upload per call would be a synchronous copy) and the kernels' view of it.
struct DeviceTables {
  Tensor data;
  kernels::CombinerIndex ix;
};

DeviceTables device_tables(const CombinerLayout& layout, int64_t L, Device device) {
  constexpr size_t kCached = 64;
  static std::mutex mu;
  static auto* cache = new std::deque<std::pair<std::pair<TableKey, Device>, DeviceTables>>();  // never destroyed
  const auto key = std::make_pair(table_key(layout, L), device);
  {
    const std::lock_guard<std::mutex> lock(mu);
    for (const auto& e : *cache)
      if (e.first == key) return e.second;
  }
  const CombinerTables& t = combiner_tables(layout, L);
  const std::vector<const std::vector<int32_t>*> parts = {
      &t.span_start, &t.span_stride, &t.span_count, &t.span_query, &t.dir_off, &t.dir_idx, &t.col_off,
      &t.col_idx,    &t.key_off,     &t.key_q,      &t.span_off,   &t.span_q,  &t.mem_off, &t.mem_span};
  std::vector<int32_t> all;
  std::vector<size_t> offsets;
  for (const auto* p : parts) {
    offsets.push_back(all.size());
    all.insert(all.end(), p->begin(), p->end());
  }
  DeviceTables d;
  d.data = from_vector<int32_t>(all, {int64_t(all.size())}, TensorOptions(DType::i32, device));
  const int32_t* base = d.data.data<int32_t>();
  const int32_t** fields[] = {&d.ix.span_start, &d.ix.span_stride, &d.ix.span_count, &d.ix.span_query, &d.ix.dir_off,
                              &d.ix.dir_idx,    &d.ix.col_off,     &d.ix.col_idx,    &d.ix.key_off,    &d.ix.key_q,
                              &d.ix.span_off,   &d.ix.span_q,      &d.ix.mem_off,    &d.ix.mem_span};
  for (size_t f = 0; f < offsets.size(); ++f) *fields[f] = base + offsets[f];
  d.ix.L = L, d.ix.S = t.num_spans();
  const std::lock_guard<std::mutex> lock(mu);
  if (cache->size() == kCached) cache->pop_front();
  cache->push_back({key, d});
  return d;
}

// Validated arguments of one call.
struct CombinerPlan {
  int64_t B = 0, H = 0, L = 0, d = 0;
  double scale = 1.0;
  DeviceTables tables;
  Tensor lengths;  // int32 [B] on the device, or undefined
  const int32_t* lengths_ptr() const { return lengths.defined() ? lengths.data<int32_t>() : nullptr; }
  int64_t S() const { return tables.ix.S; }
};

CombinerPlan plan_combiner(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                           const CombinerLayout& layout, const Tensor& lengths, double scale) {
  for (const auto& [name, t] : {std::pair{"q", q}, std::pair{"k", k}, std::pair{"v", v}}) {
    MIXGRAD_CHECK(t.defined(), "{}: {} is undefined (expected a [B, H, L, d] tensor)", op, name);
    MIXGRAD_CHECK(is_floating(t.dtype()), "{}: {} has dtype {}, expected float32 or float64", op, name, t.dtype());
    MIXGRAD_CHECK(t.dim() == 4, "{}: {} must be 4-D [B, H, L, d], got shape {}", op, name, shape_str(t.shape()));
  }
  MIXGRAD_CHECK(k.shape() == q.shape() && v.shape() == q.shape(),
                "{}: q {}, k {} and v {} must have one shape [B, H, L, d] (Combiner is self-attention)", op,
                shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  detail::check_same_dtype(op, {q, k, v});
  const Device device = detail::common_device(op, {q, k, v});
  detail::check_cuda_float(op, q);
  CombinerPlan p;
  p.B = q.size(0), p.H = q.size(1), p.L = q.size(2), p.d = q.size(3);
  MIXGRAD_CHECK(p.B >= 1 && p.H >= 1 && p.L >= 1 && p.d >= 1, "{}: q has shape {}; expected B, H, L and d all >= 1", op,
                shape_str(q.shape()));
  MIXGRAD_CHECK(p.L <= std::numeric_limits<int32_t>::max() / 2, "{}: L = {} tokens is too long", op, p.L);
#ifdef MIXGRAD_WITH_CUDA
  MIXGRAD_CHECK(device.is_cpu() || p.d <= kernels::cuda::kCombinerMaxHeadDim,
                "{}: head dim d = {} is not supported on CUDA (expected d <= {})", op, p.d,
                kernels::cuda::kCombinerMaxHeadDim);
#endif
  p.scale = scale > 0 ? scale : 1.0 / std::sqrt(double(p.d));
  MIXGRAD_CHECK(std::isfinite(p.scale), "{}: scale = {} is not finite", op, scale);
  combiner_span_for(layout, p.L);  // checks span and L
  if (lengths.defined()) {
    MIXGRAD_CHECK(lengths.dtype() == DType::i32, "{}: lengths has dtype {}, expected int32", op, lengths.dtype());
    MIXGRAD_CHECK(lengths.dim() == 1 && lengths.size(0) == p.B, "{}: lengths has shape {}, expected [B] = [{}]", op,
                  shape_str(lengths.shape()), p.B);
    MIXGRAD_CHECK(lengths.device() == device, "{}: lengths is on {}, q on {} (expected the same device)", op,
                  lengths.device(), device);
    if (device.is_cpu()) {
      const int32_t* n = lengths.data<int32_t>();
      for (int64_t b = 0; b < p.B; ++b)
        MIXGRAD_CHECK(n[b] >= 0 && n[b] <= p.L, "{}: lengths[{}] = {} is outside [0, L] = [0, {}]", op, b, n[b], p.L);
    }
    p.lengths = lengths;
  }
  p.tables = device_tables(layout, p.L, device);
  return p;
}

struct Summaries {
  Tensor sq, sk, sv, slse, qarg, karg;
};

Summaries run_summaries(const Tensor& q, const Tensor& k, const Tensor& v, const CombinerPlan& p) {
  const Shape rows{p.B, p.H, p.S(), p.d};
  const TensorOptions fo(q.dtype(), q.device()), io(DType::i32, q.device());
  Summaries s{empty(rows, fo), empty(rows, fo), empty(rows, fo), empty({p.B, p.H, p.S()}, fo),
              empty(rows, io), empty(rows, io)};
  if (q.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(q.dtype(), "combiner_attention", [&] {
      kernels::cpu::combiner_summary_forward(s.sq.data<scalar_t>(), s.sk.data<scalar_t>(), s.sv.data<scalar_t>(),
                                             s.slse.data<scalar_t>(), s.qarg.data<int32_t>(), s.karg.data<int32_t>(),
                                             q.data<scalar_t>(), k.data<scalar_t>(), v.data<scalar_t>(),
                                             p.lengths_ptr(), p.tables.ix, p.B, p.H, p.d, scalar_t(p.scale));
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    kernels::cuda::combiner_summary_forward(s.sq.data<float>(), s.sk.data<float>(), s.sv.data<float>(),
                                            s.slse.data<float>(), s.qarg.data<int32_t>(), s.karg.data<int32_t>(),
                                            q.data<float>(), k.data<float>(), v.data<float>(), p.lengths_ptr(),
                                            p.tables.ix, p.B, p.H, p.d, float(p.scale), detail::stream_of(q));
#else
    detail::no_cuda("combiner_attention");
#endif
  }
  return s;
}

std::pair<Tensor, Tensor> run_main(const Tensor& q, const Tensor& k, const Tensor& v, const Summaries& s,
                                   const CombinerPlan& p) {
  Tensor o = empty_like(q), lse = empty({p.B, p.H, p.L}, TensorOptions(q.dtype(), q.device()));
  if (q.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(q.dtype(), "combiner_attention", [&] {
      kernels::cpu::combiner_forward(o.data<scalar_t>(), lse.data<scalar_t>(), q.data<scalar_t>(), k.data<scalar_t>(),
                                     v.data<scalar_t>(), s.sk.data<scalar_t>(), s.sv.data<scalar_t>(), p.lengths_ptr(),
                                     p.tables.ix, p.B, p.H, p.d, scalar_t(p.scale));
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    kernels::cuda::combiner_forward(o.data<float>(), lse.data<float>(), q.data<float>(), k.data<float>(),
                                    v.data<float>(), s.sk.data<float>(), s.sv.data<float>(), p.lengths_ptr(),
                                    p.tables.ix, p.B, p.H, p.d, float(p.scale), detail::stream_of(q));
#else
    detail::no_cuda("combiner_attention");
#endif
  }
  return {o, lse};
}

// What the tape node keeps: the inputs, the output and its log-sum-exp, the summaries, the plan.
struct Saved {
  Tensor q, k, v, o, lse;
  Summaries s;
  CombinerPlan plan;
};

std::vector<Tensor> run_backward(const Tensor& dout, const Saved& sv) {
  const CombinerPlan& p = sv.plan;
  const Tensor& q = sv.q;
  MIXGRAD_CHECK(dout.defined() && dout.shape() == q.shape() && dout.dtype() == q.dtype(),
                "combiner_attention backward: the output gradient must be {} {}", q.dtype(), shape_str(q.shape()));
  const TensorOptions fo(q.dtype(), q.device());
  Tensor dq = empty_like(q), dk = empty_like(q), dv = empty_like(q);
  Tensor dsk = empty({p.B, p.H, p.S(), p.d}, fo), dsv = empty_like(dsk), dsq = empty_like(dsk);
  Tensor delta = empty({p.B, p.H, p.L}, fo), sdelta = empty({p.B, p.H, p.S()}, fo);
  const Summaries& s = sv.s;
  if (q.device().is_cpu()) {
    MIXGRAD_DISPATCH_FLOATING(q.dtype(), "combiner_attention backward", [&] {
      using T = scalar_t;
      kernels::cpu::combiner_backward(dq.data<T>(), dk.data<T>(), dv.data<T>(), dsk.data<T>(), dsv.data<T>(),
                                      delta.data<T>(), dout.data<T>(), q.data<T>(), sv.k.data<T>(), sv.v.data<T>(),
                                      s.sk.data<T>(), s.sv.data<T>(), sv.o.data<T>(), sv.lse.data<T>(), p.lengths_ptr(),
                                      p.tables.ix, p.B, p.H, p.d, T(p.scale));
      kernels::cpu::combiner_summary_backward(
          dq.data<T>(), dk.data<T>(), dv.data<T>(), dsq.data<T>(), sdelta.data<T>(), dsk.data<T>(), dsv.data<T>(),
          sv.k.data<T>(), sv.v.data<T>(), s.sq.data<T>(), s.sv.data<T>(), s.slse.data<T>(), s.qarg.data<int32_t>(),
          s.karg.data<int32_t>(), p.lengths_ptr(), p.tables.ix, p.B, p.H, p.d, T(p.scale));
    });
  } else {
#ifdef MIXGRAD_WITH_CUDA
    const cudaStream_t st = detail::stream_of(q);
    kernels::cuda::combiner_backward(dq.data<float>(), dk.data<float>(), dv.data<float>(), dsk.data<float>(),
                                     dsv.data<float>(), delta.data<float>(), dout.data<float>(), q.data<float>(),
                                     sv.k.data<float>(), sv.v.data<float>(), s.sk.data<float>(), s.sv.data<float>(),
                                     sv.o.data<float>(), sv.lse.data<float>(), p.lengths_ptr(), p.tables.ix, p.B, p.H,
                                     p.d, float(p.scale), st);
    kernels::cuda::combiner_summary_backward(
        dq.data<float>(), dk.data<float>(), dv.data<float>(), dsq.data<float>(), sdelta.data<float>(),
        dsk.data<float>(), dsv.data<float>(), sv.k.data<float>(), sv.v.data<float>(), s.sq.data<float>(),
        s.sv.data<float>(), s.slse.data<float>(), s.qarg.data<int32_t>(), s.karg.data<int32_t>(), p.lengths_ptr(),
        p.tables.ix, p.B, p.H, p.d, float(p.scale), st);
#else
    detail::no_cuda("combiner_attention backward");
#endif
  }
  return {dq, dk, dv};
}

}  // namespace

const CombinerTables& combiner_tables(const CombinerLayout& layout, int64_t L) {
  static std::mutex mu;
  static auto* cache = new std::map<TableKey, std::unique_ptr<CombinerTables>>();  // never destroyed
  const TableKey key = table_key(layout, L);
  const std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*cache)[key];
  if (!slot) slot = std::make_unique<CombinerTables>(build_tables(layout.variant, L, std::get<2>(key), layout.causal));
  return *slot;
}

CombinerForward combiner_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const CombinerLayout& layout, const Tensor& lengths, double scale) {
  const CombinerPlan plan = plan_combiner("combiner_attention_forward", q, k, v, layout, lengths, scale);
  const Summaries s = run_summaries(q, k, v, plan);
  auto [o, lse] = run_main(q, k, v, s, plan);
  return {o, lse, s.sq, s.sk, s.sv, s.slse, s.qarg, s.karg};
}

Tensor combiner_attention(const Tensor& q, const Tensor& k, const Tensor& v, const CombinerLayout& layout,
                          const Tensor& lengths, double scale) {
  CombinerPlan plan = plan_combiner("combiner_attention", q, k, v, layout, lengths, scale);
  Summaries s = run_summaries(q, k, v, plan);
  auto [o, lse] = run_main(q, k, v, s, plan);
  if (autograd::needs_grad({q, k, v})) {
    auto saved = std::make_shared<Saved>(
        Saved{q.detach(), k.detach(), v.detach(), o.detach(), lse, std::move(s), std::move(plan)});
    autograd::record(
        "combiner_attention", {q, k, v}, {o},
        [saved](const std::vector<Tensor>& g) -> std::vector<Tensor> { return run_backward(g[0], *saved); });
  }
  return o;
}

}  // namespace mixgrad
