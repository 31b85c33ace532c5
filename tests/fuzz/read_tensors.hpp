#pragma once
// What the safetensors and torch harnesses do with a file that opened: every tensor read as the
// loaders read it (floats as double and float, integers as int64, through any strides), and its
// raw bytes where it is row-major. Each tensor's Error is caught so the next one is tried.
#include <cstdint>

#include "irepa/io/safetensors.hpp"

namespace irepa::fuzz {

inline void read_every_tensor(const io::TensorFile& f) {
  for (const auto& name : f.names()) {
    try {
      const auto& info = f.info(name);
      // A stride-0 view may claim many elements over a few bytes: bound what is made, not what is read.
      if (info.shape.numel() > (std::int64_t{1} << 22)) continue;
      const bool is_float = info.dtype == DType::F64 || info.dtype == DType::F32 || info.dtype == DType::F16 || info.dtype == DType::BF16;
      if (is_float) {
        (void)f.load<double>(name);
        (void)f.load<float>(name, info.shape);
      } else {
        (void)f.load<std::int64_t>(name);
      }
      if (info.contiguous()) (void)f.bytes(name);
    } catch (const Error&) {
    }
  }
}

}  // namespace irepa::fuzz
