// Fuzz harness: any bytes as a .npy file (io::NpyFile over memory), then its data read whole
// (floats as double, integers as int64) and its first row as float. Only irepa::Error may come out.
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"
#include "irepa/io/npy.hpp"

IREPA_FUZZ_TARGET(npy) {
  try {
    const irepa::io::NpyFile f(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz.npy");
    if (f.shape().numel() > (std::int64_t{1} << 24)) return;
    const bool is_float = f.dtype() == irepa::DType::F64 || f.dtype() == irepa::DType::F32 || f.dtype() == irepa::DType::F16;
    if (is_float)
      (void)f.load<double>();
    else
      (void)f.load<std::int64_t>();
    if (f.shape().rank() >= 1 && f.shape()[0] > 0) (void)f.load_rows<float>(0, 1);
  } catch (const irepa::Error&) {
  }
}
