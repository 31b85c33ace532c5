#pragma once
// Element types. bf16 and f16 are Eigen's types: both convert from float with round to
// nearest even (NaN stays NaN), so no home-made conversion is needed.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include <Eigen/Core>

#include "irepa/core/error.hpp"

namespace irepa {

__extension__ typedef unsigned __int128 uint128_t;  // GCC/Clang extension, for overflow-free products

using bf16 = Eigen::bfloat16;
using f16 = Eigen::half;

/// Storage element types (the safetensors set).
enum class DType : std::uint8_t { F64, F32, F16, BF16, I64, I32, U8, Bool };

constexpr std::string_view dtype_name(DType d) {
  switch (d) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
    case DType::Bool: return "BOOL";
  }
  return "?";
}

constexpr std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::U8: case DType::Bool: return 1;
  }
  return 0;
}

/// Parses a safetensors dtype name; throws naming the unknown name.
inline DType dtype_from_name(std::string_view s) {
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32,
                  DType::U8, DType::Bool})
    if (dtype_name(d) == s) return d;
  fail("dtype: unknown dtype '{}' (expected one of F64, F32, F16, BF16, I64, I32, U8, BOOL)", s);
}

namespace detail {
template <class T> struct DTypeOf;
template <> struct DTypeOf<double> { static constexpr DType value = DType::F64; };
template <> struct DTypeOf<float> { static constexpr DType value = DType::F32; };
template <> struct DTypeOf<f16> { static constexpr DType value = DType::F16; };
template <> struct DTypeOf<bf16> { static constexpr DType value = DType::BF16; };
template <> struct DTypeOf<std::int64_t> { static constexpr DType value = DType::I64; };
template <> struct DTypeOf<std::int32_t> { static constexpr DType value = DType::I32; };
template <> struct DTypeOf<std::uint8_t> { static constexpr DType value = DType::U8; };
template <> struct DTypeOf<bool> { static constexpr DType value = DType::Bool; };
}  // namespace detail

/// The storage dtype of a C++ element type.
template <class T>
inline constexpr DType dtype_of = detail::DTypeOf<std::remove_const_t<T>>::value;

/// Element types a tensor may hold.
template <class T>
concept Element = requires { detail::DTypeOf<std::remove_const_t<T>>::value; };

/// Floating element types that ops compute in.
template <class T>
concept Real = std::is_same_v<std::remove_const_t<T>, float> ||
               std::is_same_v<std::remove_const_t<T>, double> ||
               std::is_same_v<std::remove_const_t<T>, bf16>;

}  // namespace irepa
