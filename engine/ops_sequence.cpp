// Sequence masks, length shifts, masked mean and zeroed padding (engine/sequence.h): the mask is one kernel on the
// lengths' device; pooling and zeroing are compositions of differentiable ops on that mask.
#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "engine/sequence.h"
#include "kernels/cpu/sequence.h"
#ifdef MIXGRAD_WITH_CUDA
#include "kernels/cuda/sequence.h"
#endif

namespace mixgrad {

void check_lengths(const char* op, const Tensor& lengths, int64_t batch, Device device, int64_t min_len,
                   int64_t max_len) {
  MIXGRAD_CHECK(lengths.defined(), "{}: lengths is undefined (expected int32 [{}])", op, batch);
  MIXGRAD_CHECK(lengths.dtype() == DType::i32 && lengths.dim() == 1 && lengths.size(0) == batch,
                "{}: lengths is {} {}, expected int32 [{}] (one valid-token count per sample)", op, lengths.dtype(),
                shape_str(lengths.shape()), batch);
  MIXGRAD_CHECK(lengths.device() == device, "{}: lengths is on {}, expected {} (the data's device)", op,
                lengths.device(), device);
  if (!device.is_cpu()) return;
  const int32_t* n = lengths.data<int32_t>();
  for (int64_t b = 0; b < batch; ++b)
    MIXGRAD_CHECK(n[b] >= min_len && n[b] <= max_len, "{}: lengths[{}] = {} is outside [{}, {}]", op, b, n[b], min_len,
                  max_len);
}

Tensor sequence_mask(const Tensor& lengths, int64_t max_len, DType dtype) {
  constexpr const char* op = "sequence_mask";
  MIXGRAD_CHECK(lengths.defined() && lengths.dtype() == DType::i32 && lengths.dim() == 1,
                "{}: expected int32 lengths [B], got {}", op,
                lengths.defined() ? fmt::format("{} {}", lengths.dtype(), shape_str(lengths.shape())) : "undefined");
  MIXGRAD_CHECK(max_len >= 0, "{}: max_len = {} must be >= 0", op, max_len);
  const Device device = lengths.device();
  MIXGRAD_CHECK(dtype == DType::u8 || dtype == DType::f32 || (dtype == DType::f64 && device.is_cpu()),
                "{}: dtype {} on {} is not supported (expected uint8, float32, or float64 on the CPU)", op, dtype,
                device);
  const int64_t b = lengths.size(0);
  Tensor mask = empty({b, max_len}, TensorOptions(dtype, device));
  if (b == 0 || max_len == 0) return mask;
  if (device.is_cpu()) {
    const int32_t* n = lengths.data<int32_t>();
    if (dtype == DType::u8) kernels::cpu::sequence_mask(mask.data<uint8_t>(), n, b, max_len);
    if (dtype == DType::f32) kernels::cpu::sequence_mask(mask.data<float>(), n, b, max_len);
    if (dtype == DType::f64) kernels::cpu::sequence_mask(mask.data<double>(), n, b, max_len);
    return mask;
  }
#ifdef MIXGRAD_WITH_CUDA
  if (dtype == DType::u8)
    kernels::cuda::sequence_mask(mask.data<uint8_t>(), lengths.data<int32_t>(), b, max_len, detail::stream_of(mask));
  else
    kernels::cuda::sequence_mask(mask.data<float>(), lengths.data<int32_t>(), b, max_len, detail::stream_of(mask));
  return mask;
#else
  detail::no_cuda(op);
#endif
}

Tensor add_to_lengths(const Tensor& lengths, int64_t delta) {
  constexpr const char* op = "add_to_lengths";
  MIXGRAD_CHECK(lengths.defined() && lengths.dtype() == DType::i32 && lengths.dim() == 1,
                "{}: expected int32 lengths [B], got {}", op,
                lengths.defined() ? fmt::format("{} {}", lengths.dtype(), shape_str(lengths.shape())) : "undefined");
  MIXGRAD_CHECK(delta >= -(int64_t(1) << 30) && delta <= (int64_t(1) << 30), "{}: delta = {} is out of range", op,
                delta);
  Tensor out = empty_like(lengths);
  const int64_t b = lengths.size(0);
  if (b == 0) return out;
  if (lengths.device().is_cpu()) {
    kernels::cpu::add_to_lengths(out.data<int32_t>(), lengths.data<int32_t>(), b, int32_t(delta));
    return out;
  }
#ifdef MIXGRAD_WITH_CUDA
  kernels::cuda::add_to_lengths(out.data<int32_t>(), lengths.data<int32_t>(), b, int32_t(delta),
                                detail::stream_of(out));
  return out;
#else
  detail::no_cuda(op);
#endif
}

namespace {
// The float mask [B, N] of x's dtype, after checking x [B, N, ...] and the lengths.
Tensor float_mask_for(const char* op, const Tensor& x, const Tensor& lengths) {
  MIXGRAD_CHECK(x.defined() && x.dim() >= 2 && is_floating(x.dtype()),
                "{}: expected floating-point x [B, N, ...], got {}", op,
                x.defined() ? fmt::format("{} {}", x.dtype(), shape_str(x.shape())) : "undefined");
  check_lengths(op, lengths, x.size(0), x.device(), 0, x.size(1));
  return sequence_mask(lengths, x.size(1), x.dtype());
}
}  // namespace

Tensor masked_mean(const Tensor& x, const Tensor& lengths) {
  constexpr const char* op = "masked_mean";
  MIXGRAD_CHECK(x.defined() && x.dim() == 3, "{}: expected x [B, N, D], got {}", op,
                x.defined() ? shape_str(x.shape()) : "undefined");
  const Tensor m = float_mask_for(op, x, lengths);  // [B, N]
  const Tensor one = full({}, 1.0, TensorOptions(x.dtype(), x.device()));
  const Tensor count = maximum(sum(m, {1}, true), one);  // [B, 1]; a length-0 sample divides 0 by 1
  return div(sum(mul(x, m.reshape({x.size(0), x.size(1), 1})), {1}), count);
}

Tensor zero_padding(const Tensor& x, const Tensor& lengths) {
  const Tensor m = float_mask_for("zero_padding", x, lengths);
  Shape s = m.shape();
  while (int64_t(s.size()) < x.dim()) s.push_back(1);
  return mul(x, m.reshape(s));
}

}  // namespace mixgrad
