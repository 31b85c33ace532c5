// Fuzz harness: any bytes as a PNG mask or image file through io::read_png (the stream reader
// the metrics' masks use; io::decode_rgb is fuzzed by image_decode). Only irepa::Error may come out.
#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "fuzz_target.hpp"
#include "irepa/io/png.hpp"

IREPA_FUZZ_TARGET(png) {
  if (size == 0) return;  // fmemopen refuses an empty buffer
  std::FILE* f = ::fmemopen(const_cast<std::uint8_t*>(data), size, "rb");
  if (!f) return;
  try {
    (void)irepa::io::read_png(f, "fuzz.png");
  } catch (const irepa::Error&) {
  }
  std::fclose(f);
}
