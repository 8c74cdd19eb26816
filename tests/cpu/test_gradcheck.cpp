// The public gradient check (engine/gradcheck.h) on ops written with the custom-op API (engine/autograd.h), as a
// user outside the tree writes them: a correct backward passes, a wrong one is caught and the report names the input
// and the worst element, bad inputs are refused.
#include <catch2/catch.hpp>
#include <vector>

#include "engine/gradcheck.h"
#include "engine/mixgrad.h"

using namespace mixgrad;
using Catch::Contains;

namespace {

// y = x² · w (w broadcast over rows), with a backward that is right, or wrong in dw by a factor `dw_scale`.
Tensor square_scale(const Tensor& x, const Tensor& w, double dw_scale) {
  Tensor y;
  {
    NoGradGuard ng;
    y = mul(mul(x, x), w);
  }
  if (autograd::needs_grad({x, w}))
    autograd::record("square_scale", {x, w}, {y},
                     [x = x.detach(), w = w.detach(), dw_scale](const std::vector<Tensor>& dy) -> std::vector<Tensor> {
                       const Tensor dx = mul(mul_scalar(mul(x, w), 2.0), dy[0]);
                       const Tensor dw = mul_scalar(sum(mul(mul(x, x), dy[0]), {0}), dw_scale);
                       return {dx, dw};
                     });
  return y;
}

}  // namespace

TEST_CASE("gradcheck: a custom op's correct backward passes, a wrong one is caught", "[gradcheck]") {
  const Tensor x = rand_f64({4, 3}), w = rand_f64({3});
  const CloseResult good =
      gradcheck([](const std::vector<Tensor>& in) { return square_scale(in[0], in[1], 1.0); }, {x, w});
  INFO(good.message);
  CHECK(good.ok);
  CHECK(good.message == "gradients match finite differences");
  CHECK(!x.grad().defined());  // gradcheck leaves no gradients behind
  CHECK(autograd::tape_size() == 0);

  const CloseResult bad =
      gradcheck([](const std::vector<Tensor>& in) { return square_scale(in[0], in[1], 1.01); }, {x, w});
  CHECK(!bad.ok);
  CHECK_THAT(bad.message, Contains("input 1 (shape [3])") && Contains("worst at flat index"));
  CHECK_THAT(bad.message, !Contains("input 0"));

  // Inputs that do not require grad are passed through and not checked.
  const Tensor fixed = rand_f64({3}, -1, 1, false);
  CHECK(gradcheck([](const std::vector<Tensor>& in) { return square_scale(in[0], in[1], 2.0); }, {x, fixed}).ok);
}

TEST_CASE("gradcheck: inputs that require grad must be float64 CPU tensors", "[gradcheck]") {
  Tensor x = randn({2, 2});
  x.requires_grad_();
  const CloseResult r = gradcheck([](const std::vector<Tensor>& in) { return mul(in[0], in[0]); }, {x});
  CHECK(!r.ok);
  CHECK_THAT(r.message, Contains("input 0 is float32 on cpu") && Contains("must be float64 CPU tensors"));
}

TEST_CASE("all_close and bit_equal name the worst or first differing element", "[gradcheck]") {
  const Tensor a = from_vector<double>({1, 2, 3, 4}, {2, 2});
  const Tensor b = from_vector<double>({1, 2, 3.5, 4}, {2, 2});
  const CloseResult close = all_close(a, b, {1e-6, 1e-6});
  CHECK(!close.ok);
  CHECK_THAT(close.message, Contains("1 of 4 elements") && Contains("flat index 2 [1, 0]"));
  CHECK(all_close(a, a.clone(), {0, 0}).ok);
  CHECK_THAT(all_close(a, from_vector<double>({1, 2}, {2}), {1, 1}).message, Contains("shape mismatch"));
  const CloseResult bits = bit_equal(a, b);
  CHECK(!bits.ok);
  CHECK_THAT(bits.message, Contains("first at 2 [1, 0]"));
  CHECK(bit_equal(a, a.clone()).ok);
}
