// Fuzz harness: any bytes as an idx file, gzip-compressed or plain (data::parse_idx_u8): the
// header's claim checked, the data inflated up to it. Only irepa::Error may come out.
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"
#include "irepa/data/idx.hpp"

IREPA_FUZZ_TARGET(idx) {
  try {
    (void)irepa::data::parse_idx_u8(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz.idx.gz");
  } catch (const irepa::Error&) {
  }
}
