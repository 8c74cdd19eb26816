// Element types of tensors: f32 everywhere, f64 on the CPU (gradient checks), integer types for indices and data.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/error.h"

namespace mixgrad {

enum class DType : uint8_t { f32, f64, i32, i64, u8 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::u8: return "uint8";
  }
  return "?";
}

constexpr bool is_floating(DType t) { return t == DType::f32 || t == DType::f64; }

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <class T> constexpr DType dtype_v = dtype_of<T>::value;

}  // namespace mixgrad

template <> struct fmt::formatter<mixgrad::DType> : fmt::formatter<std::string_view> {
  auto format(mixgrad::DType t, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(mixgrad::dtype_name(t), ctx);
  }
};

// Runs the body with `scalar_t` bound to float or double; any other dtype is an error naming the op.
#define MIXGRAD_DISPATCH_FLOATING(dtype, opname, ...)                                              \
  [&] {                                                                                            \
    switch (dtype) {                                                                               \
      case ::mixgrad::DType::f32: { using scalar_t = float; return __VA_ARGS__(); }                \
      case ::mixgrad::DType::f64: { using scalar_t = double; return __VA_ARGS__(); }               \
      default:                                                                                     \
        throw ::mixgrad::Error(::fmt::format("{}: expected a floating-point tensor (float32 or "  \
                                             "float64), got {}", opname, dtype));                  \
    }                                                                                              \
  }()

// Runs the body with `scalar_t` bound to the C++ type of any dtype.
#define MIXGRAD_DISPATCH_ALL(dtype, opname, ...)                                     \
  [&] {                                                                              \
    switch (dtype) {                                                                 \
      case ::mixgrad::DType::f32: { using scalar_t = float; return __VA_ARGS__(); }  \
      case ::mixgrad::DType::f64: { using scalar_t = double; return __VA_ARGS__(); } \
      case ::mixgrad::DType::i32: { using scalar_t = int32_t; return __VA_ARGS__(); }\
      case ::mixgrad::DType::i64: { using scalar_t = int64_t; return __VA_ARGS__(); }\
      case ::mixgrad::DType::u8: { using scalar_t = uint8_t; return __VA_ARGS__(); } \
    }                                                                                \
    throw ::mixgrad::Error(::fmt::format("{}: unknown dtype", opname));              \
  }()
