// Key padding as per-sample lengths (engine/sequence.h): sequence masks, shifted lengths, masked mean and zeroed
// padding against loops and finite differences; attention and packed attention with KeyPadding against the same
// calls with the equivalent prefix mask, on the fused and the composite path; bad lengths.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/attention.h"
#include "engine/mixgrad.h"
#include "engine/sequence.h"
#include "tests/common/check.h"

using namespace mixgrad;
using Catch::Contains;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

Tensor lengths_of(const std::vector<int32_t>& n) { return from_vector<int32_t>(n, {int64_t(n.size())}); }

// The prefix key-padding mask [B, 1, 1, Tk] of the lengths.
Tensor prefix_mask(const std::vector<int32_t>& n, int64_t tk) {
  Tensor m = zeros({int64_t(n.size()), 1, 1, tk}, TensorOptions(DType::u8));
  for (size_t b = 0; b < n.size(); ++b)
    for (int64_t j = 0; j < n[b] && j < tk; ++j) m.data<uint8_t>()[int64_t(b) * tk + j] = 1;
  return m;
}

Tensor leaf(const Tensor& t) {
  Tensor l = t.detach().clone();
  l.requires_grad_();
  return l;
}

}  // namespace

TEST_CASE("sequence_mask and add_to_lengths against loops", "[sequence]") {
  const std::vector<int32_t> n = {0, 3, 5, 7};
  for (const DType dt : {DType::u8, DType::f32, DType::f64}) {
    INFO("dtype " << dtype_name(dt));
    const Tensor m = sequence_mask(lengths_of(n), 5, dt);
    REQUIRE(m.shape() == Shape({4, 5}));
    REQUIRE(m.dtype() == dt);
    const std::vector<double> v = m.to(DType::f64).to_vector<double>();
    for (int64_t b = 0; b < 4; ++b)
      for (int64_t j = 0; j < 5; ++j) CHECK(v[size_t(b * 5 + j)] == (j < n[size_t(b)] ? 1.0 : 0.0));
  }
  CHECK(sequence_mask(lengths_of({2}), 0).shape() == Shape({1, 0}));
  CHECK(add_to_lengths(lengths_of(n), 1).to_vector<int32_t>() == std::vector<int32_t>{1, 4, 6, 8});
  CHECK(add_to_lengths(lengths_of(n), -1).to_vector<int32_t>() == std::vector<int32_t>{-1, 2, 4, 6});
  CHECK_THROWS_WITH(sequence_mask(from_vector<int64_t>({1}, {1}), 3), Contains("expected int32 lengths [B]"));
  CHECK_THROWS_WITH(sequence_mask(lengths_of({1}), -1), Contains("max_len = -1"));
  CHECK_THROWS_WITH(sequence_mask(lengths_of({1}), 3, DType::i64), Contains("dtype int64"));
  CHECK_THROWS_WITH(add_to_lengths(from_vector<float>({1.f}, {1}), 1), Contains("expected int32 lengths"));
}

TEST_CASE("masked_mean and zero_padding: loops, zero-length samples, finite differences", "[sequence]") {
  const std::vector<int32_t> n = {4, 2, 0};
  const Tensor len = lengths_of(n);
  const Tensor x = testing::rand_f64({3, 4, 5});
  const Tensor y = masked_mean(x, len);
  REQUIRE(y.shape() == Shape({3, 5}));
  const std::vector<double> xv = x.detach().to_vector<double>(), yv = y.detach().to_vector<double>();
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t c = 0; c < 5; ++c) {
      double s = 0;
      for (int64_t j = 0; j < n[size_t(b)]; ++j) s += xv[size_t((b * 4 + j) * 5 + c)];
      const double want = n[size_t(b)] > 0 ? s / n[size_t(b)] : 0.0;
      CHECK(yv[size_t(b * 5 + c)] == Approx(want).margin(1e-14));
    }
  const std::vector<double> z = zero_padding(x, len).detach().to_vector<double>();
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t j = 0; j < 4; ++j)
      for (int64_t c = 0; c < 5; ++c) {
        const size_t i = size_t((b * 4 + j) * 5 + c);
        CHECK(z[i] == (j < n[size_t(b)] ? xv[i] : 0.0));
      }
  REQUIRE_CLOSE(testing::gradcheck([&](const std::vector<Tensor>& in) { return masked_mean(in[0], len); }, {x}));
  REQUIRE_CLOSE(testing::gradcheck([&](const std::vector<Tensor>& in) { return zero_padding(in[0], len); }, {x}));
  CHECK_THROWS_WITH(masked_mean(x, lengths_of({4, 2})), Contains("expected int32 [3]"));
  CHECK_THROWS_WITH(masked_mean(x, lengths_of({4, 5, 0})), Contains("lengths[1] = 5 is outside [0, 4]"));
  CHECK_THROWS_WITH(masked_mean(x.reshape({3, 20}), len), Contains("expected x [B, N, D]"));
}

TEST_CASE("attention with KeyPadding equals the prefix-mask call, fused and composite, values and gradients",
          "[sequence][attention]") {
  struct Case {
    int64_t b, h, t, tk, d;
    bool causal;
    std::vector<int32_t> lengths;
  };
  const std::vector<Case> cases = {
      {3, 2, 6, 6, 4, false, {6, 3, 1}}, {2, 1, 5, 9, 8, true, {9, 4}}, {2, 2, 7, 7, 5, false, {0, 7}}};
  for (const Case& c : cases)
    for (const AttentionBackend backend : {AttentionBackend::fused, AttentionBackend::composite})
      for (const DType dt : {DType::f32, DType::f64}) {
        INFO("B" << c.b << " T" << c.t << " Tk" << c.tk << " causal " << c.causal << " backend "
                 << attention_backend_name(backend) << " " << dtype_name(dt));
        manual_seed(90);
        const Tensor q0 = randn({c.b, c.h, c.t, c.d}, TensorOptions(dt)),
                     k0 = randn({c.b, c.h, c.tk, c.d}, TensorOptions(dt)),
                     v0 = randn({c.b, c.h, c.tk, c.d}, TensorOptions(dt)),
                     g = randn({c.b, c.h, c.t, c.d}, TensorOptions(dt));
        Tensor q1 = leaf(q0), k1 = leaf(k0), v1 = leaf(v0), q2 = leaf(q0), k2 = leaf(k0), v2 = leaf(v0);
        const Tensor a =
            scaled_dot_product_attention(q1, k1, v1, prefix_mask(c.lengths, c.tk), c.causal, 0.0, -1.0, backend);
        sum(mul(a, g)).backward();
        const AttentionBackendGuard guard(backend);
        const Tensor l = scaled_dot_product_attention(q2, k2, v2, KeyPadding{lengths_of(c.lengths)}, c.causal);
        sum(mul(l, g)).backward();
        REQUIRE_CLOSE(testing::bit_equal(l, a));
        REQUIRE_CLOSE(testing::bit_equal(q2.grad(), q1.grad()));
        REQUIRE_CLOSE(testing::bit_equal(k2.grad(), k1.grad()));
        REQUIRE_CLOSE(testing::bit_equal(v2.grad(), v1.grad()));
      }
}

TEST_CASE("packed_qkv_attention with KeyPadding equals the prefix-mask call", "[sequence][attention]") {
  for (const AttentionBackend backend : {AttentionBackend::automatic, AttentionBackend::composite}) {
    INFO("backend " << attention_backend_name(backend));
    const AttentionBackendGuard guard(backend);
    manual_seed(91);
    const Tensor qkv0 = randn({3, 6, 3 * 2 * 4});
    const std::vector<int32_t> n = {6, 2, 5};
    Tensor a = leaf(qkv0), b = leaf(qkv0);
    const Tensor g = randn({3, 6, 8});
    sum(mul(packed_qkv_attention(a, 2, prefix_mask(n, 6)), g)).backward();
    const Tensor y = packed_qkv_attention(b, 2, KeyPadding{lengths_of(n)});
    sum(mul(y, g)).backward();
    REQUIRE_CLOSE(testing::bit_equal(y, packed_qkv_attention(qkv0, 2, prefix_mask(n, 6))));
    REQUIRE_CLOSE(testing::bit_equal(b.grad(), a.grad()));
  }
}

TEST_CASE("attention rejects bad key lengths with clear errors", "[sequence][attention][errors]") {
  const Tensor q = randn({2, 1, 4, 8}), k = randn({2, 1, 5, 8});
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, k, KeyPadding{lengths_of({5, 6})}),
                    Contains("lengths[1] = 6 is outside [0, 5]"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, k, KeyPadding{lengths_of({5, -1})}),
                    Contains("lengths[1] = -1"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, k, KeyPadding{lengths_of({5})}), Contains("expected int32 [2]"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, k, KeyPadding{from_vector<int64_t>({5, 5}, {2})}),
                    Contains("expected int32 [2]"));
  CHECK_THROWS_WITH(packed_qkv_attention(randn({2, 4, 24}), 1, KeyPadding{lengths_of({4, 5})}),
                    Contains("lengths[1] = 5 is outside [0, 4]"));
  // Undefined lengths: no padding at all.
  REQUIRE_CLOSE(
      testing::bit_equal(scaled_dot_product_attention(q, k, k, KeyPadding{}), scaled_dot_product_attention(q, k, k)));
}
