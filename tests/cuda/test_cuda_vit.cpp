// CPU vs CUDA for scaled_dot_product_attention forward/backward (masks, key lengths, causal, dropout). Every mixer's
// ViT on the device: tests/cuda/test_cuda_mixers.cpp.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/attention.h"
#include "engine/mixgrad.h"
#include "models/vit.h"
#include "tests/common/check.h"
#include "tests/common/vit_helpers.h"

using namespace mixgrad;
using mixgrad::testing::Compare;
using mixgrad::testing::tolerance;

namespace {

const Device kCuda{DeviceType::cuda, 0};

Tensor leaf(const Tensor& t) {
  Tensor l = t.detach();
  l.requires_grad_();
  return l;
}

using testing::u8_mask;

}  // namespace

TEST_CASE("cuda: sdpa forward and backward match the CPU", "[cuda][vit][attention]") {
  struct Case {
    int64_t b, h, t, tk, d;
    bool mask, causal;
    double dropout;
  };
  const std::vector<Case> cases = {{2, 3, 5, 7, 4, false, false, 0.0},
                                   {1, 2, 33, 17, 16, true, false, 0.0},
                                   {2, 2, 9, 9, 8, true, true, 0.0},
                                   {2, 1, 7, 4, 5, false, true, 0.0},
                                   {2, 4, 16, 16, 32, true, false, 0.3}};
  for (const Case& c : cases) {
    INFO("B" << c.b << " H" << c.h << " T" << c.t << " Tk" << c.tk << " d" << c.d << " mask " << c.mask << " causal "
             << c.causal << " dropout " << c.dropout);
    manual_seed(40);
    Tensor q = leaf(randn({c.b, c.h, c.t, c.d})), k = leaf(randn({c.b, c.h, c.tk, c.d})),
           v = leaf(randn({c.b, c.h, c.tk, c.d}));
    Tensor gout = randn({c.b, c.h, c.t, c.d});
    Tensor mask, lengths;
    if (c.mask) {
      std::vector<int> m(size_t(c.b * c.tk), 1);
      for (int64_t j = 0; j < c.tk; j += 3) m[size_t(j)] = 0;  // batch 0: some keys padded
      for (int64_t j = 0; j < c.tk; ++j) m[size_t((c.b - 1) * c.tk + j)] = c.b > 1 ? 0 : m[size_t(j)];  // last: all
      mask = u8_mask(m, {c.b, 1, 1, c.tk});
      std::vector<int32_t> n(size_t(c.b), int32_t(c.tk));
      n[0] = int32_t(c.tk / 2);
      if (c.b > 1) n[size_t(c.b - 1)] = 0;
      lengths = from_vector<int32_t>(n, {c.b}, TensorOptions(DType::i32));
    }
    Tensor qc = leaf(q.to(kCuda)), kc = leaf(k.to(kCuda)), vc = leaf(v.to(kCuda));
    manual_seed(77);
    Tensor out = scaled_dot_product_attention(q, k, v, mask, c.causal, c.dropout);
    sum(mul(out, gout)).backward();
    manual_seed(77);
    Tensor outc =
        scaled_dot_product_attention(qc, kc, vc, mask.defined() ? mask.to(kCuda) : Tensor(), c.causal, c.dropout);
    sum(mul(outc, gout.to(kCuda))).backward();
    REQUIRE(outc.device() == kCuda);
    REQUIRE_CLOSE(testing::all_close(outc, out, tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(testing::all_close(qc.grad(), q.grad(), tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(testing::all_close(kc.grad(), k.grad(), tolerance(Compare::cpu_vs_cuda)));
    REQUIRE_CLOSE(testing::all_close(vc.grad(), v.grad(), tolerance(Compare::cpu_vs_cuda)));
    if (!lengths.defined()) continue;
    // Key lengths on the device (the mixers' form), fused and composite, against the CPU.
    for (const AttentionBackend backend : {AttentionBackend::fused, AttentionBackend::composite}) {
      INFO("key lengths, backend " << attention_backend_name(backend));
      const AttentionBackendGuard guard(backend);
      manual_seed(78);
      const Tensor want = scaled_dot_product_attention(q.detach(), k.detach(), v.detach(), KeyPadding{lengths},
                                                       c.causal, c.dropout);
      manual_seed(78);
      const Tensor got = scaled_dot_product_attention(qc.detach(), kc.detach(), vc.detach(),
                                                      KeyPadding{lengths.to(kCuda)}, c.causal, c.dropout);
      if (c.dropout == 0.0) REQUIRE_CLOSE(testing::all_close(got, want, tolerance(Compare::cpu_vs_cuda)));
      else REQUIRE(got.shape() == want.shape());
    }
  }
}
