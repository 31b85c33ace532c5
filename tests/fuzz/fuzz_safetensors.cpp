// Fuzz harness: any bytes as a safetensors file (io::SafeTensorsFile over memory), then every
// tensor read as the loaders read them (floats as double and float, integers as int64) and the
// metadata looked up. Only irepa::Error may come out.
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"
#include "irepa/io/safetensors.hpp"

IREPA_FUZZ_TARGET(safetensors) {
  try {
    const irepa::io::SafeTensorsFile f(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz.safetensors");
    (void)f.metadata("format");
    for (const auto& name : f.names()) {
      try {
        const auto& info = f.info(name);
        if (info.nbytes() > (std::size_t{64} << 20)) continue;
        const bool is_float = info.dtype == irepa::DType::F64 || info.dtype == irepa::DType::F32 || info.dtype == irepa::DType::F16 ||
                              info.dtype == irepa::DType::BF16;
        if (is_float) {
          (void)f.load<double>(name);
          (void)f.load<float>(name, info.shape);
        } else {
          (void)f.load<std::int64_t>(name);
        }
      } catch (const irepa::Error&) {
      }
    }
    (void)f.info("not-there");
  } catch (const irepa::Error&) {
  }
}
