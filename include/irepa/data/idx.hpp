#pragma once
// The idx format of MNIST and Fashion-MNIST (gzip-compressed, or plain): a big-endian header
// (two zero bytes, an element-type code, the number of dimensions, then each dimension as a
// 32-bit integer) followed by the elements. Only unsigned bytes (type 0x08) are used by the
// datasets. The header's claim is checked before anything is allocated (its product, and what a
// file of this size can inflate to), and the data are inflated only up to that claim: a
// decompression bomb stops one byte past it. Truncated, corrupt or mis-sized files are errors
// naming the file and what was wrong.

#include <zlib.h>

#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "irepa/core/checked.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/io/mapped_file.hpp"

namespace irepa::data {

/// Decompressed bytes of a gzip stream (one or more members) held in memory, or the bytes
/// themselves when they are not gzip (as gzread passes plain files through), read on demand.
class GzStream {
 public:
  /// deflate never inflates more than 1032 bytes from one.
  static constexpr std::int64_t kMaxRatio = 1032;

  GzStream(std::span<const std::byte> in, std::string where) : in_(in), where_(std::move(where)) {
    gzip_ = in.size() >= 2 && std::to_integer<int>(in[0]) == 0x1f && std::to_integer<int>(in[1]) == 0x8b;
    if (gzip_) {
      zs_.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
      zs_.avail_in = static_cast<uInt>(std::min<std::size_t>(in.size(), UINT32_MAX));
      IREPA_CHECK(inflateInit2(&zs_, 15 + 16) == Z_OK, "idx: '{}': zlib could not start", where_);
      open_ = true;
    }
  }
  GzStream(const GzStream&) = delete;
  GzStream& operator=(const GzStream&) = delete;
  ~GzStream() {
    if (open_) inflateEnd(&zs_);
  }

  /// The most bytes the input could decompress to.
  std::int64_t max_output() const {
    const auto n = static_cast<std::int64_t>(in_.size());
    return gzip_ ? checked_mul(n, kMaxRatio, "idx") : n;
  }

  /// Up to n decompressed bytes into out; fewer only at the end of the data.
  std::size_t read(std::uint8_t* out, std::size_t n) {
    if (!gzip_) {
      const std::size_t k = std::min(n, in_.size() - pos_);
      if (k) std::memcpy(out, in_.data() + pos_, k);
      pos_ += k;
      return k;
    }
    std::size_t got = 0;
    while (got < n && !done_) {
      refill();
      zs_.next_out = out + got;
      zs_.avail_out = static_cast<uInt>(std::min<std::size_t>(n - got, UINT32_MAX));
      const uInt before = zs_.avail_out;
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      got += before - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        // Another gzip member may follow (as gzread reads them); anything else ends the data.
        const std::size_t at = consumed();
        if (in_.size() - at >= 2 && std::to_integer<int>(in_[at]) == 0x1f && std::to_integer<int>(in_[at + 1]) == 0x8b) {
          IREPA_CHECK(inflateReset(&zs_) == Z_OK, "idx: '{}': zlib could not restart", where_);
        } else {
          done_ = true;
        }
        continue;
      }
      if (rc == Z_BUF_ERROR && zs_.avail_in == 0 && consumed() >= in_.size())
        fail("idx: '{}' is truncated: the gzip stream ends after {} compressed bytes without its end", where_, in_.size());
      IREPA_CHECK(rc == Z_OK || rc == Z_BUF_ERROR, "idx: '{}' is corrupt: zlib says {}", where_, zs_.msg ? zs_.msg : "error");
    }
    return got;
  }

 private:
  std::size_t consumed() const { return static_cast<std::size_t>(reinterpret_cast<const std::byte*>(zs_.next_in) - in_.data()); }
  void refill() {  // inputs over 4 GiB are fed in pieces
    if (zs_.avail_in == 0) zs_.avail_in = static_cast<uInt>(std::min<std::size_t>(in_.size() - consumed(), UINT32_MAX));
  }
  std::span<const std::byte> in_;
  std::string where_;
  z_stream zs_{};
  bool gzip_ = false, open_ = false, done_ = false;
  std::size_t pos_ = 0;
};

/// An idx image of unsigned bytes (gzip or plain, in memory) -> uint8 tensor of its dimensions.
inline Tensor<std::uint8_t> parse_idx_u8(std::span<const std::byte> bytes, const std::string& where) {
  GzStream in(bytes, where);
  std::uint8_t head[4 + 4 * 4] = {};
  IREPA_CHECK(in.read(head, 4) == 4 && head[0] == 0 && head[1] == 0,
              "read_idx: '{}' does not start with an idx header (00 00 type dims)", where);
  IREPA_CHECK(head[2] == 0x08, "read_idx: '{}' holds element type 0x{:02x}, expected 0x08 (unsigned bytes)", where, head[2]);
  const int nd = head[3];
  IREPA_CHECK(nd >= 1 && nd <= 4, "read_idx: '{}' has {} dimensions, expected 1 to 4", where, nd);
  IREPA_CHECK(in.read(head + 4, 4 * static_cast<std::size_t>(nd)) == 4 * static_cast<std::size_t>(nd),
              "read_idx: '{}' is truncated in its header", where);
  std::vector<std::int64_t> dims;
  for (int i = 0; i < nd; ++i) {
    const std::uint8_t* p = head + 4 + 4 * i;
    dims.push_back(static_cast<std::int64_t>(p[0]) << 24 | static_cast<std::int64_t>(p[1]) << 16 |
                   static_cast<std::int64_t>(p[2]) << 8 | p[3]);
  }
  const std::int64_t count = checked_numel(dims, fmt::format("read_idx: '{}'", where));
  IREPA_CHECK(count <= in.max_output(), "read_idx: '{}' declares {} elements, more than its {} bytes can hold", where, count, bytes.size());
  Tensor<std::uint8_t> t{Shape(dims)};
  const std::size_t got = in.read(t.data(), static_cast<std::size_t>(count));
  IREPA_CHECK(got == static_cast<std::size_t>(count), "read_idx: '{}' declares {} elements but holds {} bytes of data", where, count, got);
  std::uint8_t extra = 0;
  IREPA_CHECK(in.read(&extra, 1) == 0, "read_idx: '{}' declares {} elements but holds more data than that", where, count);
  return t;
}

/// An idx file of unsigned bytes (a regular file, gzip or plain) -> uint8 tensor of its dimensions.
inline Tensor<std::uint8_t> read_idx_u8(const std::string& path) {
  const io::MappedFile f(path, "read_idx");
  return parse_idx_u8({f.data(), f.size()}, path);
}

}  // namespace irepa::data
