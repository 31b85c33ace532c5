#pragma once
// PNG files through libpng: 8-bit grey, grey with palette indices, and RGB images.
//  - read_png: one PNG -> uint8 [H, W] (grey, 1/2/4-bit grey expanded to 0..255, or palette
//    indices as stored) or [H, W, 3] (RGB); other formats (16-bit, alpha) are an error that
//    names them. The PIL mode it corresponds to is returned too ("L", "1", "P", "RGB"), since PIL
//    resizes "1" and "P" images with nearest neighbours.
//  - encode_png: uint8 [H, W] or [H, W, 3] -> the PNG's bytes (sample grids in TensorBoard);
//    write_png: the same, written to a temporary file and renamed.
// Needs PNG::PNG (libpng-dev), which irepa::irepa links.

#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>
#include <unistd.h>

#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/io/files.hpp"

namespace irepa::io {

/// Pillow raises DecompressionBombError above twice its MAX_IMAGE_PIXELS.
inline constexpr std::int64_t kMaxImagePixels = 2 * 89478485;

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
/// An image's claimed size, checked before its pixels are allocated.
inline void check_pixels(std::int64_t H, std::int64_t W, const std::string& what) {
  IREPA_CHECK(H > 0 && W > 0, "image '{}' has size {}x{}", what, W, H);
  IREPA_CHECK(H <= kMaxImagePixels / W, "image '{}' has {}x{} pixels, more than the {} Pillow refuses (a decompression bomb?)", what, W, H,
              kMaxImagePixels);
}
}  // namespace detail

/// A PNG from an open stream (a file, or fmemopen'd bytes); `path` names it in errors.
inline PngImage read_png(std::FILE* stream, const std::string& path) {
  unsigned char sig[8];
  IREPA_CHECK(std::fread(sig, 1, 8, stream) == 8 && png_sig_cmp(sig, 0, 8) == 0, "read_png: '{}' is not a PNG file", path);
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
  png_init_io(png, stream);
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  const int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  const std::int64_t H = png_get_image_height(png, info), W = png_get_image_width(png, info);
  if (H <= 0 || W <= 0 || H > kMaxImagePixels / W) {
    png_destroy_read_struct(&png, &info, nullptr);
    detail::check_pixels(H, W, path);
  }
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

/// A PNG file (a regular file: a FIFO or a folder is refused, not waited on).
inline PngImage read_png(const std::string& path) {
  detail::PngFile file;
  const RegularFile rf = open_regular(path, "read_png");
  file.f = ::fdopen(rf.fd, "rb");
  if (!file.f) ::close(rf.fd);
  IREPA_CHECK(file.f != nullptr, "read_png: cannot open '{}': {}", path, std::strerror(errno));
  return read_png(file.f, path);
}

/// pixels [H, W] (grey) or [H, W, 3] (RGB) encoded as a PNG in memory; `what` names the caller in errors.
inline std::string encode_png(ConstView<std::uint8_t> pixels, std::string_view what = "encode_png") {
  IREPA_CHECK((pixels.rank() == 2 || (pixels.rank() == 3 && pixels.size(2) == 3)) && pixels.is_contiguous(),
              "{}: pixels have shape {}, expected contiguous [H, W] or [H, W, 3]", what, pixels.shape().str());
  const std::int64_t H = pixels.size(0), W = pixels.size(1), C = pixels.rank() == 3 ? 3 : 1;
  detail::check_pixels(H, W, std::string(what));
  std::string out, err;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, detail::png_error_to_longjmp, detail::png_warning_ignore);
  png_infop info = png_create_info_struct(png);
  std::vector<png_bytep> rows(static_cast<std::size_t>(H));
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    fail("{}: encoding a {}x{} PNG failed: {}", what, W, H, err);
  }
  const auto append = [](png_structp p, png_bytep data, png_size_t n) {
    static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<const char*>(data), n);
  };
  png_set_write_fn(png, &out, append, nullptr);
  png_set_IHDR(png, info, static_cast<png_uint_32>(W), static_cast<png_uint_32>(H), 8,
               C == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  for (std::int64_t r = 0; r < H; ++r) rows[static_cast<std::size_t>(r)] = const_cast<png_bytep>(pixels.data() + r * W * C);
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

/// pixels [H, W] (grey) or [H, W, 3] (RGB) as a PNG file; atomic (temporary file, then rename).
inline void write_png(const std::string& path, ConstView<std::uint8_t> pixels) {
  write_file_atomic(path, encode_png(pixels, "write_png"), "write_png");
}

}  // namespace irepa::io
