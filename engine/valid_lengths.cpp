// One check and conversion of per-sample valid lengths for the sequence ops (engine/valid_lengths.h).
#include "engine/valid_lengths.h"

#include <fmt/format.h>

#include <vector>

#include "engine/backend.h"
#include "engine/deferred_checks.h"
#include "engine/error.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/csp.h"
#endif

namespace mixgrad::detail {

ValidLengths prepare_valid_lengths(const char* op, const Tensor& lengths, const Tensor& ref, const char* ref_name) {
  const int64_t B = ref.size(0), L = ref.size(1);
  MIXGRAD_CHECK(lengths.dtype() == DType::i32 || lengths.dtype() == DType::i64,
                "{}: lengths has dtype {}, expected int32 or int64", op, lengths.dtype());
  MIXGRAD_CHECK(lengths.dim() == 1 && lengths.size(0) == B, "{}: lengths has shape {}, expected [B] = [{}]", op,
                shape_str(lengths.shape()), B);
  const Device device = ref.device();
  if (!device.is_cpu() && !lengths.device().is_cpu()) {
#ifdef MIXGRAD_WITH_CUDA
    MIXGRAD_CHECK(lengths.device() == device, "{}: lengths is on {}, {} on {} (expected the same device)", op,
                  lengths.device(), ref_name, device);
    Tensor flag = zeros({1}, TensorOptions(DType::i32, device));
    Tensor out = empty({B}, TensorOptions(DType::i32, device));
    kernels::cuda::csp_prepare_lengths(out.data<int32_t>(), lengths.raw_data(), lengths.dtype() == DType::i64, B, L,
                                       flag.data<int32_t>(), stream_of(ref));
    defer_check(flag, fmt::format("{}: a length is outside [1, L] = [1, {}] (lengths holds each sample's count of "
                                  "valid positions)",
                                  op, L));
    return {out, -1};
#endif
  }
  const std::vector<int64_t> n = lengths.to(kCPU).to(DType::i64).to_vector<int64_t>();
  std::vector<int32_t> n32(static_cast<size_t>(B));
  int64_t total = 0;
  for (int64_t b = 0; b < B; ++b) {
    MIXGRAD_CHECK(n[b] >= 1 && n[b] <= L, "{}: lengths[{}] = {} is outside [1, L] = [1, {}]", op, b, n[b], L);
    n32[b] = static_cast<int32_t>(n[b]);
    total += n[b];
  }
  return {from_vector<int32_t>(n32, {B}, TensorOptions(DType::i32, device)), total};
}

}  // namespace mixgrad::detail
