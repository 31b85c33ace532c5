#pragma once
// PNG files through libpng: 8-bit grey, grey with palette indices, and RGB images.
//  - read_png: one PNG -> uint8 [H, W] (grey, 1/2/4-bit grey expanded to 0..255, or palette
//    indices as stored) or [H, W, 3] (RGB); other formats (16-bit, alpha) are an error that
//    names them. The PIL mode it corresponds to is returned too ("L", "1", "P", "RGB"), since PIL
//    resizes "1" and "P" images with nearest neighbours.
//  - write_png: uint8 [H, W] or [H, W, 3], written to a temporary file and renamed.
// Needs PNG::PNG (libpng-dev), which irepa::irepa links.

#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <unistd.h>

#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::io {

struct PngImage {
  Tensor<std::uint8_t> pixels;  // [H, W] or [H, W, 3]
  std::string mode;             // PIL's name: "L", "1", "P" or "RGB"
};

namespace detail {
struct PngFile {
  std::FILE* f = nullptr;
  ~PngFile() {
    if (f) std::fclose(f);
  }
};
inline void png_error_to_longjmp(png_structp png, png_const_charp msg) {
  auto* buf = static_cast<std::string*>(png_get_error_ptr(png));
  if (buf) *buf = msg;
  png_longjmp(png, 1);
}
inline void png_warning_ignore(png_structp, png_const_charp) {}
}  // namespace detail

inline PngImage read_png(const std::string& path) {
  detail::PngFile file;
  file.f = std::fopen(path.c_str(), "rb");
  IREPA_CHECK(file.f != nullptr, "read_png: cannot open '{}': {}", path, std::strerror(errno));
  unsigned char sig[8];
  IREPA_CHECK(std::fread(sig, 1, 8, file.f) == 8 && png_sig_cmp(sig, 0, 8) == 0, "read_png: '{}' is not a PNG file", path);
  std::string err;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, detail::png_error_to_longjmp, detail::png_warning_ignore);
  IREPA_CHECK(png != nullptr, "read_png: libpng could not start for '{}'", path);
  png_infop info = png_create_info_struct(png);
  PngImage out;
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    fail("read_png: '{}' is corrupt or truncated: {}", path, err);
  }
  png_init_io(png, file.f);
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  const int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  const std::int64_t H = png_get_image_height(png, info), W = png_get_image_width(png, info);
  std::int64_t C = 1;
  if (color == PNG_COLOR_TYPE_GRAY && depth <= 8) {
    out.mode = depth == 1 ? "1" : "L";
    if (depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  } else if (color == PNG_COLOR_TYPE_PALETTE) {
    out.mode = "P";
    if (depth < 8) png_set_packing(png);  // one index per byte, values unchanged
  } else if (color == PNG_COLOR_TYPE_RGB && depth == 8) {
    out.mode = "RGB";
    C = 3;
  } else {
    const char* names[] = {"grey", "?", "RGB", "palette", "grey+alpha", "?", "RGBA"};
    const std::string name = color >= 0 && color <= 6 ? names[color] : "unknown";
    png_destroy_read_struct(&png, &info, nullptr);
    fail("read_png: '{}' is {}-bit {}; expected 8-bit grey, 1/2/4-bit grey, palette or 8-bit RGB", path, depth, name);
  }
  png_read_update_info(png, info);
  out.pixels = C == 1 ? Tensor<std::uint8_t>(Shape{H, W}) : Tensor<std::uint8_t>(Shape{H, W, C});
  rows.resize(static_cast<std::size_t>(H));
  for (std::int64_t r = 0; r < H; ++r) rows[static_cast<std::size_t>(r)] = out.pixels.data() + r * W * C;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return out;
}

/// pixels [H, W] (grey) or [H, W, 3] (RGB); atomic (temporary file, then rename).
inline void write_png(const std::string& path, ConstView<std::uint8_t> pixels) {
  IREPA_CHECK((pixels.rank() == 2 || (pixels.rank() == 3 && pixels.size(2) == 3)) && pixels.is_contiguous(),
              "write_png: pixels have shape {}, expected contiguous [H, W] or [H, W, 3]", pixels.shape().str());
  const std::int64_t H = pixels.size(0), W = pixels.size(1), C = pixels.rank() == 3 ? 3 : 1;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  detail::PngFile file;
  file.f = std::fopen(tmp.c_str(), "wb");
  IREPA_CHECK(file.f != nullptr, "write_png: cannot create '{}': {}", tmp, std::strerror(errno));
  std::string err;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, detail::png_error_to_longjmp, detail::png_warning_ignore);
  png_infop info = png_create_info_struct(png);
  std::vector<png_bytep> rows(static_cast<std::size_t>(H));
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::remove(tmp.c_str());
    fail("write_png: writing '{}' failed: {}", path, err);
  }
  png_init_io(png, file.f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(W), static_cast<png_uint_32>(H), 8,
               C == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  for (std::int64_t r = 0; r < H; ++r) rows[static_cast<std::size_t>(r)] = const_cast<png_bytep>(pixels.data() + r * W * C);
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  const bool ok = std::fflush(file.f) == 0 && ::fsync(::fileno(file.f)) == 0;
  std::fclose(file.f);
  file.f = nullptr;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail("write_png: could not write '{}': {}", path, std::strerror(errno));
  }
}

}  // namespace irepa::io
