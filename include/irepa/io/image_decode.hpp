#pragma once
// Encoded images (JPEG through libjpeg-turbo's TurboJPEG API, PNG through libpng) to RGB pixels
// [H, W, 3] uint8, as PIL's Image.open(f).convert("RGB") gives them:
//  - JPEG with TurboJPEG's defaults (accurate integer DCT, fancy upsampling: Pillow's decoder
//    settings); grey replicated to RGB; CMYK / YCCK decoded to CMYK, taken as Adobe-inverted
//    (what Photoshop writes and Pillow undoes) and converted with Pillow's cmyk2rgb formula.
//  - PNG of any bit depth and colour type: palettes expanded, grey replicated, alpha dropped
//    (convert("RGB") drops it too), 16-bit colour reduced to its high byte; 16-bit grey (Pillow's
//    mode "I") clipped to 0..255, as Pillow converts it.
// The format is sniffed from the first bytes. A truncated or corrupt file, a warning from the
// decoder included, is an irepa::Error naming the file; so is an image above Pillow's
// decompression-bomb limit (2 x 89,478,485 pixels). Bytes come from memory (an Arrow column) or
// a file read whole.

#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/io/files.hpp"
#include "irepa/io/png.hpp"

namespace irepa::io {

enum class ImageFormat { Jpeg, Png, Unknown };

inline ImageFormat sniff_image(std::span<const std::uint8_t> b) {
  if (b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return ImageFormat::Jpeg;
  static constexpr std::uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (b.size() >= 8 && std::memcmp(b.data(), png_sig, 8) == 0) return ImageFormat::Png;
  return ImageFormat::Unknown;
}

namespace detail {
struct TjHandle {
  tjhandle h = tjInitDecompress();
  ~TjHandle() {
    if (h) tjDestroy(h);
  }
};

/// Pillow's cmyk2rgb on Adobe-inverted CMYK: nk = 255 - k, out = nk - c nk / 255 (rounded as MULDIV255).
inline std::uint8_t cmyk_channel(int c, int k) {
  const int nk = 255 - k, t = c * nk + 128;
  return static_cast<std::uint8_t>(std::clamp(nk - (((t >> 8) + t) >> 8), 0, 255));
}

inline Tensor<std::uint8_t> decode_jpeg(std::span<const std::uint8_t> b, const std::string& what) {
  TjHandle tj;
  IREPA_CHECK(tj.h != nullptr, "JPEG '{}': TurboJPEG could not start: {}", what, tjGetErrorStr2(nullptr));
  int w = 0, h = 0, sub = 0, cs = 0;
  auto* data = const_cast<unsigned char*>(b.data());
  const auto size = static_cast<unsigned long>(b.size());
  IREPA_CHECK(tjDecompressHeader3(tj.h, data, size, &w, &h, &sub, &cs) == 0, "JPEG '{}' is corrupt: {}", what, tjGetErrorStr2(tj.h));
  check_pixels(h, w, what);
  const bool cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
  std::vector<std::uint8_t> cmyk_px;
  Tensor<std::uint8_t> out(Shape{h, w, 3});
  unsigned char* dst = out.data();
  if (cmyk) {
    cmyk_px.resize(static_cast<std::size_t>(h) * static_cast<std::size_t>(w) * 4);
    dst = cmyk_px.data();
  }
  // Flags 0: accurate DCT and fancy upsampling, as Pillow. A warning (a truncated file) is refused too.
  const int rc = tjDecompress2(tj.h, data, size, dst, w, 0, h, cmyk ? TJPF_CMYK : TJPF_RGB, 0);
  IREPA_CHECK(rc == 0, "JPEG '{}' is corrupt or truncated: {}", what, tjGetErrorStr2(tj.h));
  if (cmyk)
    for (std::int64_t p = 0; p < static_cast<std::int64_t>(h) * w; ++p) {
      const std::uint8_t* q = cmyk_px.data() + p * 4;
      const int k = 255 - q[3];
      for (int c = 0; c < 3; ++c) out.data()[p * 3 + c] = cmyk_channel(255 - q[c], k);
    }
  return out;
}

struct PngReader {
  std::span<const std::uint8_t> bytes;
  std::size_t at = 0;
  std::string error;
};
inline void png_read_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (r->bytes.size() - r->at < n) png_error(png, "unexpected end of data (truncated)");
  std::memcpy(out, r->bytes.data() + r->at, n);
  r->at += n;
}
inline void png_fail(png_structp png, png_const_charp msg) {
  auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
  if (r) r->error = msg;
  png_longjmp(png, 1);
}
inline void png_quiet(png_structp, png_const_charp) {}

inline Tensor<std::uint8_t> decode_png(std::span<const std::uint8_t> b, const std::string& what) {
  PngReader rd{b, 0, {}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &rd, png_fail, png_quiet);
  IREPA_CHECK(png != nullptr, "PNG '{}': libpng could not start", what);
  png_infop info = png_create_info_struct(png);
  Tensor<std::uint8_t> out;
  std::vector<png_bytep> rows;
  std::vector<std::uint8_t> raw;  // 16-bit grey; declared before setjmp, so a longjmp skips no destructor
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    fail("PNG '{}' is corrupt or truncated: {}", what, rd.error);
  }
  png_set_read_fn(png, &rd, png_read_memory);
  png_read_info(png, info);
  const auto W = static_cast<std::int64_t>(png_get_image_width(png, info)), H = static_cast<std::int64_t>(png_get_image_height(png, info));
  if (H <= 0 || W <= 0 || H > kMaxImagePixels / W) {
    png_destroy_read_struct(&png, &info, nullptr);
    check_pixels(H, W, what);
  }
  const bool grey16 = png_get_color_type(png, info) == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) == 16;
  if (grey16) {  // Pillow opens it as mode "I" and clips to 0..255 on the way to RGB
    png_set_strip_alpha(png);
    png_read_update_info(png, info);
    raw.resize(static_cast<std::size_t>(H * W * 2));
    rows.resize(static_cast<std::size_t>(H));
    for (std::int64_t r = 0; r < H; ++r) rows[static_cast<std::size_t>(r)] = raw.data() + r * W * 2;
    png_read_image(png, rows.data());
    png_read_end(png, nullptr);
    png_destroy_read_struct(&png, &info, nullptr);
    out = Tensor<std::uint8_t>(Shape{H, W, 3});
    for (std::int64_t p = 0; p < H * W; ++p) {
      const int v = raw[static_cast<std::size_t>(2 * p)] << 8 | raw[static_cast<std::size_t>(2 * p + 1)];  // big-endian in the file
      const auto c = static_cast<std::uint8_t>(std::min(v, 255));
      out[p * 3] = out[p * 3 + 1] = out[p * 3 + 2] = c;
    }
    return out;
  }
  png_set_expand(png);  // palette -> RGB, grey < 8 bits -> 8 bits, tRNS -> alpha
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  png_read_update_info(png, info);
  if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8) {
    png_destroy_read_struct(&png, &info, nullptr);
    fail("PNG '{}': libpng gave {} channels of {} bits, expected 8-bit RGB", what, png_get_channels(png, info), png_get_bit_depth(png, info));
  }
  out = Tensor<std::uint8_t>(Shape{H, W, 3});
  rows.resize(static_cast<std::size_t>(H));
  for (std::int64_t r = 0; r < H; ++r) rows[static_cast<std::size_t>(r)] = out.data() + r * W * 3;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return out;
}
}  // namespace detail

/// Encoded JPEG or PNG bytes -> RGB [H, W, 3]; `what` names the source in errors.
inline Tensor<std::uint8_t> decode_rgb(std::span<const std::uint8_t> bytes, const std::string& what) {
  switch (sniff_image(bytes)) {
    case ImageFormat::Jpeg:
      return detail::decode_jpeg(bytes, what);
    case ImageFormat::Png:
      return detail::decode_png(bytes, what);
    default:
      fail("image '{}' ({} bytes) is neither JPEG nor PNG (the formats read)", what, bytes.size());
  }
}

/// A whole file's bytes (only regular files: a FIFO or a folder is refused, not waited on).
inline std::vector<std::uint8_t> read_file_bytes(const std::string& path) {
  const std::string b = read_regular_file(path, "image", std::size_t{1} << 32);
  return {b.begin(), b.end()};
}

/// An image file (JPEG or PNG) -> RGB [H, W, 3].
inline Tensor<std::uint8_t> read_image_rgb(const std::string& path) {
  const auto b = read_file_bytes(path);
  return decode_rgb(b, path);
}

}  // namespace irepa::io
