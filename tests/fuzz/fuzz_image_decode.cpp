// Fuzz harness: any bytes as an encoded image (io::decode_rgb: JPEG or PNG), then ADM's
// center crop of what decodes. Only irepa::Error may come out.
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"

#include "irepa/io/image_decode.hpp"
#include "irepa/io/pil_resize.hpp"

IREPA_FUZZ_TARGET(image_decode) {
  try {
    const auto rgb = irepa::io::decode_rgb(std::span<const std::uint8_t>(data, size), "fuzz");
    if (rgb.size(0) * rgb.size(1) <= 1 << 20) (void)irepa::io::center_crop_arr(rgb.cview(), 16);
  } catch (const irepa::Error&) {
  }
}
