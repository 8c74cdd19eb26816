// Engine-level tests of the nn ops (engine/ops.h: softmax, log_softmax, layer_norm, rms_norm, cross_entropy,
// embedding, dropout): forward against naive float64 references written here, gradients against central finite
// differences, awkward sizes, and the error messages for bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/mixgrad.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using testing::all_close;
using testing::bit_equal;
using testing::Compare;
using testing::gradcheck;
using testing::rand_f64;
using testing::tolerance;

std::vector<double> as_doubles(const Tensor& t) { return t.detach().to(DType::f64).to_vector<double>(); }

Tensor f64_tensor(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s); }

// Random tensor in [lo, hi) of the given dtype (no grad).
Tensor uniform(const Shape& s, DType t, double lo = -3.0, double hi = 3.0) {
  NoGradGuard ng;
  Tensor u = rand(s, TensorOptions(t));
  return add_scalar(mul_scalar(u, hi - lo), lo).detach();
}

// ---- naive float64 references -----------------------------------------------------------------------------------

// Softmax (or log-softmax) of a 3-D tensor [a0, a1, a2] over dimension `dim`.
std::vector<double> ref_softmax3(const std::vector<double>& x, const Shape& s, int dim, bool log) {
  std::vector<double> y(x.size());
  const int64_t n[3] = {s[0], s[1], s[2]};
  auto at = [&](int64_t i, int64_t j, int64_t k) { return size_t((i * n[1] + j) * n[2] + k); };
  int64_t idx[3];
  for (idx[0] = 0; idx[0] < n[0]; ++idx[0])
    for (idx[1] = 0; idx[1] < n[1]; ++idx[1])
      for (idx[2] = 0; idx[2] < n[2]; ++idx[2]) {
        if (idx[dim] != 0) continue;  // visit each line along `dim` once, from its first element
        int64_t j[3] = {idx[0], idx[1], idx[2]};
        double mx = -INFINITY;
        for (j[dim] = 0; j[dim] < n[dim]; ++j[dim]) mx = std::max(mx, x[at(j[0], j[1], j[2])]);
        double z = 0;
        for (j[dim] = 0; j[dim] < n[dim]; ++j[dim]) z += std::exp(x[at(j[0], j[1], j[2])] - mx);
        for (j[dim] = 0; j[dim] < n[dim]; ++j[dim]) {
          const double v = x[at(j[0], j[1], j[2])] - mx;
          y[at(j[0], j[1], j[2])] = log ? v - std::log(z) : std::exp(v) / z;
        }
      }
  return y;
}

// Softmax over the last dimension of a rows × cols matrix.
std::vector<double> ref_softmax_rows(const std::vector<double>& x, int64_t rows, int64_t cols, bool log) {
  return ref_softmax3(x, {1, rows, cols}, 2, log);
}

// Layer norm over the trailing `cols` elements of each row (biased variance, like PyTorch).
std::vector<double> ref_layer_norm(const std::vector<double>& x, int64_t cols, const std::vector<double>* w,
                                   const std::vector<double>* b, double eps) {
  std::vector<double> y(x.size());
  const int64_t rows = int64_t(x.size()) / cols;
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0, v = 0;
    for (int64_t c = 0; c < cols; ++c) m += x[size_t(r * cols + c)];
    m /= double(cols);
    for (int64_t c = 0; c < cols; ++c) v += (x[size_t(r * cols + c)] - m) * (x[size_t(r * cols + c)] - m);
    v /= double(cols);
    for (int64_t c = 0; c < cols; ++c) {
      double o = (x[size_t(r * cols + c)] - m) / std::sqrt(v + eps);
      if (w) o *= (*w)[size_t(c)];
      if (b) o += (*b)[size_t(c)];
      y[size_t(r * cols + c)] = o;
    }
  }
  return y;
}

std::vector<double> ref_rms_norm(const std::vector<double>& x, int64_t cols, const std::vector<double>* w, double eps) {
  std::vector<double> y(x.size());
  const int64_t rows = int64_t(x.size()) / cols;
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0;
    for (int64_t c = 0; c < cols; ++c) ms += x[size_t(r * cols + c)] * x[size_t(r * cols + c)];
    ms /= double(cols);
    for (int64_t c = 0; c < cols; ++c)
      y[size_t(r * cols + c)] = x[size_t(r * cols + c)] / std::sqrt(ms + eps) * (w ? (*w)[size_t(c)] : 1.0);
  }
  return y;
}

// PyTorch's cross-entropy with label smoothing eps, per row:
//   loss = -(1 - eps) * log p[target] - (eps / C) * sum_c log p[c], 0 for ignored rows.
std::vector<double> ref_cross_entropy_rows(const std::vector<double>& logits, const std::vector<int64_t>& target,
                                           int64_t classes, int64_t ignore_index, double eps) {
  const int64_t rows = int64_t(target.size());
  const std::vector<double> lp = ref_softmax_rows(logits, rows, classes, true);
  std::vector<double> loss(size_t(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    if (target[size_t(r)] == ignore_index) continue;
    double sum_lp = 0;
    for (int64_t c = 0; c < classes; ++c) sum_lp += lp[size_t(r * classes + c)];
    loss[size_t(r)] = -(1 - eps) * lp[size_t(r * classes + target[size_t(r)])] - eps / double(classes) * sum_lp;
  }
  return loss;
}

// ---- softmax / log_softmax ------------------------------------------------------------------------------------

TEST_CASE("softmax and log_softmax over every dim of a 3-D tensor match the float64 reference", "[nn][softmax]") {
  manual_seed(11);
  const Shape s{3, 4, 5};
  for (bool log : {false, true}) {
    for (int64_t dim : {0, 1, 2, -1, -2, -3}) {
      const int d = int(dim < 0 ? dim + 3 : dim);
      INFO((log ? "log_softmax" : "softmax") << " dim " << dim);
      Tensor x64 = uniform(s, DType::f64, -4, 4);
      const std::vector<double> want = ref_softmax3(as_doubles(x64), s, d, log);
      Tensor y64 = log ? log_softmax(x64, dim) : softmax(x64, dim);
      REQUIRE(y64.shape() == s);
      REQUIRE(y64.dtype() == DType::f64);
      REQUIRE_CLOSE(all_close(y64, f64_tensor(want, s), tolerance(Compare::forward_f64)));

      Tensor x32 = x64.to(DType::f32);
      const std::vector<double> want32 = ref_softmax3(as_doubles(x32), s, d, log);
      Tensor y32 = log ? log_softmax(x32, dim) : softmax(x32, dim);
      REQUIRE(y32.dtype() == DType::f32);
      REQUIRE_CLOSE(all_close(y32, f64_tensor(want32, s), tolerance(Compare::forward_f32)));
    }
  }
}

TEST_CASE("softmax rows sum to one and survive huge logits", "[nn][softmax]") {
  Tensor x = from_vector<double>({1000.0, 1001.0, 1002.0, -1000.0, 0.0, 1000.0}, {2, 3});
  const std::vector<double> y = softmax(x, 1).to_vector<double>();
  const std::vector<double> want = ref_softmax_rows(as_doubles(x), 2, 3, false);
  for (size_t i = 0; i < y.size(); ++i) {
    REQUIRE(std::isfinite(y[i]));
    REQUIRE(y[i] == Approx(want[i]).margin(1e-15));
  }
  const std::vector<double> ly = log_softmax(x, 1).to_vector<double>();
  REQUIRE(ly[2] == Approx(-std::log(1 + std::exp(-1.0) + std::exp(-2.0))).epsilon(1e-12));
  REQUIRE(ly[3] == Approx(-2000.0).epsilon(1e-12));
}

TEST_CASE("softmax and log_softmax on awkward row lengths and a single row", "[nn][softmax]") {
  manual_seed(12);
  for (int64_t cols : {1, 7, 33, 1000, 5000}) {
    for (int64_t rows : {1, 3}) {
      INFO("rows " << rows << " cols " << cols);
      Tensor x = uniform({rows, cols}, DType::f32, -5, 5);
      const std::vector<double> xd = as_doubles(x);
      for (bool log : {false, true}) {
        Tensor y = log ? log_softmax(x, -1) : softmax(x, -1);
        REQUIRE_CLOSE(all_close(y, f64_tensor(ref_softmax_rows(xd, rows, cols, log), {rows, cols}),
                                tolerance(Compare::forward_f32)));
      }
      if (cols == 1) REQUIRE(softmax(x, 1).to_vector<float>() == std::vector<float>(size_t(rows), 1.0f));
    }
  }
}

TEST_CASE("softmax and log_softmax gradients match finite differences on every dim", "[nn][softmax][grad]") {
  manual_seed(13);
  for (bool log : {false, true})
    for (int64_t dim : {0, 1, 2}) {
      INFO((log ? "log_softmax" : "softmax") << " dim " << dim);
      Tensor x = rand_f64({2, 3, 4}, -2, 2);
      REQUIRE_CLOSE(gradcheck([&](const std::vector<Tensor>& in) { return log ? log_softmax(in[0], dim) : softmax(in[0], dim); },
                              {x}));
    }
  // A long single row.
  Tensor x = rand_f64({1, 33}, -2, 2);
  REQUIRE_CLOSE(gradcheck([](const std::vector<Tensor>& in) { return log_softmax(in[0], -1); }, {x}));
}

TEST_CASE("softmax rejects a dimension out of range", "[nn][softmax][errors]") {
  Tensor x = zeros({2, 3, 4});
  REQUIRE_THROWS_AS(softmax(x, 3), Error);
  REQUIRE_THROWS_WITH(softmax(x, 3), Catch::Contains("softmax") && Catch::Contains("dimension 3 out of range"));
  REQUIRE_THROWS_WITH(log_softmax(x, -4), Catch::Contains("log_softmax") && Catch::Contains("-4"));
  REQUIRE_THROWS_WITH(softmax(zeros({3}, DType::i64), 0), Catch::Contains("softmax") && Catch::Contains("int64"));
}

// ---- layer_norm / rms_norm ------------------------------------------------------------------------------------

TEST_CASE("layer_norm matches the float64 reference (1-D and 2-D normalized_shape, affine or not, eps)",
          "[nn][layer_norm]") {
  manual_seed(21);
  struct Case {
    Shape x, ns;
  };
  for (const Case& c : {Case{{4, 7}, {7}}, Case{{2, 3, 5}, {3, 5}}, Case{{1, 33}, {33}}, Case{{3, 1}, {1}}}) {
    const int64_t cols = shape_numel(c.ns);
    for (int affine = 0; affine < 4; ++affine) {
      for (double eps : {1e-5, 0.1}) {
        const bool has_w = affine & 1, has_b = affine & 2;
        INFO("x " << shape_str(c.x) << " ns " << shape_str(c.ns) << " weight " << has_w << " bias " << has_b << " eps "
                  << eps);
        Tensor x = uniform(c.x, DType::f64, -2, 3);
        Tensor w = has_w ? uniform(c.ns, DType::f64, 0.5, 1.5) : Tensor();
        Tensor b = has_b ? uniform(c.ns, DType::f64, -1, 1) : Tensor();
        const std::vector<double> wv = has_w ? as_doubles(w) : std::vector<double>();
        const std::vector<double> bv = has_b ? as_doubles(b) : std::vector<double>();
        const std::vector<double> want =
            ref_layer_norm(as_doubles(x), cols, has_w ? &wv : nullptr, has_b ? &bv : nullptr, eps);
        Tensor y = layer_norm(x, c.ns, w, b, eps);
        REQUIRE(y.shape() == c.x);
        REQUIRE_CLOSE(all_close(y, f64_tensor(want, c.x), tolerance(Compare::forward_f64)));
        // float32 against the reference on the same (rounded) inputs.
        Tensor x32 = x.to(DType::f32);
        Tensor w32 = has_w ? w.to(DType::f32) : Tensor(), b32 = has_b ? b.to(DType::f32) : Tensor();
        const std::vector<double> wv32 = has_w ? as_doubles(w32) : std::vector<double>();
        const std::vector<double> bv32 = has_b ? as_doubles(b32) : std::vector<double>();
        const std::vector<double> want32 =
            ref_layer_norm(as_doubles(x32), cols, has_w ? &wv32 : nullptr, has_b ? &bv32 : nullptr, eps);
        REQUIRE_CLOSE(all_close(layer_norm(x32, c.ns, w32, b32, eps), f64_tensor(want32, c.x),
                                tolerance(Compare::forward_f32)));
      }
    }
  }
}

TEST_CASE("layer_norm and rms_norm on long rows", "[nn][layer_norm]") {
  manual_seed(22);
  for (int64_t cols : {1000, 5000}) {
    INFO("cols " << cols);
    Tensor x = uniform({3, cols}, DType::f32, -2, 4);
    Tensor w = uniform({cols}, DType::f32, 0.5, 1.5);
    const std::vector<double> xd = as_doubles(x), wd = as_doubles(w);
    REQUIRE_CLOSE(all_close(layer_norm(x, {cols}, w, Tensor(), 1e-5), f64_tensor(ref_layer_norm(xd, cols, &wd, nullptr, 1e-5), {3, cols}),
                            tolerance(Compare::forward_f32)));
    REQUIRE_CLOSE(all_close(rms_norm(x, {cols}, w, 1e-6), f64_tensor(ref_rms_norm(xd, cols, &wd, 1e-6), {3, cols}),
                            tolerance(Compare::forward_f32)));
  }
}

TEST_CASE("a constant row layer-normalises to the bias (eps keeps it finite)", "[nn][layer_norm]") {
  Tensor x = full({2, 6}, 3.25, DType::f64);
  Tensor b = from_vector<double>({1, 2, 3, 4, 5, 6}, {6});
  const std::vector<double> y = layer_norm(x, {6}, Tensor(), b).to_vector<double>();
  for (size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == double(i % 6 + 1));
}

TEST_CASE("layer_norm gradients (input, weight, bias) match finite differences", "[nn][layer_norm][grad]") {
  manual_seed(23);
  {
    Tensor x = rand_f64({3, 5}), w = rand_f64({5}, 0.5, 1.5), b = rand_f64({5});
    REQUIRE_CLOSE(gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], {5}, in[1], in[2], 1e-5); },
                            {x, w, b}));
  }
  {
    Tensor x = rand_f64({2, 2, 3}), w = rand_f64({2, 3}, 0.5, 1.5);
    REQUIRE_CLOSE(gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], {2, 3}, in[1], Tensor(), 0.1); },
                            {x, w}));
  }
  {
    Tensor x = rand_f64({4, 7});
    REQUIRE_CLOSE(gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], {7}); }, {x}));
  }
  {
    // Gradient only into the affine parameters (input does not require grad).
    Tensor x = rand_f64({3, 4}, -1, 1, false), w = rand_f64({4}), b = rand_f64({4});
    REQUIRE_CLOSE(gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(x, {4}, in[0], in[1]); }, {w, b}));
  }
  {
    // A weight that does not require grad next to an input and a bias that do.
    Tensor x = rand_f64({3, 4}), w = rand_f64({4}, 0.5, 1.5, false), b = rand_f64({4});
    REQUIRE_CLOSE(gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(in[0], {4}, w, in[1]); }, {x, b}));
    REQUIRE_FALSE(w.grad().defined());
  }
  {
    // Only the bias requires grad.
    Tensor x = rand_f64({3, 4}, -1, 1, false), b = rand_f64({4});
    REQUIRE_CLOSE(gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(x, {4}, Tensor(), in[0]); }, {b}));
  }
}

TEST_CASE("rms_norm matches the reference and finite differences", "[nn][rms_norm]") {
  manual_seed(24);
  for (int64_t cols : {1, 7, 33}) {
    for (bool has_w : {false, true}) {
      INFO("cols " << cols << " weight " << has_w);
      Tensor x = uniform({2, 3, cols}, DType::f64, -2, 2);
      Tensor w = has_w ? uniform({cols}, DType::f64, 0.5, 1.5) : Tensor();
      const std::vector<double> wv = has_w ? as_doubles(w) : std::vector<double>();
      REQUIRE_CLOSE(all_close(rms_norm(x, {cols}, w, 1e-6),
                              f64_tensor(ref_rms_norm(as_doubles(x), cols, has_w ? &wv : nullptr, 1e-6), {2, 3, cols}),
                              tolerance(Compare::forward_f64)));
    }
  }
  Tensor x = uniform({2, 3, 4}, DType::f64);
  REQUIRE_CLOSE(all_close(rms_norm(x, {3, 4}), f64_tensor(ref_rms_norm(as_doubles(x), 12, nullptr, 1e-6), {2, 3, 4}),
                          tolerance(Compare::forward_f64)));
  Tensor xg = rand_f64({3, 6}), wg = rand_f64({6}, 0.5, 1.5);
  REQUIRE_CLOSE(gradcheck([](const std::vector<Tensor>& in) { return rms_norm(in[0], {6}, in[1], 1e-6); }, {xg, wg}));
  Tensor xg2 = rand_f64({2, 2, 3});
  REQUIRE_CLOSE(gradcheck([](const std::vector<Tensor>& in) { return rms_norm(in[0], {2, 3}); }, {xg2}));
}

TEST_CASE("layer_norm and rms_norm reject shapes that do not end in normalized_shape", "[nn][layer_norm][errors]") {
  Tensor x = zeros({32, 65, 128});
  REQUIRE_THROWS_AS(layer_norm(x, {64}), Error);
  REQUIRE_THROWS_WITH(layer_norm(x, {64}), Catch::Contains("layer_norm") && Catch::Contains("[32, 65, 128]") &&
                                               Catch::Contains("[64]"));
  REQUIRE_THROWS_WITH(layer_norm(x, {64, 128}), Catch::Contains("[32, 65, 128]") && Catch::Contains("[64, 128]"));
  REQUIRE_THROWS_WITH(layer_norm(zeros({4}), {2, 4}), Catch::Contains("[4]") && Catch::Contains("[2, 4]"));
  REQUIRE_THROWS_WITH(layer_norm(x, {128}, zeros({64})), Catch::Contains("weight") && Catch::Contains("[64]"));
  REQUIRE_THROWS_WITH(layer_norm(x, {128}, Tensor(), zeros({127})), Catch::Contains("bias") && Catch::Contains("[127]"));
  REQUIRE_THROWS_WITH(layer_norm(x, {128}, ones({128}, DType::f64)), Catch::Contains("layer_norm"));
  REQUIRE_THROWS_WITH(layer_norm(x, {128}, Tensor(), Tensor(), -1.0), Catch::Contains("eps"));
  REQUIRE_THROWS_WITH(rms_norm(x, {64}), Catch::Contains("rms_norm") && Catch::Contains("[32, 65, 128]") &&
                                             Catch::Contains("[64]"));
}

// ---- cross_entropy --------------------------------------------------------------------------------------------

TEST_CASE("cross_entropy reductions, ignore_index and label smoothing match PyTorch's definition",
          "[nn][cross_entropy]") {
  manual_seed(31);
  const int64_t rows = 6, classes = 5, ignore = -100;
  Tensor logits = uniform({rows, classes}, DType::f64, -3, 3);
  const std::vector<int64_t> tv{0, 4, ignore, 2, 2, ignore};
  Tensor target = from_vector<int64_t>(tv, {rows});
  for (double eps : {0.0, 0.1}) {
    INFO("label_smoothing " << eps);
    const std::vector<double> per_row = ref_cross_entropy_rows(as_doubles(logits), tv, classes, ignore, eps);
    double total = 0;
    for (double v : per_row) total += v;
    Tensor none = cross_entropy(logits, target, ignore, eps, "none");
    REQUIRE(none.shape() == Shape{rows});
    REQUIRE_CLOSE(all_close(none, f64_tensor(per_row, {rows}), tolerance(Compare::forward_f64)));
    REQUIRE(none.to_vector<double>()[2] == 0.0);
    Tensor s = cross_entropy(logits, target, ignore, eps, "sum");
    REQUIRE(s.dim() == 0);
    REQUIRE(s.item() == Approx(total).epsilon(1e-12));
    Tensor m = cross_entropy(logits, target, ignore, eps, "mean");
    REQUIRE(m.dim() == 0);
    REQUIRE(m.item() == Approx(total / 4.0).epsilon(1e-12));  // 4 non-ignored rows
    // float32 agrees with the float64 reference too.
    REQUIRE(cross_entropy(logits.to(DType::f32), target, ignore, eps).item() == Approx(total / 4.0).epsilon(1e-5));
  }
  // A custom ignore_index that is a valid class.
  const std::vector<double> per_row = ref_cross_entropy_rows(as_doubles(logits), {0, 4, 1, 2, 2, 1}, classes, 2, 0.0);
  Tensor t2 = from_vector<int64_t>({0, 4, 1, 2, 2, 1}, {rows});
  REQUIRE_CLOSE(all_close(cross_entropy(logits, t2, 2, 0.0, "none"), f64_tensor(per_row, {rows}),
                          tolerance(Compare::forward_f64)));
}

TEST_CASE("cross_entropy label smoothing 0.1 equals the hand formula on a tiny example", "[nn][cross_entropy]") {
  // logits [0, 1, 2], target 2, eps 0.1: loss = lse - 0.9 * 2 - 0.1 * mean(0, 1, 2)
  Tensor logits = from_vector<double>({0.0, 1.0, 2.0}, {1, 3});
  Tensor target = from_vector<int64_t>({2}, {1});
  const double lse = std::log(1 + std::exp(1.0) + std::exp(2.0));
  const double want = 0.9 * (lse - 2.0) + 0.1 * (lse - 1.0);
  REQUIRE(cross_entropy(logits, target, -100, 0.1).item() == Approx(want).epsilon(1e-14));
  REQUIRE(cross_entropy(logits, target, -100, 0.0).item() == Approx(lse - 2.0).epsilon(1e-14));
}

TEST_CASE("cross_entropy on 1-D logits", "[nn][cross_entropy]") {
  Tensor logits = from_vector<double>({0.5, -1.0, 2.0, 0.0}, {4});
  Tensor target = from_vector<int64_t>({1}, {});
  const std::vector<double> want = ref_cross_entropy_rows(as_doubles(logits), {1}, 4, -100, 0.1);
  Tensor m = cross_entropy(logits, target, -100, 0.1);
  REQUIRE(m.dim() == 0);
  REQUIRE(m.item() == Approx(want[0]).epsilon(1e-13));
  Tensor n = cross_entropy(logits, target, -100, 0.1, "none");
  REQUIRE(n.dim() == 0);
  REQUIRE(n.item() == Approx(want[0]).epsilon(1e-13));
  Tensor x = rand_f64({4});
  REQUIRE_CLOSE(gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], target, -100, 0.1); }, {x}));
  // Gradient shape is the 1-D logits' shape.
  Tensor y = rand_f64({4});
  cross_entropy(y, target).backward();
  REQUIRE(y.grad().shape() == Shape{4});
}

TEST_CASE("cross_entropy gradients match finite differences (all reductions, smoothing, ignored rows)",
          "[nn][cross_entropy][grad]") {
  manual_seed(32);
  Tensor target = from_vector<int64_t>({3, -100, 0, 6, 6}, {5});
  for (const char* red : {"mean", "sum", "none"})
    for (double eps : {0.0, 0.1}) {
      INFO("reduction " << red << " eps " << eps);
      Tensor x = rand_f64({5, 7}, -2, 2);
      REQUIRE_CLOSE(gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], target, -100, eps, red); },
                              {x}));
      // Ignored rows get exactly zero gradient.
      cross_entropy(x, target, -100, eps, red).backward(red == std::string("none") ? ones({5}, DType::f64) : Tensor());
      const std::vector<double> g = x.grad().to_vector<double>();
      for (int c = 0; c < 7; ++c) REQUIRE(g[size_t(7 + c)] == 0.0);
      x.zero_grad();
    }
}

TEST_CASE("cross_entropy with every target ignored: mean is NaN (PyTorch), sum is 0", "[nn][cross_entropy]") {
  Tensor logits = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor target = from_vector<int64_t>({-100, -100}, {2});
  REQUIRE(std::isnan(cross_entropy(logits, target).item()));
  REQUIRE(cross_entropy(logits, target, -100, 0.0, "sum").item() == 0.0);
  REQUIRE(cross_entropy(logits, target, -100, 0.1, "none").to_vector<double>() == std::vector<double>{0.0, 0.0});
}

TEST_CASE("cross_entropy on a single class column and long rows", "[nn][cross_entropy]") {
  manual_seed(33);
  Tensor one = uniform({3, 1}, DType::f64);
  REQUIRE(cross_entropy(one, zeros({3}, DType::i64)).item() == Approx(0.0).margin(1e-15));
  for (int64_t classes : {1000, 5000}) {
    Tensor logits = uniform({2, classes}, DType::f32, -4, 4);
    std::vector<int64_t> tv{classes - 1, 17};
    const std::vector<double> want = ref_cross_entropy_rows(as_doubles(logits), tv, classes, -100, 0.1);
    REQUIRE_CLOSE(all_close(cross_entropy(logits, from_vector<int64_t>(tv, {2}), -100, 0.1, "none"), f64_tensor(want, {2}),
                            tolerance(Compare::forward_f32)));
  }
}

TEST_CASE("cross_entropy rejects bad targets with clear messages", "[nn][cross_entropy][errors]") {
  Tensor logits = zeros({4, 5});
  REQUIRE_THROWS_AS(cross_entropy(logits, from_vector<int64_t>({0, 1, 5, 2}, {4})), Error);
  REQUIRE_THROWS_WITH(cross_entropy(logits, from_vector<int64_t>({0, 1, 5, 2}, {4})),
                      Catch::Contains("cross_entropy") && Catch::Contains("[0, 5)"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, from_vector<int64_t>({0, -1, 3, 2}, {4})), Catch::Contains("[0, 5)"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, from_vector<int32_t>({0, 1, 2, 3}, {4})),
                      Catch::Contains("cross_entropy") && Catch::Contains("int64") && Catch::Contains("int32"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, zeros({4}, DType::f32)), Catch::Contains("int64"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, zeros({3}, DType::i64)),
                      Catch::Contains("cross_entropy") && Catch::Contains("[3]") && Catch::Contains("[4, 5]"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, zeros({4, 1}, DType::i64)), Catch::Contains("[4, 1]"));
  REQUIRE_THROWS_WITH(cross_entropy(zeros({2, 3, 4}), zeros({2}, DType::i64)), Catch::Contains("[2, 3, 4]"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, zeros({4}, DType::i64), -100, 0.0, "avg"), Catch::Contains("reduction"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, zeros({4}, DType::i64), -100, 1.5), Catch::Contains("label_smoothing"));
}

// ---- embedding ------------------------------------------------------------------------------------------------

TEST_CASE("embedding gathers rows for indices of any shape", "[nn][embedding]") {
  manual_seed(41);
  for (int64_t dim : {1, 7, 33}) {
    Tensor w = uniform({6, dim}, DType::f32);
    Tensor idx = from_vector<int64_t>({5, 0, 0, 3, 2, 5}, {2, 3});
    Tensor y = embedding(w, idx);
    REQUIRE(y.shape() == Shape{2, 3, dim});
    const std::vector<float> wv = w.to_vector<float>(), yv = y.to_vector<float>();
    const std::vector<int64_t> iv = idx.to_vector<int64_t>();
    for (size_t p = 0; p < iv.size(); ++p)
      for (int64_t d = 0; d < dim; ++d) REQUIRE(yv[p * size_t(dim) + size_t(d)] == wv[size_t(iv[p] * dim + d)]);
  }
  // Scalar index -> [dim].
  Tensor w = arange(0, 12, 1).reshape({4, 3});
  REQUIRE(embedding(w, from_vector<int64_t>({2}, {})).to_vector<float>() == std::vector<float>{6, 7, 8});
}

TEST_CASE("embedding gradient accumulates repeated indices deterministically", "[nn][embedding][grad]") {
  manual_seed(42);
  Tensor idx = from_vector<int64_t>({0, 2, 0, 0, 1, 2, 0}, {7});
  Tensor dy = uniform({7, 5}, DType::f32);
  auto run = [&] {
    Tensor w = uniform({4, 5}, DType::f32).requires_grad_();
    embedding(w, idx).backward(dy);
    return w.grad();
  };
  Tensor g1 = run(), g2 = run();
  REQUIRE_CLOSE(bit_equal(g1, g2));
  // Reference: sums in increasing position order (float32, same order as documented).
  const std::vector<float> dyv = dy.to_vector<float>(), gv = g1.to_vector<float>();
  const std::vector<int64_t> iv = idx.to_vector<int64_t>();
  std::vector<float> want(20, 0.0f);
  for (size_t p = 0; p < iv.size(); ++p)
    for (size_t d = 0; d < 5; ++d) want[size_t(iv[p]) * 5 + d] += dyv[p * 5 + d];
  REQUIRE(gv == want);
  for (size_t d = 0; d < 5; ++d) REQUIRE(gv[15 + d] == 0.0f);  // row 3 unused

  Tensor w64 = rand_f64({4, 3});
  Tensor idx2 = from_vector<int64_t>({3, 3, 1, 0, 3, 1}, {2, 3});
  REQUIRE_CLOSE(gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0], idx2); }, {w64}));
}

TEST_CASE("embedding rejects out-of-range and non-int64 indices", "[nn][embedding][errors]") {
  Tensor w = zeros({5, 3});
  REQUIRE_THROWS_AS(embedding(w, from_vector<int64_t>({0, 5}, {2})), Error);
  REQUIRE_THROWS_WITH(embedding(w, from_vector<int64_t>({0, 5}, {2})),
                      Catch::Contains("embedding") && Catch::Contains("[0, 5)"));
  REQUIRE_THROWS_WITH(embedding(w, from_vector<int64_t>({-1}, {1})), Catch::Contains("[0, 5)"));
  REQUIRE_THROWS_WITH(embedding(w, from_vector<int32_t>({0}, {1})), Catch::Contains("int64"));
  REQUIRE_THROWS_WITH(embedding(zeros({5}), from_vector<int64_t>({0}, {1})), Catch::Contains("[5]"));
}

// ---- dropout --------------------------------------------------------------------------------------------------

TEST_CASE("dropout in eval mode and with p = 0 is the identity", "[nn][dropout]") {
  manual_seed(51);
  Tensor x = uniform({4, 9}, DType::f32);
  Tensor e = dropout(x, 0.5, false);
  REQUIRE_CLOSE(bit_equal(e, x));
  Tensor z = dropout(x, 0.0, true);
  REQUIRE_CLOSE(bit_equal(z, x));
  // Eval mode does not consume random numbers.
  const GeneratorState before = generator_state();
  dropout(x, 0.3, false);
  REQUIRE(generator_state().offset == before.offset);
}

TEST_CASE("dropout in training keeps about 1-p of the elements, scaled by 1/(1-p)", "[nn][dropout]") {
  manual_seed(52);
  for (double p : {0.1, 0.5, 0.9}) {
    INFO("p " << p);
    const int64_t n = 20000;
    Tensor x = ones({n}, DType::f64);
    const std::vector<double> y = dropout(x, p, true).to_vector<double>();
    int64_t kept = 0;
    for (double v : y) {
      if (v != 0.0) {
        REQUIRE(v == Approx(1.0 / (1.0 - p)).epsilon(1e-6));
        ++kept;
      }
    }
    // Binomial standard deviation is at most 0.0036 here; 0.02 is more than 5 of them.
    REQUIRE(double(kept) / double(n) == Approx(1.0 - p).margin(0.02));
  }
  REQUIRE(dropout(ones({100}), 1.0, true).to_vector<float>() == std::vector<float>(100, 0.0f));
  REQUIRE_THROWS_WITH(dropout(ones({3}), 1.5, true), Catch::Contains("dropout") && Catch::Contains("1.5"));
  REQUIRE_THROWS_WITH(dropout(ones({3}), -0.1, true), Catch::Contains("dropout"));
}

TEST_CASE("dropout backward uses the forward mask; same seed gives the same mask", "[nn][dropout][grad]") {
  manual_seed(53);
  const double p = 0.4;
  Tensor x = uniform({7, 33}, DType::f64, 0.5, 2.0).requires_grad_();  // no zeros: kept <=> y != 0
  Tensor dy = uniform({7, 33}, DType::f64);
  Tensor y = dropout(x, p, true);
  y.backward(dy);
  const std::vector<double> xv = as_doubles(x), yv = as_doubles(y), dyv = as_doubles(dy), g = as_doubles(x.grad());
  int64_t kept = 0;
  for (size_t i = 0; i < yv.size(); ++i) {
    if (yv[i] != 0.0) {
      ++kept;
      // The kernel takes p as float32 (one threshold for CPU and CUDA), so the float64 scale is 1/(1 - float(p)).
      REQUIRE(yv[i] == Approx(xv[i] / (1 - p)).epsilon(1e-7));
      REQUIRE(g[i] == Approx(dyv[i] / (1 - p)).epsilon(1e-7));
      REQUIRE(g[i] / dyv[i] == Approx(yv[i] / xv[i]).epsilon(1e-14));  // forward and backward scale agree
    } else {
      REQUIRE(g[i] == 0.0);
    }
  }
  REQUIRE(kept > 0);
  REQUIRE(kept < int64_t(yv.size()));

  // Same seed (and generator position) -> same mask; a different seed -> a different one.
  Tensor a = ones({1000});
  manual_seed(99);
  Tensor m1 = dropout(a, 0.5, true);
  manual_seed(99);
  Tensor m2 = dropout(a, 0.5, true);
  REQUIRE_CLOSE(bit_equal(m1, m2));
  Tensor m3 = dropout(a, 0.5, true);  // next stream: differs from the first
  REQUIRE_FALSE(bit_equal(m3, m1).ok);
  manual_seed(100);
  REQUIRE_FALSE(bit_equal(dropout(a, 0.5, true), m1).ok);
  // The float32 and float64 masks agree (same Philox stream).
  manual_seed(99);
  Tensor m64 = dropout(ones({1000}, DType::f64), 0.5, true);
  REQUIRE_CLOSE(all_close(m64, m1, tolerance(Compare::forward_f32)));
}

}  // namespace

TEST_CASE("deferred device checks: a CPU flag is checked at once, and nothing is left pending on the CPU",
          "[nn][deferred]") {
  REQUIRE_NOTHROW(detail::defer_check(zeros({1}, TensorOptions(DType::i32)), "never raised"));
  Tensor raised = zeros({1}, TensorOptions(DType::i32));
  *raised.data<int32_t>() = 1;
  REQUIRE_THROWS_WITH(detail::defer_check(raised, "op: bad input"), Catch::Contains("op: bad input"));
  REQUIRE_THROWS_WITH(detail::defer_check(zeros({2}, TensorOptions(DType::i32)), "x"),
                      Catch::Contains("int32 flag of one element"));
  REQUIRE_NOTHROW(detail::run_deferred_checks());
  REQUIRE_NOTHROW(synchronize_and_check(kCPU));
}
