#pragma once
// The idx format of MNIST and Fashion-MNIST (gzip-compressed, read through zlib): a big-endian
// header (two zero bytes, an element-type code, the number of dimensions, then each dimension as
// a 32-bit integer) followed by the elements. Only unsigned bytes (type 0x08) are used by the
// datasets. Truncated, corrupt or mis-sized files are errors naming the file and what was wrong.

#include <zlib.h>

#include <string>
#include <vector>

#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::data {

/// Reads a whole .gz (or plain) file through zlib.
inline std::vector<std::uint8_t> read_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  IREPA_CHECK(f != nullptr, "read_gz: cannot open '{}'", path);
  std::vector<std::uint8_t> out;
  std::vector<std::uint8_t> buf(1 << 20);
  for (;;) {
    const int n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int err = 0;
      const std::string msg = gzerror(f, &err);
      gzclose(f);
      fail("read_gz: '{}' is corrupt or truncated: {}", path, msg);
    }
    if (n == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  // zlib reports a stream cut short only as an error at close or as a missing end; check both.
  int err = 0;
  gzerror(f, &err);
  const int close = gzclose(f);
  IREPA_CHECK(err == Z_OK && close == Z_OK, "read_gz: '{}' is corrupt or truncated (zlib error {})", path,
              err != Z_OK ? err : close);
  return out;
}

/// An idx file of unsigned bytes -> uint8 tensor of its dimensions.
inline Tensor<std::uint8_t> read_idx_u8(const std::string& path) {
  const std::vector<std::uint8_t> b = read_gz(path);
  IREPA_CHECK(b.size() >= 4 && b[0] == 0 && b[1] == 0, "read_idx: '{}' does not start with an idx header (00 00 type dims)", path);
  IREPA_CHECK(b[2] == 0x08, "read_idx: '{}' holds element type 0x{:02x}, expected 0x08 (unsigned bytes)", path, b[2]);
  const int nd = b[3];
  IREPA_CHECK(nd >= 1 && nd <= 4 && b.size() >= 4 + 4 * static_cast<std::size_t>(nd),
              "read_idx: '{}' has {} dimensions or a truncated header", path, nd);
  std::vector<std::int64_t> dims;
  std::int64_t count = 1;
  for (int i = 0; i < nd; ++i) {
    const std::uint8_t* p = b.data() + 4 + 4 * i;
    dims.push_back(static_cast<std::int64_t>(p[0]) << 24 | static_cast<std::int64_t>(p[1]) << 16 |
                   static_cast<std::int64_t>(p[2]) << 8 | p[3]);
    count *= dims.back();
  }
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(nd);
  IREPA_CHECK(b.size() - header == static_cast<std::size_t>(count),
              "read_idx: '{}' declares {} elements but holds {} bytes of data", path, count, b.size() - header);
  Tensor<std::uint8_t> t{Shape(dims)};
  std::copy(b.begin() + static_cast<std::ptrdiff_t>(header), b.end(), t.data());
  return t;
}

}  // namespace irepa::data
