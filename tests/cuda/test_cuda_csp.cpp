// CSP on CUDA against the CPU reference (specs/csp.md §11.2 item 1/3/5/8/10): the engine op forward and autograd
// backward bit for bit over the CPU suite's case table (K 2/4/8, lengths, ties/NaN/±inf/±0), and the kernels'
// Design A (simple), Design B (tiled, with its per-tile fallback), Design C (slab, clusters), Design D (gather
// backward) and automatic choice against the CPU kernel.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/csp.h"
#include "engine/cuda_backend.h"
#include "engine/mixgrad.h"
#include "kernels/cpu/csp.h"
#include "kernels/cuda/csp.h"
#include "tests/common/csp_reference.h"

namespace {

using namespace mixgrad;

Device gpu() { return Device("cuda"); }

using testing::Fill;
using testing::same_bits;
using Catch::Contains;
using Case = testing::CspCase;

// This suite draws the fill's pick for every element (see csp_values).
std::vector<float> make_values(size_t n, Fill fill, std::mt19937& gen) {
  return testing::csp_values<float>(n, fill, gen, /*pick_every_element=*/true);
}

void check_op(const Case& tc, Fill fill, uint32_t seed) {
  INFO(tc.name << " fill " << int(fill));
  std::mt19937 gen(seed);
  const Shape shape{tc.B, tc.N, tc.D};
  const size_t n = size_t(tc.B * tc.N * tc.D);
  const auto shifts = testing::csp_shifts_for(tc, gen);
  const auto v = make_values(n, fill, gen), dy = make_values(n, Fill::normal, gen);
  Tensor len_cpu = tc.lengths.empty() ? Tensor() : from_vector<int32_t>(tc.lengths, {tc.B}, TensorOptions(DType::i32));
  Tensor len_gpu = len_cpu.defined() ? len_cpu.to(gpu()) : Tensor();

  Tensor vc = from_vector<float>(v, shape).requires_grad_();
  Tensor yc = csp(vc, shifts, tc.K, len_cpu);
  yc.backward(from_vector<float>(dy, shape));

  Tensor vg = from_vector<float>(v, shape).to(gpu()).detach().requires_grad_();
  Tensor yg = csp(vg, shifts, tc.K, len_gpu);
  REQUIRE(yg.device() == gpu());
  yg.backward(from_vector<float>(dy, shape).to(gpu()));
  REQUIRE_SAME_BITS(yg.to(kCPU).to_vector<float>(), yc.detach().to_vector<float>());
  REQUIRE_SAME_BITS(vg.grad().to(kCPU).to_vector<float>(), vc.grad().to_vector<float>());
  // Lengths may live on the CPU for a CUDA V.
  REQUIRE_SAME_BITS(csp(vg.detach(), shifts, tc.K, len_cpu).to(kCPU).to_vector<float>(), yc.detach().to_vector<float>());
}

TEST_CASE("CUDA csp: op forward and backward equal the CPU op bit for bit", "[cuda][csp]") {
  uint32_t seed = 1;
  for (const auto& tc : testing::csp_cases(/*tile_edges=*/true))
    for (Fill f : {Fill::normal, Fill::ties01, Fill::zeros_signed, Fill::specials}) check_op(tc, f, seed++);
}

TEST_CASE("CUDA csp: Path-X size N = 16384", "[cuda][csp]") {
  check_op({"Path-X K2 random", 2, 16384, 3, 2, "random", {}}, Fill::normal, 500);
  check_op({"Path-X K2 exp", 1, 16384, 128, 2, "exponential", {}}, Fill::normal, 501);
  check_op({"Path-X K8 lengths", 2, 16384, 40, 8, "constant", {16384, 12345}}, Fill::specials, 502);
}

// Kernel level: every design against the CPU kernel, forward and backward; output buffers start as garbage so an
// element a design forgets to write shows up.
TEST_CASE("CUDA csp: simple, tiled, slab, gather, window and automatic designs equal the CPU kernel", "[cuda][csp]") {
  using kernels::cuda::CspDesign;
  uint32_t seed = 900;
  for (const auto& tc : testing::csp_cases(/*tile_edges=*/true))
    for (Fill fill : {Fill::normal, Fill::specials}) {
      INFO(tc.name << " fill " << int(fill));
      std::mt19937 gen(seed++);
      const Shape shape{tc.B, tc.N, tc.D};
      const size_t n = size_t(tc.B * tc.N * tc.D);
      const auto shifts = testing::csp_shifts_for(tc, gen);
      const auto v = make_values(n, fill, gen), dy = make_values(n, Fill::normal, gen);
      const int32_t* lp = tc.lengths.empty() ? nullptr : tc.lengths.data();
      std::vector<float> y_ref(n), dv_ref(n);
      kernels::cpu::csp_forward(y_ref.data(), v.data(), shifts.data(), lp, tc.B, tc.N, tc.D, tc.K);
      kernels::cpu::csp_backward(dv_ref.data(), dy.data(), v.data(), shifts.data(), lp, tc.B, tc.N, tc.D, tc.K);

      Tensor vg = from_vector<float>(v, shape).to(gpu()), dyg = from_vector<float>(dy, shape).to(gpu());
      Tensor sg = from_vector<int32_t>(shifts, {tc.D}, TensorOptions(DType::i32, gpu()));
      Tensor lg = lp ? from_vector<int32_t>(tc.lengths, {tc.B}, TensorOptions(DType::i32, gpu())) : Tensor();
      const int32_t* lgp = lp ? lg.data<int32_t>() : nullptr;
      for (CspDesign d :
           {CspDesign::simple, CspDesign::tiled, CspDesign::slab, CspDesign::gather, CspDesign::window,
            CspDesign::automatic}) {
        INFO("design " << int(d));
        Tensor y = full(shape, std::numeric_limits<double>::quiet_NaN(), TensorOptions(DType::f32, gpu()));
        Tensor dv = full(shape, -12345.0, TensorOptions(DType::f32, gpu()));
        cudaStream_t st = mixgrad::cuda::stream(gpu());
        kernels::cuda::csp_forward(y.data<float>(), vg.data<float>(), sg.data<int32_t>(), lgp, tc.B, tc.N, tc.D, tc.K,
                                   st, d);
        kernels::cuda::csp_backward(dv.data<float>(), dyg.data<float>(), vg.data<float>(), sg.data<int32_t>(), lgp,
                                    tc.B, tc.N, tc.D, tc.K, st, d);
        REQUIRE_SAME_BITS(y.to(kCPU).to_vector<float>(), y_ref);
        REQUIRE_SAME_BITS(dv.to(kCPU).to_vector<float>(), dv_ref);
      }
    }
}

TEST_CASE("CUDA csp: two runs are bitwise identical", "[cuda][csp]") {
  std::mt19937 gen(7);
  const int64_t B = 3, N = 256, D = 70;
  const auto v = make_values(size_t(B * N * D), Fill::specials, gen);
  const auto dy = make_values(size_t(B * N * D), Fill::ties01, gen);
  Tensor vg = from_vector<float>(v, {B, N, D}).to(gpu()), dyg = from_vector<float>(dy, {B, N, D}).to(gpu());
  Tensor len = from_vector<int32_t>({256, 77, 3}, {3}).to(gpu());
  for (int k : {2, 4, 8}) {
    const auto sh = csp_shifts_exponential(1, 2, D, N);
    std::string where;
    REQUIRE(same_bits(csp(vg, sh, k, len).to(kCPU).to_vector<float>(), csp(vg, sh, k, len).to(kCPU).to_vector<float>(),
                      &where));
    REQUIRE(same_bits(csp_backward(dyg, vg, sh, k, len).to(kCPU).to_vector<float>(),
                      csp_backward(dyg, vg, sh, k, len).to(kCPU).to_vector<float>(), &where));
  }
}

TEST_CASE("CUDA csp: lengths on the GPU (int32 or int64) are validated on the device", "[cuda][csp]") {
  std::mt19937 gen(31);
  const Shape shape{3, 16, 5};
  const std::vector<float> v = make_values(size_t(3 * 16 * 5), Fill::normal, gen);
  const std::vector<int32_t> sh{0, 1, 3, 7, 15};
  const Tensor vc = from_vector<float>(v, shape), vg = vc.to(gpu());
  const Tensor want = csp(vc, sh, 4, from_vector<int32_t>({16, 5, 1}, {3}));
  REQUIRE_SAME_BITS(csp(vg, sh, 4, from_vector<int64_t>({16, 5, 1}, {3}).to(gpu())).to(kCPU).to_vector<float>(),
                    want.to_vector<float>());
  // A bad length is reported at the next read-back (naming the op and the valid range), never read out of range.
  for (const std::vector<int64_t>& bad : {std::vector<int64_t>{16, 0, 1}, std::vector<int64_t>{17, 5, 1}}) {
    const Tensor y = csp(vg, sh, 4, from_vector<int64_t>(bad, {3}).to(gpu()));
    REQUIRE_THROWS_WITH(y.to(kCPU), Contains("csp: a length is outside [1, N] = [1, 16]"));
  }
  REQUIRE_NOTHROW(csp(vg, sh, 4, from_vector<int32_t>({1, 2, 3}, {3}).to(gpu())).to(kCPU));
}

TEST_CASE("CUDA csp: lengths of a key-padding mask are computed and checked on the device", "[cuda][csp]") {
  // Rows: full, 1 valid, 1000 valid (N = 16384: many blocks' worth of columns per row), 16383 valid.
  const int64_t B = 4, N = 16384;
  std::vector<uint8_t> m(size_t(B * N), 0);
  const std::vector<int64_t> want{N, 1, 1000, N - 1};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < want[size_t(b)]; ++j) m[size_t(b * N + j)] = 1;
  const Tensor mc = from_vector<uint8_t>(m, {B, N});
  const std::vector<int32_t> cpu = csp_mask_lengths(mc).to_vector<int32_t>();
  REQUIRE(cpu == std::vector<int32_t>{int32_t(N), 1, 1000, int32_t(N - 1)});
  REQUIRE(csp_mask_lengths(mc.to(gpu())).to(kCPU).to_vector<int32_t>() == cpu);
  // A hole, and an empty row: clear errors at the next read-back (the CPU names the row at once).
  std::vector<uint8_t> hole = m;
  hole[size_t(2 * N + 5000)] = 1;
  REQUIRE_THROWS_WITH(csp_mask_lengths(from_vector<uint8_t>(hole, {B, N})), Contains("row 2 is not a prefix mask"));
  const Tensor lh = csp_mask_lengths(from_vector<uint8_t>(hole, {B, N}).to(gpu()), "CspMixer");
  REQUIRE_THROWS_WITH(lh.to(kCPU), Contains("CspMixer: a key_padding_mask row is not a prefix mask"));
  std::vector<uint8_t> none = m;
  none[size_t(N)] = 0;  // row 1 had one valid token
  const Tensor ln = csp_mask_lengths(from_vector<uint8_t>(none, {B, N}).to(gpu()));
  REQUIRE_THROWS_WITH(synchronize_and_check(gpu()), Contains("has no valid token"));
  REQUIRE(ln.to(kCPU).to_vector<int32_t>()[1] == 1);  // clamped, never 0
}

TEST_CASE("CUDA csp: float64 on CUDA is a clear error", "[cuda][csp]") {
  Tensor v = zeros({1, 4, 2}, TensorOptions(DType::f64, gpu()));
  REQUIRE_THROWS_AS(csp(v, {0, 1}, 2), Error);
}

}  // namespace
