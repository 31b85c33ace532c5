// Fuzz harness: any bytes as an Arrow IPC stream (io::ArrowStreamFile), then every value
// of every column read the way the datasets read them. Only irepa::Error may come out.
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"

#include "irepa/io/arrow_ipc.hpp"

namespace {
void read_all(const irepa::io::ArrowArray& a) {
  using irepa::io::ArrowType;
  for (std::int64_t i = 0; i < a.length; ++i) {
    if (a.is_null(i)) continue;
    switch (a.field->type) {
      case ArrowType::Int: (void)irepa::io::arrow_int(a, i); break;
      case ArrowType::Binary:
      case ArrowType::LargeBinary:
      case ArrowType::Utf8:
      case ArrowType::LargeUtf8: (void)irepa::io::arrow_bytes(a, i); break;
      case ArrowType::List:
      case ArrowType::LargeList:
      case ArrowType::FixedSizeList: {
        std::vector<std::int64_t> shape;
        try {
          (void)irepa::io::arrow_float_tensor(a, i, shape, "fuzz");
        } catch (const irepa::Error&) {
        }
        break;
      }
      default: break;
    }
  }
  for (const auto& c : a.children) read_all(c);
}
}  // namespace

IREPA_FUZZ_TARGET(arrow) {
  try {
    const irepa::io::ArrowStreamFile f(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz.arrow");
    for (const auto& b : f.batches())
      for (const auto& c : b.columns) read_all(c);
  } catch (const irepa::Error&) {
  }
}
