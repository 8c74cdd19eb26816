// Engine-level reductions (sum, mean, max, argmax) and layout ops (transpose, permute, views, expand, cat, narrow,
// split, stack, slice0): forward against naive references in float64 and float32, gradients against finite
// differences, empty and awkward shapes, views that share storage, and input validation.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/mixgrad.h"
#include "tests/common/check.h"
#include "tests/common/reference.h"

namespace {

using namespace mixgrad;
namespace mt = mixgrad::testing;
using Catch::Contains;
using mt::fwd_tol;
using mt::make;
using mt::make_leaf;
using mt::ravel;
using mt::rounded;
using mt::uniform;
using mt::unravel;
using mt::values;

// Sum (or mean) over `dims` (already non-negative), result in the keepdim shape.
std::vector<double> reduce_ref(const std::vector<double>& v, const Shape& s, const std::vector<int64_t>& dims,
                               bool mean, Shape& keep_shape) {
  keep_shape = s;
  int64_t count = 1;
  for (int64_t d : dims) {
    keep_shape[size_t(d)] = 1;
    count *= s[size_t(d)];
  }
  std::vector<double> out(size_t(shape_numel(keep_shape)), 0.0);
  for (int64_t i = 0; i < shape_numel(s); ++i) {
    std::vector<int64_t> idx = unravel(i, s);
    for (int64_t d : dims) idx[size_t(d)] = 0;
    out[size_t(ravel(idx, keep_shape))] += v[size_t(i)];
  }
  if (mean)
    for (double& x : out) x = count > 0 ? x / double(count) : NAN;
  return out;
}

Shape drop_dims(const Shape& s, const std::vector<int64_t>& dims) {
  Shape r;
  for (size_t d = 0; d < s.size(); ++d)
    if (std::find(dims.begin(), dims.end(), int64_t(d)) == dims.end()) r.push_back(s[d]);
  return r;
}

// A shuffled grid: distinct values at least 0.1 apart (keeps max away from ties for gradcheck).
std::vector<double> distinct(int64_t n, uint64_t seed) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = 0.1 * double(i) - 0.05 * double(n);
  std::shuffle(v.begin(), v.end(), std::mt19937_64(seed));
  return v;
}

std::vector<double> permute_ref(const std::vector<double>& v, const Shape& s, const std::vector<int64_t>& p,
                                Shape& out) {
  out.assign(p.size(), 0);
  for (size_t i = 0; i < p.size(); ++i) out[i] = s[size_t(p[i])];
  std::vector<double> r(v.size());
  for (int64_t f = 0; f < shape_numel(out); ++f) {
    const std::vector<int64_t> oi = unravel(f, out);
    std::vector<int64_t> ii(s.size());
    for (size_t i = 0; i < p.size(); ++i) ii[size_t(p[i])] = oi[i];
    r[size_t(f)] = v[size_t(ravel(ii, s))];
  }
  return r;
}

// Elements [start, start + len) of dimension dim.
std::vector<double> narrow_ref(const std::vector<double>& v, const Shape& s, int64_t dim, int64_t start, int64_t len) {
  Shape out = s;
  out[size_t(dim)] = len;
  std::vector<double> r(size_t(shape_numel(out)));
  for (int64_t f = 0; f < shape_numel(out); ++f) {
    std::vector<int64_t> idx = unravel(f, out);
    idx[size_t(dim)] += start;
    r[size_t(f)] = v[size_t(ravel(idx, s))];
  }
  return r;
}

}  // namespace

// ================================================ reductions ====================================================

TEST_CASE("sum and mean over dim lists, with and without keepdim, match the reference", "[ops][reduce]") {
  const Shape s{3, 7, 5};
  const std::vector<std::vector<int64_t>> dim_lists = {{0},    {1},    {2},    {-1},     {0, 2},
                                                       {2, 0}, {0, 1}, {1, 2}, {-2, -1}, {0, 1, 2}};
  for (DType dt : {DType::f64, DType::f32}) {
    const std::vector<double> v = rounded(uniform(shape_numel(s), -1, 1, 11), dt);
    const Tensor x = make(v, s, dt);
    for (const auto& dims : dim_lists)
      for (bool mean_op : {false, true})
        for (bool keepdim : {false, true}) {
          std::vector<int64_t> nd = dims;
          for (int64_t& d : nd) d = d < 0 ? d + 3 : d;
          INFO((mean_op ? "mean" : "sum")
               << " dims " << shape_str(dims) << " keepdim " << keepdim << " " << dtype_name(dt));
          Shape ks;
          const std::vector<double> expect = reduce_ref(v, s, nd, mean_op, ks);
          const Shape want = keepdim ? ks : drop_dims(s, nd);
          const Tensor y = mean_op ? mean(x, dims, keepdim) : sum(x, dims, keepdim);
          REQUIRE(y.shape() == want);
          REQUIRE(y.dtype() == dt);
          REQUIRE_CLOSE(mt::all_close(y, make(expect, want), fwd_tol(dt)));
        }
    // All elements -> a 0-d tensor.
    double total = 0;
    for (double e : v) total += e;
    REQUIRE(sum(x).shape() == Shape{});
    REQUIRE(mean(x).shape() == Shape{});
    REQUIRE_CLOSE(mt::all_close(sum(x), make({total}, {}), fwd_tol(dt)));
    REQUIRE_CLOSE(mt::all_close(mean(x), make({total / 105.0}, {}), fwd_tol(dt)));
  }
}

TEST_CASE("sum and mean on awkward sizes: single row, long rows, odd widths", "[ops][reduce]") {
  const std::vector<Shape> shapes = {{1, 257}, {2, 5000}, {33, 7}, {1}, {1, 1}, {3, 1, 33}, {7, 3, 1, 9}};
  uint64_t seed = 20;
  for (DType dt : {DType::f64, DType::f32})
    for (const Shape& s : shapes) {
      // Positive values: no cancellation, so float32 sums of 5000 terms stay within the relative tolerance.
      const std::vector<double> v = rounded(uniform(shape_numel(s), 0.5, 1.5, seed++), dt);
      const Tensor x = make(v, s, dt);
      for (int64_t d = 0; d < int64_t(s.size()); ++d) {
        INFO(shape_str(s) << " dim " << d << " " << dtype_name(dt));
        Shape ks;
        const std::vector<double> es = reduce_ref(v, s, {d}, false, ks), em = reduce_ref(v, s, {d}, true, ks);
        REQUIRE_CLOSE(mt::all_close(sum(x, {d}, true), make(es, ks), fwd_tol(dt)));
        REQUIRE_CLOSE(mt::all_close(mean(x, {d}, true), make(em, ks), fwd_tol(dt)));
      }
    }
}

TEST_CASE("reductions over empty dimensions: sum is 0", "[ops][reduce]") {
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    const Tensor x = make({}, {3, 0}, dt);
    REQUIRE(sum(x, {1}).shape() == Shape{3});
    REQUIRE(values(sum(x, {1})) == std::vector<double>{0, 0, 0});
    REQUIRE(sum(x, {1}, true).shape() == Shape{3, 1});
    REQUIRE(mean(x, {1}).shape() == Shape{3});
    // Reducing a non-empty dimension of an empty tensor leaves an empty result.
    REQUIRE(sum(x, {0}).shape() == Shape{0});
    REQUIRE(mean(x, {0}, true).shape() == Shape{1, 0});
    REQUIRE(sum(x).item() == 0.0);
    REQUIRE(sum(make({}, {0}, dt)).item() == 0.0);
    REQUIRE(values(sum(make({}, {2, 0, 3}, dt), {0, 1})) == std::vector<double>{0, 0, 0});
  }
  // Gradient of a sum over an empty dim: an empty gradient of the input's shape.
  Tensor x = make({}, {2, 0, 3});
  x.requires_grad_();
  sum(mul_scalar(sum(x, {1}), 2.0)).backward();
  REQUIRE(x.grad().defined());
  REQUIRE(x.grad().shape() == Shape{2, 0, 3});
}

TEST_CASE("reductions over empty dimensions: mean is NaN", "[ops][reduce]") {
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    const Tensor x = make({}, {3, 0}, dt);
    for (double e : values(mean(x, {1}))) CHECK(std::isnan(e));
    CHECK(std::isnan(mean(x).item()));
    CHECK(std::isnan(mean(make({}, {0}, dt)).item()));
    for (double e : values(mean(make({}, {2, 0, 3}, dt), {0, 1}, true))) CHECK(std::isnan(e));
  }
}

TEST_CASE("sum and mean: gradients match finite differences", "[ops][reduce]") {
  const Shape s{3, 4, 5};
  const std::vector<std::vector<int64_t>> dim_lists = {{0}, {2}, {-2}, {0, 2}, {0, 1, 2}, {1, 2}};
  uint64_t seed = 30;
  for (const auto& dims : dim_lists)
    for (bool keepdim : {false, true}) {
      INFO("dims " << shape_str(dims) << " keepdim " << keepdim);
      Tensor x = make_leaf(uniform(60, -1, 1, seed++), s);
      REQUIRE_CLOSE(mt::gradcheck([&](const std::vector<Tensor>& in) { return sum(in[0], dims, keepdim); }, {x}));
      REQUIRE_CLOSE(mt::gradcheck([&](const std::vector<Tensor>& in) { return mean(in[0], dims, keepdim); }, {x}));
    }
  Tensor x = make_leaf(uniform(60, -1, 1, seed++), s);
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return sum(in[0]); }, {x}));
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return mean(in[0]); }, {x}));
}

TEST_CASE("max and argmax over one dimension match the reference, first index on ties", "[ops][reduce]") {
  const Shape s{3, 7, 5};
  for (DType dt : {DType::f64, DType::f32}) {
    const std::vector<double> v = rounded(uniform(shape_numel(s), -1, 1, 40), dt);
    const Tensor x = make(v, s, dt);
    for (int64_t dim : {0, 1, 2, -1, -3})
      for (bool keepdim : {false, true}) {
        const int64_t d = dim < 0 ? dim + 3 : dim;
        INFO("dim " << dim << " keepdim " << keepdim << " " << dtype_name(dt));
        Shape ks = s;
        ks[size_t(d)] = 1;
        std::vector<double> ev(size_t(shape_numel(ks)));
        std::vector<int64_t> ei(ev.size());
        for (int64_t f = 0; f < shape_numel(ks); ++f) {
          std::vector<int64_t> idx = unravel(f, ks);
          double best = -INFINITY;
          int64_t arg = -1;
          for (int64_t j = 0; j < s[size_t(d)]; ++j) {
            idx[size_t(d)] = j;
            const double e = v[size_t(ravel(idx, s))];
            if (e > best) best = e, arg = j;
          }
          ev[size_t(f)] = best;
          ei[size_t(f)] = arg;
        }
        const Shape want = keepdim ? ks : drop_dims(s, {d});
        const MaxResult r = max(x, dim, keepdim);
        REQUIRE(r.values.shape() == want);
        REQUIRE(r.indices.shape() == want);
        REQUIRE(r.indices.dtype() == DType::i64);
        REQUIRE_CLOSE(mt::all_close(r.values, make(ev, want), fwd_tol(dt)));
        REQUIRE(r.indices.to_vector<int64_t>() == ei);
        const Tensor am = argmax(x, dim, keepdim);
        REQUIRE(am.dtype() == DType::i64);
        REQUIRE(am.shape() == want);
        REQUIRE(am.to_vector<int64_t>() == ei);
      }
  }
  // Ties: the first maximal position wins; a long row of 5000 with the maximum near the end.
  const Tensor ties = make({1, 3, 3, 2, 5, 5, 5, 0}, {2, 4});
  REQUIRE(argmax(ties, 1).to_vector<int64_t>() == std::vector<int64_t>{1, 0});
  std::vector<double> row = uniform(5000, -1, 1, 41);
  row[4997] = 2.0;
  const MaxResult lr = max(make(row, {1, 5000}), 1);
  REQUIRE(lr.values.item() == 2.0);
  REQUIRE(lr.indices.item() == 4997.0);
  // argmax records nothing on the tape.
  autograd::clear_tape();
  Tensor g = make_leaf({1, 2, 3}, {3});
  (void)argmax(g, 0);
  REQUIRE(autograd::tape_size() == 0);
}

TEST_CASE("max: gradient flows to the maximal element only", "[ops][reduce]") {
  for (int64_t dim : {0, 1, 2})
    for (bool keepdim : {false, true}) {
      INFO("dim " << dim << " keepdim " << keepdim);
      Tensor x = make_leaf(distinct(2 * 3 * 5, 50 + uint64_t(dim)), {2, 3, 5});
      REQUIRE_CLOSE(mt::gradcheck([&](const std::vector<Tensor>& in) { return max(in[0], dim, keepdim).values; }, {x}));
    }
  Tensor x = make_leaf({1, 4, 2, 7, 0, 3}, {2, 3});
  sum(max(x, 1).values).backward();
  REQUIRE(values(x.grad()) == std::vector<double>{0, 1, 0, 1, 0, 0});
}

TEST_CASE("reductions reject bad input with clear messages", "[ops][reduce][errors]") {
  const Tensor x = make(uniform(6, -1, 1, 60), {2, 3});
  REQUIRE_MG_ERROR(sum(x, {2}), Contains("sum") && Contains("dimension 2 out of range"));
  REQUIRE_MG_ERROR(mean(x, {-3}), Contains("mean") && Contains("-3"));
  REQUIRE_MG_ERROR(sum(x, {1, -1}), Contains("sum") && Contains("repeated"));
  REQUIRE_MG_ERROR(max(x, 2), Contains("max") && Contains("out of range"));
  REQUIRE_MG_ERROR(argmax(x, -3), Contains("max") && Contains("out of range"));
  REQUIRE_MG_ERROR(max(make({}, {3, 0}), 1), Contains("max") && Contains("size 0"));
  const Tensor i64 = from_vector<int64_t>({1, 2, 3}, {3});
  REQUIRE_MG_ERROR(sum(i64), Contains("sum") && Contains("int64"));
  REQUIRE_MG_ERROR(max(i64, 0), Contains("max") && Contains("int64"));
}

// ================================================== layout ======================================================

TEST_CASE("transpose and permute match the reference", "[ops][layout]") {
  const Shape s{2, 3, 5, 7};
  const std::vector<std::vector<int64_t>> perms = {
      {0, 1, 2, 3}, {3, 1, 0, 2}, {1, 0, 3, 2}, {-1, -2, -3, -4}, {2, 3, 0, 1}};
  for (DType dt : {DType::f64, DType::f32}) {
    const std::vector<double> v = rounded(uniform(shape_numel(s), -1, 1, 70), dt);
    const Tensor x = make(v, s, dt);
    for (const auto& p : perms) {
      std::vector<int64_t> np = p;
      for (int64_t& d : np) d = d < 0 ? d + 4 : d;
      Shape out;
      const std::vector<double> expect = permute_ref(v, s, np, out);
      INFO("perm " << shape_str(p) << " " << dtype_name(dt));
      const Tensor y = permute(x, p);
      REQUIRE(y.shape() == out);
      REQUIRE_CLOSE(mt::all_close(y, make(expect, out), fwd_tol(dt)));
    }
    for (auto [d0, d1] : std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {1, 2}, {-1, -2}, {2, 2}}) {
      std::vector<int64_t> p = {0, 1, 2, 3};
      std::swap(p[size_t(d0 < 0 ? d0 + 4 : d0)], p[size_t(d1 < 0 ? d1 + 4 : d1)]);
      Shape out;
      const std::vector<double> expect = permute_ref(v, s, p, out);
      INFO("transpose " << d0 << " " << d1);
      const Tensor y = transpose(x, d0, d1);
      REQUIRE(y.shape() == out);
      REQUIRE_CLOSE(mt::all_close(y, make(expect, out), fwd_tol(dt)));
    }
  }
  // Odd 2-D sizes and an empty dimension.
  const std::vector<double> v = uniform(33 * 257, -1, 1, 71);
  Shape out;
  REQUIRE_CLOSE(mt::all_close(transpose(make(v, {33, 257}), 0, 1),
                              make(permute_ref(v, {33, 257}, {1, 0}, out), {257, 33}), fwd_tol(DType::f64)));
  REQUIRE(transpose(make({}, {0, 4}), 0, 1).shape() == Shape{4, 0});
}

TEST_CASE("transpose and permute: gradients match finite differences", "[ops][layout]") {
  Tensor x = make_leaf(uniform(2 * 3 * 4, -1, 1, 80), {2, 3, 4});
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return permute(in[0], {2, 0, 1}); }, {x}));
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return permute(in[0], {1, 2, 0}); }, {x}));
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return transpose(in[0], 0, -1); }, {x}));
}

TEST_CASE("permute and transpose reject bad dims", "[ops][layout][errors]") {
  const Tensor x = make(uniform(24, -1, 1, 90), {2, 3, 4});
  REQUIRE_MG_ERROR(permute(x, {0, 1, 1}), Contains("permute") && Contains("repeated"));
  REQUIRE_MG_ERROR(permute(x, {0, 2, -1}), Contains("permute") && Contains("repeated"));
  REQUIRE_MG_ERROR(permute(x, {0, 1}), Contains("permute") && Contains("[2, 3, 4]"));
  REQUIRE_MG_ERROR(permute(x, {0, 1, 3}), Contains("permute") && Contains("out of range"));
  REQUIRE_MG_ERROR(transpose(x, 0, 3), Contains("transpose") && Contains("dimension 3 out of range"));
}

TEST_CASE("reshape, view, flatten, unsqueeze and squeeze share storage and keep the data", "[ops][layout]") {
  const std::vector<double> v = uniform(2 * 3 * 5, -1, 1, 100);
  const Tensor x = make(v, {2, 3, 5});
  struct Case {
    Tensor y;
    Shape want;
  };
  const std::vector<Case> cases = {
      {x.reshape({6, 5}), {6, 5}},
      {x.reshape({-1, 10}), {3, 10}},
      {x.view({30}), {30}},
      {reshape(x, {5, -1}), {5, 6}},
      {x.flatten(), {30}},
      {x.flatten(1), {2, 15}},
      {x.flatten(0, 1), {6, 5}},
      {x.flatten(-2, -1), {2, 15}},
      {x.unsqueeze(0), {1, 2, 3, 5}},
      {x.unsqueeze(3), {2, 3, 5, 1}},
      {x.unsqueeze(-1), {2, 3, 5, 1}},
      {x.unsqueeze(1), {2, 1, 3, 5}},
      {x.unsqueeze(2).squeeze(2), {2, 3, 5}},
      {x.reshape({1, 30, 1}).squeeze(0), {30, 1}},
      {x.reshape({1, 30, 1}).squeeze(-1), {1, 30}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i);
    REQUIRE(cases[i].y.shape() == cases[i].want);
    REQUIRE(cases[i].y.same_storage(x));
    REQUIRE(values(cases[i].y) == v);
  }
  // 0-d and empty tensors.
  const Tensor s = make({4.5}, {});
  REQUIRE(s.flatten().shape() == Shape{1});
  REQUIRE(s.unsqueeze(0).shape() == Shape{1});
  REQUIRE(s.reshape({1, 1}).squeeze(0).squeeze(0).shape() == Shape{});
  REQUIRE(make({}, {0, 4}).reshape({2, 0, 8}).shape() == Shape{2, 0, 8});
  // A write through the base is visible through the view.
  Tensor base = make(v, {2, 3, 5});
  Tensor view = base.view({30});
  base.fill_(2.0);
  REQUIRE(values(view) == std::vector<double>(30, 2.0));
}

TEST_CASE("view ops reject incompatible sizes and bad dims", "[ops][layout][errors]") {
  const Tensor x = make(uniform(30, -1, 1, 110), {2, 3, 5});
  REQUIRE_MG_ERROR(x.reshape({4, 8}), Contains("reshape") && Contains("[2, 3, 5]") && Contains("[4, 8]"));
  REQUIRE_MG_ERROR(x.reshape({7, -1}), Contains("reshape") && Contains("[7, -1]"));
  REQUIRE_MG_ERROR(x.reshape({-1, -1}), Contains("reshape") && Contains("-1"));
  REQUIRE_MG_ERROR(x.view({31}), Contains("reshape") && Contains("30"));
  REQUIRE_MG_ERROR(x.squeeze(1), Contains("squeeze") && Contains("expected 1"));
  REQUIRE_MG_ERROR(x.unsqueeze(4), Contains("unsqueeze") && Contains("out of range"));
  REQUIRE_MG_ERROR(x.flatten(2, 1), Contains("flatten"));
  REQUIRE_MG_ERROR(x.flatten(0, 3), Contains("flatten") && Contains("out of range"));
}

TEST_CASE("expand materialises a broadcast and sums back in backward", "[ops][layout]") {
  const std::vector<double> v = uniform(3, -1, 1, 120);
  for (DType dt : {DType::f64, DType::f32}) {
    const std::vector<double> r = rounded(v, dt);
    const Tensor y = expand(make(v, {3, 1}, dt), {2, 3, 4});
    REQUIRE(y.shape() == Shape{2, 3, 4});
    std::vector<double> e;
    for (int b = 0; b < 2; ++b)
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 4; ++j) e.push_back(r[size_t(i)]);
    REQUIRE_CLOSE(mt::all_close(y, make(e, {2, 3, 4}), fwd_tol(dt)));
  }
  REQUIRE(expand(make({7}, {}), {257}).shape() == Shape{257});
  REQUIRE(values(expand(make({7}, {}), {257})) == std::vector<double>(257, 7.0));
  REQUIRE(expand(make({1, 2}, {1, 2}), {0, 2}).shape() == Shape{0, 2});
  Tensor x = make_leaf(v, {3, 1});
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return expand(in[0], {2, 3, 4}); }, {x}));
  Tensor x2 = make_leaf(uniform(4, -1, 1, 121), {1, 4});
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return expand(in[0], {5, 4}); }, {x2}));
  REQUIRE_MG_ERROR(expand(make({1, 2, 3}, {3}), {2, 4}), Contains("expand") && Contains("[3]") && Contains("[2, 4]"));
  REQUIRE_MG_ERROR(expand(make(v, {3, 1}), {4}), Contains("expand") && Contains("[3, 1]") && Contains("[4]"));
}

TEST_CASE("cat matches the reference along any dim, including empty pieces", "[ops][layout]") {
  for (DType dt : {DType::f64, DType::f32})
    for (int64_t dim : {0, 1, 2, -1}) {
      const int64_t d = dim < 0 ? dim + 3 : dim;
      Shape base{2, 3, 5};
      std::vector<Shape> shapes;
      for (int64_t len : {int64_t(3), int64_t(0), int64_t(1), int64_t(7)}) {
        Shape sh = base;
        sh[size_t(d)] = len;
        shapes.push_back(sh);
      }
      std::vector<Tensor> xs;
      std::vector<std::vector<double>> vs;
      uint64_t seed = 130;
      for (const Shape& sh : shapes) {
        vs.push_back(rounded(uniform(shape_numel(sh), -1, 1, seed++), dt));
        xs.push_back(make(vs.back(), sh, dt));
      }
      Shape out = base;
      out[size_t(d)] = 11;
      std::vector<double> expect(size_t(shape_numel(out)));
      for (int64_t f = 0; f < shape_numel(out); ++f) {
        std::vector<int64_t> idx = unravel(f, out);
        size_t piece = 0;
        while (idx[size_t(d)] >= shapes[piece][size_t(d)]) idx[size_t(d)] -= shapes[piece++][size_t(d)];
        expect[size_t(f)] = vs[piece][size_t(ravel(idx, shapes[piece]))];
      }
      INFO("dim " << dim << " " << dtype_name(dt));
      const Tensor y = cat(xs, dim);
      REQUIRE(y.shape() == out);
      REQUIRE_CLOSE(mt::all_close(y, make(expect, out), fwd_tol(dt)));
    }
  // A single tensor, integer tensors and a long row.
  const std::vector<double> v = uniform(5000, -1, 1, 140);
  REQUIRE(values(cat({make(v, {1, 5000})}, 1)) == v);
  REQUIRE(cat({from_vector<int64_t>({1, 2}, {2}), from_vector<int64_t>({3}, {1})}, 0).to_vector<int64_t>() ==
          std::vector<int64_t>{1, 2, 3});
}

TEST_CASE("cat: gradients match finite differences", "[ops][layout]") {
  Tensor a = make_leaf(uniform(6, -1, 1, 150), {2, 3}), b = make_leaf(uniform(2, -1, 1, 151), {2, 1});
  Tensor c = make_leaf(uniform(8, -1, 1, 152), {2, 4});
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return cat(in, 1); }, {a, b, c}));
  Tensor d = make_leaf(uniform(3, -1, 1, 153), {1, 3});
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return cat(in, 0); }, {a, d}));
  // Only the pieces that require grad get one.
  Tensor k = make(uniform(3, -1, 1, 154), {1, 3});
  sum(cat({d, k}, 0)).backward();
  REQUIRE(values(d.grad()) == std::vector<double>{1, 1, 1});
  REQUIRE_FALSE(k.grad().defined());
}

TEST_CASE("cat rejects mismatched inputs", "[ops][layout][errors]") {
  const Tensor a = make(uniform(6, -1, 1, 160), {2, 3}), b = make(uniform(8, -1, 1, 161), {2, 4});
  REQUIRE_MG_ERROR(cat({a, b}, 0), Contains("cat") && Contains("[2, 4]") && Contains("[2, 3]"));
  REQUIRE_MG_ERROR(cat({a, make(uniform(6, -1, 1, 162), {6})}, 0), Contains("cat") && Contains("[6]"));
  REQUIRE_MG_ERROR(cat({a, b}, 2), Contains("cat") && Contains("out of range"));
  REQUIRE_MG_ERROR(cat({a, a.to(DType::f32)}, 0), Contains("cat") && Contains("float32"));
  REQUIRE_MG_ERROR(cat({}, 0), Contains("cat") && Contains("non-empty"));
  REQUIRE_MG_ERROR(cat({make({1}, {}), make({2}, {})}, 0), Contains("cat") && Contains("zero-dimensional"));
}

TEST_CASE("narrow: dim 0 is a view sharing storage, other dims copy", "[ops][layout]") {
  const Shape s{5, 7, 3};
  for (DType dt : {DType::f64, DType::f32}) {
    const std::vector<double> v = rounded(uniform(shape_numel(s), -1, 1, 170), dt);
    const Tensor x = make(v, s, dt);
    for (int64_t dim : {0, 1, 2, -1})
      for (auto [start, len] : std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {1, 2}, {0, 3}, {2, 0}}) {
        const int64_t d = dim < 0 ? dim + 3 : dim;
        INFO("dim " << dim << " start " << start << " len " << len << " " << dtype_name(dt));
        Shape out = s;
        out[size_t(d)] = len;
        const Tensor y = narrow(x, dim, start, len);
        REQUIRE(y.shape() == out);
        REQUIRE(y.same_storage(x) == (d == 0));
        REQUIRE_CLOSE(mt::all_close(y, make(narrow_ref(v, s, d, start, len), out), fwd_tol(dt)));
      }
  }
  // Writes through the base show in a dim-0 narrow.
  Tensor base = make(uniform(10, -1, 1, 171), {5, 2});
  Tensor rows = narrow(base, 0, 3, 2);
  base.fill_(-3.0);
  REQUIRE(values(rows) == std::vector<double>(4, -3.0));
  // Gradients, both paths.
  Tensor g = make_leaf(uniform(4 * 6, -1, 1, 172), {4, 6});
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return narrow(in[0], 0, 1, 2); }, {g}));
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return narrow(in[0], 1, 2, 3); }, {g}));
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return narrow(in[0], -1, 5, 1); }, {g}));
}

TEST_CASE("narrow and slice0 reject out-of-range requests", "[ops][layout][errors]") {
  const Tensor x = make(uniform(12, -1, 1, 180), {3, 4});
  REQUIRE_MG_ERROR(narrow(x, 1, 2, 3), Contains("narrow") && Contains("[2, 5)") && Contains("size 4"));
  REQUIRE_MG_ERROR(narrow(x, 0, 3, 1), Contains("narrow") && Contains("out of bounds"));
  REQUIRE_MG_ERROR(narrow(x, 0, -1, 1), Contains("narrow") && Contains("out of bounds"));
  REQUIRE_MG_ERROR(narrow(x, 1, 0, -1), Contains("narrow") && Contains("out of bounds"));
  REQUIRE_MG_ERROR(narrow(x, 2, 0, 1), Contains("narrow") && Contains("out of range"));
  REQUIRE_MG_ERROR(x.slice0(2, 2), Contains("slice0") && Contains("[2, 4)"));
  REQUIRE_MG_ERROR(make({1}, {}).slice0(0, 1), Contains("slice0"));
}

TEST_CASE("slice0 is a view of rows with a scattering gradient", "[ops][layout]") {
  const std::vector<double> v = uniform(5 * 3, -1, 1, 190);
  const Tensor x = make(v, {5, 3});
  const Tensor y = x.slice0(1, 3);
  REQUIRE(y.shape() == Shape{3, 3});
  REQUIRE(y.same_storage(x));
  REQUIRE(values(y) == std::vector<double>(v.begin() + 3, v.begin() + 12));
  REQUIRE(x.slice0(5, 0).shape() == Shape{0, 3});
  REQUIRE(x.slice0(0, 5).shape() == Shape{5, 3});
  Tensor g = make_leaf(v, {5, 3});
  for (auto [start, len] : std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {1, 3}, {3, 2}, {0, 5}}) {
    INFO("start " << start << " len " << len);
    REQUIRE_CLOSE(mt::gradcheck([&](const std::vector<Tensor>& in) { return in[0].slice0(start, len); }, {g}));
  }
}

TEST_CASE("split by size and by sections matches narrow", "[ops][layout]") {
  const Shape s{4, 7, 3};
  const std::vector<double> v = uniform(shape_numel(s), -1, 1, 200);
  for (DType dt : {DType::f64, DType::f32}) {
    const std::vector<double> r = rounded(v, dt);
    const Tensor x = make(v, s, dt);
    // split_size 3 over 7 -> 3, 3, 1
    const std::vector<Tensor> p = split(x, 3, 1);
    REQUIRE(p.size() == 3);
    const int64_t starts[] = {0, 3, 6}, lens[] = {3, 3, 1};
    for (size_t i = 0; i < 3; ++i) {
      REQUIRE(p[i].shape() == Shape{4, lens[i], 3});
      REQUIRE_CLOSE(mt::all_close(p[i], make(narrow_ref(r, s, 1, starts[i], lens[i]), {4, lens[i], 3}), fwd_tol(dt)));
    }
    // split_size larger than the dim: one piece
    const std::vector<Tensor> one = split(x, 10, -1);
    REQUIRE(one.size() == 1);
    REQUIRE(one[0].shape() == s);
    // sections, with an empty one, along dim 0 (views)
    const std::vector<Tensor> q = split(x, std::vector<int64_t>{1, 0, 3}, 0);
    REQUIRE(q.size() == 3);
    REQUIRE(q[0].shape() == Shape{1, 7, 3});
    REQUIRE(q[1].shape() == Shape{0, 7, 3});
    REQUIRE(q[2].shape() == Shape{3, 7, 3});
    REQUIRE(q[2].same_storage(x));
    REQUIRE_CLOSE(mt::all_close(q[2], make(narrow_ref(r, s, 0, 1, 3), {3, 7, 3}), fwd_tol(dt)));
  }
  // Empty dim: no pieces from split_size.
  REQUIRE(split(make({}, {0, 2}), 2, 0).empty());
  // Gradient: pieces recombined out of order.
  Tensor g = make_leaf(uniform(3 * 7, -1, 1, 201), {3, 7});
  REQUIRE_CLOSE(mt::gradcheck(
      [](const std::vector<Tensor>& in) {
        const std::vector<Tensor> ps = split(in[0], 3, 1);
        return cat({ps[2], mul_scalar(ps[0], 2.0), ps[1]}, 1);
      },
      {g}));
  REQUIRE_CLOSE(mt::gradcheck(
      [](const std::vector<Tensor>& in) {
        const std::vector<Tensor> ps = split(in[0], std::vector<int64_t>{2, 1}, 0);
        return cat({ps[1], ps[0]}, 0);
      },
      {g}));
  // Only one piece used: the others get zero gradient.
  Tensor h = make_leaf(uniform(6, -1, 1, 202), {6});
  sum(split(h, std::vector<int64_t>{2, 4}, 0)[1]).backward();
  REQUIRE(values(h.grad()) == std::vector<double>{0, 0, 1, 1, 1, 1});
}

TEST_CASE("split rejects bad sections", "[ops][layout][errors]") {
  const Tensor x = make(uniform(14, -1, 1, 210), {2, 7});
  REQUIRE_MG_ERROR(split(x, std::vector<int64_t>{3, 3}, 1), Contains("split") && Contains("sum to 6") && Contains("7"));
  REQUIRE_MG_ERROR(split(x, std::vector<int64_t>{8, -1}, 1), Contains("split") && Contains("negative"));
  REQUIRE_MG_ERROR(split(x, 0, 1), Contains("split") && Contains("positive"));
  REQUIRE_MG_ERROR(split(x, 2, 2), Contains("split") && Contains("out of range"));
}

TEST_CASE("stack adds a new dimension at any position", "[ops][layout]") {
  const Shape s{3, 5};
  for (DType dt : {DType::f64, DType::f32}) {
    std::vector<std::vector<double>> vs;
    std::vector<Tensor> xs;
    for (uint64_t i = 0; i < 4; ++i) {
      vs.push_back(rounded(uniform(15, -1, 1, 220 + i), dt));
      xs.push_back(make(vs.back(), s, dt));
    }
    for (int64_t dim : {0, 1, 2, -1, -3}) {
      const int64_t d = dim < 0 ? dim + 3 : dim;
      Shape out = s;
      out.insert(out.begin() + d, 4);
      std::vector<double> expect(size_t(shape_numel(out)));
      for (int64_t f = 0; f < shape_numel(out); ++f) {
        std::vector<int64_t> idx = unravel(f, out);
        const int64_t which = idx[size_t(d)];
        idx.erase(idx.begin() + d);
        expect[size_t(f)] = vs[size_t(which)][size_t(ravel(idx, s))];
      }
      INFO("dim " << dim << " " << dtype_name(dt));
      const Tensor y = stack(xs, dim);
      REQUIRE(y.shape() == out);
      REQUIRE_CLOSE(mt::all_close(y, make(expect, out), fwd_tol(dt)));
    }
  }
  REQUIRE(stack({make({1}, {}), make({2}, {})}, 0).shape() == Shape{2});
  Tensor a = make_leaf(uniform(6, -1, 1, 230), {2, 3}), b = make_leaf(uniform(6, -1, 1, 231), {2, 3});
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return stack(in, 1); }, {a, b}));
  REQUIRE_CLOSE(mt::gradcheck([](const std::vector<Tensor>& in) { return stack(in, -1); }, {a, b}));
  REQUIRE_MG_ERROR(stack({a.detach(), make(uniform(3, -1, 1, 232), {3})}, 0),
                   Contains("stack") && Contains("[3]") && Contains("[2, 3]"));
  REQUIRE_MG_ERROR(stack({a.detach(), b.detach()}, 3), Contains("stack") && Contains("out of range"));
  REQUIRE_MG_ERROR(stack({}, 0), Contains("stack") && Contains("non-empty"));
}

TEST_CASE("backward through a chain of view and layout ops", "[ops][layout][autograd]") {
  Tensor x = make_leaf(uniform(2 * 3 * 4, -1, 1, 240), {2, 3, 4});
  auto chain = [](const std::vector<Tensor>& in) {
    Tensor t = in[0].reshape({6, 4}).unsqueeze(0).squeeze(0).flatten().view({4, 6});
    t = transpose(t, 0, 1).slice0(1, 4);   // [4, 4]
    t = narrow(t, 1, 1, 2).unsqueeze(-1);  // [4, 2, 1]
    return expand(t, {3, 4, 2, 2});
  };
  REQUIRE_CLOSE(mt::gradcheck(chain, {x}));
  // Explicit: gradient of sum over a reshape/slice0 chain is the indicator of the selected elements.
  Tensor y = make_leaf(uniform(12, -1, 1, 241), {3, 4});
  sum(y.flatten().view({6, 2}).slice0(2, 3).reshape({3, 2, 1}).squeeze(-1)).backward();
  std::vector<double> want(12, 0.0);
  for (size_t i = 4; i < 10; ++i) want[i] = 1.0;
  REQUIRE(values(y.grad()) == want);
}
