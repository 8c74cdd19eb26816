// Engine core on the CPU: tensor factories and conversions, reshape, printing, Device parsing, the CPU allocator's
// counters and alignment, the Philox generator, and device detection without a GPU.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/mixgrad.h"
#include "tests/common/check.h"

namespace {

using namespace mixgrad;
using testing::bit_equal;

const std::vector<DType> kAllDTypes{DType::f32, DType::f64, DType::i32, DType::i64, DType::u8};

std::vector<double> as_doubles(const Tensor& t) { return t.to(DType::f64).to_vector<double>(); }

TEST_CASE("factories give the requested shape, dtype, device and values", "[nn][core][factories]") {
  for (DType t : kAllDTypes) {
    INFO("dtype " << dtype_name(t));
    Tensor e = empty({2, 3}, t);
    REQUIRE(e.shape() == Shape{2, 3});
    REQUIRE(e.dtype() == t);
    REQUIRE(e.device() == kCPU);
    REQUIRE(e.numel() == 6);
    REQUIRE(e.nbytes() == 6 * dtype_size(t));
    REQUIRE_FALSE(e.requires_grad());
    REQUIRE(as_doubles(zeros({2, 3}, t)) == std::vector<double>(6, 0.0));
    REQUIRE(as_doubles(ones({4}, t)) == std::vector<double>(4, 1.0));
    REQUIRE(as_doubles(full({3, 1}, 7.0, t)) == std::vector<double>(3, 7.0));
    REQUIRE(as_doubles(arange(2, 7, 1, t)) == std::vector<double>{2, 3, 4, 5, 6});
  }
  REQUIRE(arange(0, 1, 0.25, DType::f64).to_vector<double>() == std::vector<double>{0, 0.25, 0.5, 0.75});
  REQUIRE(arange(5, 0, -2, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{5, 3, 1});
  REQUIRE(arange(3, 3).numel() == 0);
  REQUIRE(arange(0, 5).dtype() == DType::f32);
  REQUIRE_THROWS_AS(arange(0, 5, 0), Error);
  REQUIRE(zeros({0, 4}).numel() == 0);
  REQUIRE(scalar_tensor(2.5).dim() == 0);
  REQUIRE(full({2}, 1.5, TensorOptions(DType::f32, kCPU, true)).requires_grad());
  REQUIRE_THROWS_WITH(empty({2, -1}), Catch::Contains("[2, -1]"));
  REQUIRE_THROWS_WITH(ones({2}, TensorOptions(DType::i64, kCPU, true)), Catch::Contains("floating"));
  // Random factories: floating dtypes only.
  REQUIRE(rand({3, 4}, DType::f64).dtype() == DType::f64);
  REQUIRE(randn({5}).dtype() == DType::f32);
  REQUIRE(randn({2, 2}, DType::f64).shape() == Shape{2, 2});
  REQUIRE_THROWS_WITH(rand({3}, DType::i32), Catch::Contains("rand") && Catch::Contains("int32"));
}

TEST_CASE("from_vector and to_vector round-trip every dtype", "[nn][core][factories]") {
  REQUIRE(from_vector<float>({1.5f, -2.f}, {2}).to_vector<float>() == std::vector<float>{1.5f, -2.f});
  REQUIRE(from_vector<double>({0.1, 0.2, 0.3}, {3, 1}).to_vector<double>() == std::vector<double>{0.1, 0.2, 0.3});
  REQUIRE(from_vector<int32_t>({-7, 8}, {1, 2}).to_vector<int32_t>() == std::vector<int32_t>{-7, 8});
  REQUIRE(from_vector<int64_t>({int64_t(1) << 40, -3}, {2}).to_vector<int64_t>() ==
          std::vector<int64_t>{int64_t(1) << 40, -3});
  REQUIRE(from_vector<uint8_t>({0, 200, 255}, {3}).to_vector<uint8_t>() == std::vector<uint8_t>{0, 200, 255});
  REQUIRE(from_vector<int64_t>({4}, {}).dim() == 0);
  REQUIRE(from_vector<double>({1, 2}, {2}).dtype() == DType::f64);
  // opt.dtype is not used (documented): the dtype is T's; convert with .to(dtype).
  REQUIRE(from_vector<int32_t>({1, 2}, {2}, DType::f64).dtype() == DType::i32);
  REQUIRE(from_vector<double>({1, 2}, {2}, DType::f32).dtype() == DType::f64);
  REQUIRE_THROWS_WITH(from_vector<float>({1, 2, 3}, {2, 2}), Catch::Contains("[2, 2]"));
  REQUIRE_THROWS_WITH(from_vector<float>({1, 2}, {2}).to_vector<double>(), Catch::Contains("float32"));
}

TEST_CASE("item() reads single-element tensors of every dtype", "[nn][core]") {
  REQUIRE(scalar_tensor(3.5).item() == 3.5);
  REQUIRE(from_vector<int64_t>({-42}, {1, 1}).item() == -42.0);
  REQUIRE(from_vector<uint8_t>({250}, {}).item() == 250.0);
  REQUIRE(full({1}, 0.125, DType::f64).item() == 0.125);
  REQUIRE_THROWS_WITH(zeros({2}).item(), Catch::Contains("item") && Catch::Contains("[2]"));
  REQUIRE_THROWS_AS(Tensor().item(), Error);
}

TEST_CASE("to(DType) round trips and casts like static_cast", "[nn][core][dtype]") {
  manual_seed(3);
  Tensor x = randn({50});
  Tensor there_and_back = x.to(DType::f64).to(DType::f32);
  REQUIRE_CLOSE(bit_equal(there_and_back, x));
  REQUIRE(x.to(DType::f32).same_storage(x));  // no copy when already that dtype

  Tensor i = from_vector<int64_t>({-5, 0, 7, 1000000}, {4});
  REQUIRE(i.to(DType::f64).to(DType::i64).to_vector<int64_t>() == i.to_vector<int64_t>());
  REQUIRE(i.to(DType::f32).to(DType::i32).to_vector<int32_t>() == std::vector<int32_t>{-5, 0, 7, 1000000});
  Tensor u = from_vector<uint8_t>({0, 1, 254, 255}, {4});
  REQUIRE(u.to(DType::i32).to(DType::u8).to_vector<uint8_t>() == u.to_vector<uint8_t>());
  REQUIRE(u.to(DType::f32).to_vector<float>() == std::vector<float>{0, 1, 254, 255});
  // Float -> integer truncates toward zero.
  REQUIRE(from_vector<double>({2.7, -2.7, 0.5}, {3}).to(DType::i64).to_vector<int64_t>() == std::vector<int64_t>{2, -2, 0});
  // Differentiable between float types.
  Tensor a = from_vector<float>({1, 2}, {2}).requires_grad_();
  sum(mul_scalar(a.to(DType::f64), 3.0)).backward();
  REQUIRE(a.grad().dtype() == DType::f32);
  REQUIRE(a.grad().to_vector<float>() == std::vector<float>{3, 3});
}

TEST_CASE("reshape infers -1, shares storage and rejects bad shapes", "[nn][core][reshape]") {
  Tensor x = arange(0, 24).reshape({2, 3, 4});
  Tensor y = x.reshape({-1, 4});
  REQUIRE(y.shape() == Shape{6, 4});
  REQUIRE(y.same_storage(x));
  REQUIRE(x.reshape({4, -1}).shape() == Shape{4, 6});
  REQUIRE(x.reshape({-1}).shape() == Shape{24});
  REQUIRE(x.reshape({2, -1, 3}).shape() == Shape{2, 4, 3});
  REQUIRE(y.to_vector<float>() == x.to_vector<float>());
  REQUIRE_THROWS_WITH(x.reshape({-1, -1}), Catch::Contains("-1"));
  REQUIRE_THROWS_WITH(x.reshape({5, -1}), Catch::Contains("[2, 3, 4]") && Catch::Contains("[5, -1]"));
  REQUIRE_THROWS_WITH(x.reshape({5, 5}), Catch::Contains("[5, 5]"));
  REQUIRE(scalar_tensor(1).reshape({1, 1, -1}).shape() == Shape{1, 1, 1});
}

TEST_CASE("tensors print their values, shape and dtype through fmt", "[nn][core][fmt]") {
  const std::string s = fmt::format("{}", arange(0, 6).reshape({2, 3}));
  REQUIRE_THAT(s, Catch::Contains("[2, 3]") && Catch::Contains("float32") && Catch::Contains("cpu"));
  REQUIRE_THAT(s, Catch::Contains("0, 1, 2, 3, 4, 5"));
  const std::string l = fmt::format("{}", zeros({100}, DType::i64));
  REQUIRE_THAT(l, Catch::Contains("[100]") && Catch::Contains("int64") && Catch::Contains("..."));
  REQUIRE_THAT(fmt::format("{}", ones({1}, DType::f64).requires_grad_()), Catch::Contains("requires_grad"));
  REQUIRE_THAT(fmt::format("{}", Tensor()), Catch::Contains("undefined"));
  REQUIRE(fmt::format("{}", DType::u8) == "uint8");
}

TEST_CASE("Device::parse accepts cpu, cuda and cuda:N and rejects anything else", "[nn][core][device]") {
  REQUIRE(Device::parse("cpu") == kCPU);
  REQUIRE(Device::parse("cpu").is_cpu());
  const Device c1 = Device::parse("cuda:1");
  REQUIRE(c1.is_cuda());
  REQUIRE(c1.index == 1);
  REQUIRE(c1.str() == "cuda:1");
  REQUIRE(fmt::format("{}", c1) == "cuda:1");
  REQUIRE(Device("cuda").index == 0);
  REQUIRE(Device(std::string("cuda:12")).index == 12);
  REQUIRE_FALSE(Device("cuda:0") == Device("cuda:1"));
  for (const char* bad : {"gpu", "", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda:1a", "cuda1", " cpu", "cuda:99999"}) {
    INFO("spec \"" << bad << "\"");
    REQUIRE_THROWS_AS(Device::parse(bad), Error);
    REQUIRE_THROWS_WITH(Device::parse(bad), Catch::Contains("device") && Catch::Contains("expected cpu, cuda or cuda:N"));
  }
}

TEST_CASE("CPU allocator reuses freed large blocks and can give them back", "[nn][core][allocator]") {
  empty_cpu_cache();
  const MemoryStats s0 = memory_stats(kCPU);
  const void* first = nullptr;
  {
    Tensor a = empty({1 << 20}, DType::f32);  // 4 MiB: cached on free
    first = a.raw_data();
    REQUIRE(memory_stats(kCPU).bytes_in_use - s0.bytes_in_use == 4 << 20);
  }
  const MemoryStats s1 = memory_stats(kCPU);
  REQUIRE(s1.bytes_in_use == s0.bytes_in_use);              // in use counts live tensors only
  REQUIRE(s1.reserved_bytes - s0.reserved_bytes >= 4 << 20);  // the block is still held
  {
    Tensor b = empty({(1 << 20) - 5}, DType::f32);  // same size class: the same block comes back
    REQUIRE(b.raw_data() == first);
    REQUIRE(memory_stats(kCPU).reserved_bytes == s1.reserved_bytes);
  }
  REQUIRE(empty_cpu_cache() >= size_t{4} << 20);
  REQUIRE(memory_stats(kCPU).reserved_bytes == s0.reserved_bytes);
  {
    Tensor small = empty({1000}, DType::f32);  // below 1 MiB: plain malloc, nothing cached
    (void)small;
  }
  REQUIRE(empty_cpu_cache() == 0);
}

TEST_CASE("CPU allocator counts bytes in use and returns them on destruction", "[nn][core][allocator]") {
  const MemoryStats before = memory_stats(kCPU);
  REQUIRE(before.reserved_bytes >= before.bytes_in_use);
  {
    Tensor a = empty({1000}, DType::f32);
    const MemoryStats s1 = memory_stats(kCPU);
    REQUIRE(s1.bytes_in_use - before.bytes_in_use == 4000);
    REQUIRE(s1.allocations - before.allocations == 1);
    {
      Tensor b = empty({3, 7}, DType::f64);
      REQUIRE(memory_stats(kCPU).bytes_in_use - before.bytes_in_use == 4000 + 168);
      Tensor view = b.reshape({-1});  // a view allocates nothing
      REQUIRE(memory_stats(kCPU).bytes_in_use - before.bytes_in_use == 4000 + 168);
    }
    REQUIRE(memory_stats(kCPU).bytes_in_use - before.bytes_in_use == 4000);
    Tensor u = empty({13}, DType::u8);
    REQUIRE(memory_stats(kCPU).bytes_in_use - before.bytes_in_use == 4013);
  }
  REQUIRE(memory_stats(kCPU).bytes_in_use == before.bytes_in_use);
  // Raw allocator: zero bytes is nullptr, no count.
  REQUIRE(device_allocate(kCPU, 0) == nullptr);
  void* p = device_allocate(kCPU, 100);
  REQUIRE(p != nullptr);
  REQUIRE(memory_stats(kCPU).bytes_in_use - before.bytes_in_use == 100);
  device_free(kCPU, p, 100);
  REQUIRE(memory_stats(kCPU).bytes_in_use == before.bytes_in_use);
}

TEST_CASE("CPU allocator tracks the peak and reset_peak_memory resets it", "[nn][core][allocator]") {
  reset_peak_memory(kCPU);
  const MemoryStats base = memory_stats(kCPU);
  REQUIRE(base.peak_bytes == base.bytes_in_use);
  { Tensor big = empty({1 << 18}, DType::f64); }  // 2 MiB, freed at once
  const MemoryStats after = memory_stats(kCPU);
  REQUIRE(after.bytes_in_use == base.bytes_in_use);
  REQUIRE(after.peak_bytes >= base.bytes_in_use + (int64_t(1) << 21));
  reset_peak_memory(kCPU);
  REQUIRE(memory_stats(kCPU).peak_bytes == memory_stats(kCPU).bytes_in_use);
}

TEST_CASE("CPU tensor data is 64-byte aligned", "[nn][core][allocator]") {
  std::vector<Tensor> keep;
  for (int64_t n : {1, 3, 17, 63, 64, 65, 1000}) {
    for (DType t : kAllDTypes) {
      keep.push_back(empty({n}, t));
      INFO("n " << n << " dtype " << dtype_name(t));
      REQUIRE(reinterpret_cast<uintptr_t>(keep.back().raw_data()) % 64 == 0);
    }
  }
  for (size_t bytes : {1, 7, 100, 4097}) {
    void* p = device_allocate(kCPU, bytes);
    REQUIRE(reinterpret_cast<uintptr_t>(p) % 64 == 0);
    device_free(kCPU, p, bytes);
  }
}

TEST_CASE("manual_seed replays rand and randn; different seeds differ", "[nn][core][rng]") {
  manual_seed(1234);
  Tensor u1 = rand({257}), n1 = randn({3, 5}, DType::f64), u1b = rand({257});
  manual_seed(1234);
  Tensor u2 = rand({257}), n2 = randn({3, 5}, DType::f64), u2b = rand({257});
  REQUIRE_CLOSE(bit_equal(u1, u2));
  REQUIRE_CLOSE(bit_equal(n1, n2));
  REQUIRE_CLOSE(bit_equal(u1b, u2b));
  REQUIRE_FALSE(bit_equal(u1, u1b).ok);  // successive draws use fresh streams
  manual_seed(1235);
  REQUIRE_FALSE(bit_equal(rand({257}), u1).ok);
  // The generator state can be saved and restored.
  manual_seed(77);
  rand({4});
  const GeneratorState st = generator_state();
  REQUIRE(st.seed == 77);
  REQUIRE(st.offset == 1);
  Tensor r1 = randn({64});
  set_generator_state(st);
  REQUIRE_CLOSE(bit_equal(randn({64}), r1));
  // A draw does not depend on the size of earlier draws (one stream per call).
  manual_seed(5);
  rand({10});
  Tensor after_small = rand({8});
  manual_seed(5);
  rand({10000});
  REQUIRE_CLOSE(bit_equal(rand({8}), after_small));
  // float32 and float64 draws of one stream agree to float precision.
  manual_seed(9);
  Tensor f = rand({100});
  manual_seed(9);
  Tensor d = rand({100}, DType::f64);
  REQUIRE_CLOSE(testing::all_close(f, d, testing::tolerance(testing::Compare::forward_f32)));
}

TEST_CASE("rand is uniform on [0, 1) and randn has mean 0 and std 1", "[nn][core][rng]") {
  manual_seed(2024);
  const int64_t n = 100000;
  for (DType t : {DType::f32, DType::f64}) {
    INFO("dtype " << dtype_name(t));
    const std::vector<double> u = as_doubles(rand({n}, t));
    double lo = 1, hi = 0, m = 0;
    int64_t below_quarter = 0;
    for (double v : u) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      m += v;
      below_quarter += v < 0.25;
    }
    m /= double(n);
    REQUIRE(lo >= 0.0);
    REQUIRE(hi < 1.0);
    REQUIRE(m == Approx(0.5).margin(0.005));  // sigma of the mean: 0.0009
    REQUIRE(double(below_quarter) / double(n) == Approx(0.25).margin(0.006));

    const std::vector<double> z = as_doubles(randn({n}, t));
    double zm = 0, zv = 0;
    for (double v : z) zm += v;
    zm /= double(n);
    for (double v : z) zv += (v - zm) * (v - zm);
    const double sd = std::sqrt(zv / double(n - 1));
    REQUIRE(zm == Approx(0.0).margin(0.015));  // sigma of the mean: 0.0032
    REQUIRE(sd == Approx(1.0).margin(0.015));  // sigma of the std: 0.0022
    int64_t within1 = 0;
    for (double v : z) within1 += std::abs(v) < 1.0;
    REQUIRE(double(within1) / double(n) == Approx(0.6827).margin(0.01));
  }
}

TEST_CASE("device detection is consistent and never crashes; without a GPU everything is cpu", "[nn][core][device]") {
  const bool available = cuda_is_available();
  REQUIRE(available == (cuda_device_count() > 0));
  REQUIRE(cuda_unavailable_reason().empty() == available);
  REQUIRE(default_device() == (available ? Device("cuda:0") : kCPU));
  if (!cuda_compiled()) REQUIRE_FALSE(available);
  synchronize(kCPU);  // a no-op, must not throw
  if (!available) {
    REQUIRE(default_device().is_cpu());
    REQUIRE_THROWS_AS(zeros({2}, Device("cuda:0")), Error);
    REQUIRE_THROWS_AS(ones({2}).to(Device("cuda")), Error);
  }
}

}  // namespace
