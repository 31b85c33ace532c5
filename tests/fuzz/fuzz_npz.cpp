// Fuzz harness: any bytes as an .npz (io::NpzFile over memory), then every array read whole
// as the evaluator reads them (floats as double, integers as int64). Only irepa::Error may come out.
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"

#include "irepa/io/npz.hpp"

IREPA_FUZZ_TARGET(npz) {
  try {
    const irepa::io::NpzFile f(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz.npz");
    for (const auto& name : f.names()) {
      try {
        const auto a = f.array(name);
        const bool is_float = a.dtype == irepa::DType::F64 || a.dtype == irepa::DType::F32 || a.dtype == irepa::DType::F16;
        if (is_float)
          (void)a.load<double>();
        else
          (void)a.load<std::int64_t>();
        if (a.shape.rank() >= 1 && a.shape[0] > 0) (void)a.load_rows<float>(0, 1);
      } catch (const irepa::Error&) {
      }
    }
  } catch (const irepa::Error&) {
  }
}
