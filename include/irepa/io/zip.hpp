#pragma once
// ZIP archives as NumPy's .npz files use them: members stored (method 0) or deflated (method 8,
// zlib), ZIP64 extensions wherever a size, offset or count needs them (numpy forces a zip64
// extra field into every local header; 50k x 256 x 256 x 3 samples are 9.8 GB).
//
// ZipReader maps the file and validates the central directory against the file's size before
// anything is read: every offset and length is bounds-checked, encrypted members and other
// methods are refused, a CRC-32 mismatch is an error. Stored members are views of the mapping
// (no copy of a 10 GB array); deflated ones are inflated into memory.
// ZipWriter streams members into a temporary file next to the target and renames it into place
// on finish(), so a crash never leaves a half-written archive under the final name. Entries get
// a fixed 1980-01-01 timestamp, so equal contents give equal bytes.

#include <zlib.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "irepa/core/error.hpp"
#include "irepa/io/files.hpp"
#include "irepa/io/mapped_file.hpp"

namespace irepa::io {

struct ZipEntry {
  std::string name;
  std::uint16_t method = 0;  // 0 stored, 8 deflated
  std::uint16_t flags = 0;
  std::uint32_t crc = 0;
  std::uint64_t compressed = 0, size = 0;
  std::uint64_t local_offset = 0, data_offset = 0;
};

namespace detail {
inline std::uint16_t rd16(const std::byte* p) { return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) | std::to_integer<unsigned>(p[1]) << 8); }
inline std::uint32_t rd32(const std::byte* p) { return rd16(p) | static_cast<std::uint32_t>(rd16(p + 2)) << 16; }
inline std::uint64_t rd64(const std::byte* p) { return rd32(p) | static_cast<std::uint64_t>(rd32(p + 4)) << 32; }
inline void put16(std::string& s, std::uint32_t v) { s += static_cast<char>(v & 0xff), s += static_cast<char>((v >> 8) & 0xff); }
inline void put32(std::string& s, std::uint32_t v) { put16(s, v & 0xffff), put16(s, v >> 16); }
inline void put64(std::string& s, std::uint64_t v) { put32(s, static_cast<std::uint32_t>(v)), put32(s, static_cast<std::uint32_t>(v >> 32)); }

/// CRC-32 of any length (zlib's crc32 takes 32-bit lengths).
inline std::uint32_t crc32_of(std::uint32_t crc, const std::byte* p, std::uint64_t n) {
  while (n > 0) {
    const auto chunk = static_cast<uInt>(std::min<std::uint64_t>(n, 1u << 30));
    crc = static_cast<std::uint32_t>(::crc32(crc, reinterpret_cast<const Bytef*>(p), chunk));
    p += chunk, n -= chunk;
  }
  return crc;
}
}  // namespace detail

class ZipReader {
 public:
  explicit ZipReader(const std::string& path) : path_(path), file_(path, "zip"), bytes_(file_.data(), file_.size()) { parse(); }
  /// An archive in memory (bytes must outlive the reader); name is used in errors.
  ZipReader(std::span<const std::byte> bytes, std::string name) : path_(std::move(name)), bytes_(bytes) { parse(); }

  const std::string& path() const { return path_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const {
    for (const auto& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }

  /// A stored member's bytes, a view of the mapping (its CRC-32 checked once per reader).
  std::span<const std::byte> stored(const ZipEntry& e) const {
    IREPA_CHECK(e.method == 0, "zip: '{}' member '{}' is deflated; extract() it", path_, e.name);
    const std::span<const std::byte> d(bytes_.data() + e.data_offset, static_cast<std::size_t>(e.size));
    check_crc(e, d);
    return d;
  }

  /// A member's bytes: a copy of a stored one, or a deflated one inflated (CRC-32 and size checked).
  std::vector<std::byte> extract(const ZipEntry& e) const {
    if (e.method == 0) {
      const auto d = stored(e);
      return {d.begin(), d.end()};
    }
    // Deflate cannot expand more than ~1032:1; a larger claim is a damaged header, not an allocation to try.
    IREPA_CHECK(e.compressed <= (std::uint64_t{1} << 52) && e.size <= e.compressed * 1032 + 1024, "zip: '{}' member '{}' claims {} bytes from {} compressed ones, more than deflate can give",
                path_, e.name, e.size, e.compressed);
    std::vector<std::byte> out(static_cast<std::size_t>(e.size));
    z_stream zs{};
    IREPA_CHECK(inflateInit2(&zs, -MAX_WBITS) == Z_OK, "zip: cannot start inflating '{}' in '{}'", e.name, path_);
    std::uint64_t in_left = e.compressed, out_done = 0;
    const std::byte* in = bytes_.data() + e.data_offset;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      const auto in_chunk = static_cast<uInt>(std::min<std::uint64_t>(in_left, 1u << 30));
      const auto out_chunk = static_cast<uInt>(std::min<std::uint64_t>(e.size - out_done, 1u << 30));
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in)), zs.avail_in = in_chunk;
      zs.next_out = reinterpret_cast<Bytef*>(out.data() + out_done), zs.avail_out = out_chunk;
      rc = ::inflate(&zs, Z_NO_FLUSH);
      const std::uint64_t used = in_chunk - zs.avail_in, made = out_chunk - zs.avail_out;
      in += used, in_left -= used, out_done += made;
      if (rc == Z_STREAM_END) break;
      if (rc != Z_OK || (used == 0 && made == 0)) {
        inflateEnd(&zs);
        fail("zip: '{}' member '{}' does not inflate to its {} bytes ({} after {} of {} compressed bytes: {})", path_, e.name, e.size,
             out_done, e.compressed - in_left, e.compressed, rc == Z_DATA_ERROR ? "corrupt data" : rc == Z_BUF_ERROR ? "truncated" : "error");
      }
    }
    inflateEnd(&zs);
    IREPA_CHECK(out_done == e.size, "zip: '{}' member '{}' inflates to {} bytes, its header says {}", path_, e.name, out_done, e.size);
    check_crc(e, out);
    return out;
  }

 private:
  void check_crc(const ZipEntry& e, std::span<const std::byte> d) const {
    const std::uint32_t c = detail::crc32_of(0, d.data(), d.size());
    IREPA_CHECK(c == e.crc, "zip: '{}' member '{}' fails its CRC-32 check ({:08x}, header says {:08x}): the file is corrupt", path_, e.name,
                c, e.crc);
  }

  void parse() {
    const std::byte* m = bytes_.data();
    const std::uint64_t n = bytes_.size();
    IREPA_CHECK(n >= 22, "zip: '{}' has {} bytes, too short for a zip archive (truncated, or not an .npz)", path_, n);
    // End of central directory: the last signature within the final 64 KiB + 22 bytes.
    std::uint64_t eocd = n;
    for (std::uint64_t i = n - 22 + 1; i-- > (n > 65557 ? n - 65557 : 0);)
      if (detail::rd32(m + i) == 0x06054b50 && i + 22 + detail::rd16(m + i + 20) == n) {
        eocd = i;
        break;
      }
    IREPA_CHECK(eocd < n, "zip: '{}' has no end-of-central-directory record: it is not a zip archive, or it is truncated", path_);
    std::uint64_t count = detail::rd16(m + eocd + 10), cd_size = detail::rd32(m + eocd + 12), cd_off = detail::rd32(m + eocd + 16);
    IREPA_CHECK(detail::rd16(m + eocd + 4) == 0 && detail::rd16(m + eocd + 6) == 0,
                "zip: '{}' spans several disks; only single-file archives are read", path_);
    if (count == 0xffff || cd_size == 0xffffffff || cd_off == 0xffffffff) {
      IREPA_CHECK(eocd >= 20 && detail::rd32(m + eocd - 20) == 0x07064b50,
                  "zip: '{}' needs a ZIP64 end-of-central-directory locator before offset {}, and has none", path_, eocd);
      const std::uint64_t rec = detail::rd64(m + eocd - 20 + 8);
      IREPA_CHECK(rec + 56 <= eocd - 20 && detail::rd32(m + rec) == 0x06064b50, "zip: '{}' ZIP64 end-of-central-directory record at {} is invalid",
                  path_, rec);
      count = detail::rd64(m + rec + 32), cd_size = detail::rd64(m + rec + 40), cd_off = detail::rd64(m + rec + 48);
    }
    IREPA_CHECK(cd_off <= n && cd_size <= n - cd_off, "zip: '{}' central directory [{}, +{}) lies outside the file of {} bytes", path_, cd_off,
                cd_size, n);
    IREPA_CHECK(count <= cd_size / 46, "zip: '{}' claims {} entries in a central directory of {} bytes", path_, count, cd_size);
    std::uint64_t p = cd_off;
    const std::uint64_t end = cd_off + cd_size;
    for (std::uint64_t i = 0; i < count; ++i) {
      IREPA_CHECK(p + 46 <= end && detail::rd32(m + p) == 0x02014b50, "zip: '{}' central directory entry {} at offset {} is invalid", path_, i, p);
      ZipEntry e;
      e.flags = detail::rd16(m + p + 8);
      e.method = detail::rd16(m + p + 10);
      e.crc = detail::rd32(m + p + 16);
      e.compressed = detail::rd32(m + p + 20), e.size = detail::rd32(m + p + 24);
      const std::uint64_t name_len = detail::rd16(m + p + 28), extra_len = detail::rd16(m + p + 30), comment_len = detail::rd16(m + p + 32);
      e.local_offset = detail::rd32(m + p + 42);
      IREPA_CHECK(p + 46 + name_len + extra_len + comment_len <= end, "zip: '{}' central directory entry {} overruns the directory", path_, i);
      e.name.assign(reinterpret_cast<const char*>(m + p + 46), name_len);
      // ZIP64 extra field: the 64-bit values of the fields that read 0xffffffff, in this order.
      for (std::uint64_t x = p + 46 + name_len; x + 4 <= p + 46 + name_len + extra_len;) {
        const std::uint16_t id = detail::rd16(m + x), len = detail::rd16(m + x + 2);
        IREPA_CHECK(x + 4 + len <= p + 46 + name_len + extra_len, "zip: '{}' entry '{}' has an extra field that overruns its header", path_,
                    e.name);
        if (id == 0x0001) {
          std::uint64_t q = x + 4;
          const auto take = [&](std::uint64_t& v) {
            if (v != 0xffffffff) return;
            IREPA_CHECK(q + 8 <= x + 4 + len, "zip: '{}' entry '{}' has a ZIP64 field too short for its sizes", path_, e.name);
            v = detail::rd64(m + q), q += 8;
          };
          take(e.size), take(e.compressed), take(e.local_offset);
        }
        x += 4 + len;
      }
      IREPA_CHECK(!(e.flags & 1), "zip: '{}' member '{}' is encrypted", path_, e.name);
      IREPA_CHECK(e.method == 0 || e.method == 8, "zip: '{}' member '{}' uses compression method {}; only stored (0) and deflated (8) are read",
                  path_, e.name, e.method);
      IREPA_CHECK(e.method != 0 || e.compressed == e.size, "zip: '{}' stored member '{}' has {} compressed and {} uncompressed bytes", path_,
                  e.name, e.compressed, e.size);
      IREPA_CHECK(e.local_offset <= n && n - e.local_offset >= 30 && detail::rd32(m + e.local_offset) == 0x04034b50,
                  "zip: '{}' member '{}' has no local header at offset {}", path_, e.name, e.local_offset);
      const std::uint64_t lname = detail::rd16(m + e.local_offset + 26), lextra = detail::rd16(m + e.local_offset + 28);
      e.data_offset = e.local_offset + 30 + lname + lextra;
      IREPA_CHECK(e.data_offset <= n && e.compressed <= n - e.data_offset,
                  "zip: '{}' member '{}' needs {} bytes from offset {}, beyond the end of the file ({} bytes): it is truncated", path_, e.name,
                  e.compressed, e.data_offset, n);
      IREPA_CHECK(e.data_offset <= cd_off && e.compressed <= cd_off - e.data_offset,
                  "zip: '{}' member '{}' overlaps the central directory", path_, e.name);
      entries_.push_back(std::move(e));
      p += 46 + name_len + extra_len + comment_len;
    }
  }

  std::string path_;
  MappedFile file_;  // empty for an archive in memory
  std::span<const std::byte> bytes_;
  std::vector<ZipEntry> entries_;
};

/// Streams members into a new archive at path (through an AtomicFile, renamed by finish()).
/// force_zip64 writes the ZIP64 central fields and end records even where the sizes fit in 32
/// bits (archives of any size then take the large-archive path of a reader: tests).
class ZipWriter {
 public:
  explicit ZipWriter(std::string path, bool deflate = false, bool force_zip64 = false)
      : path_(std::move(path)), file_(std::make_unique<AtomicFile>(path_, "zip")), tmp_(file_->temp_path()), deflate_(deflate),
        force_zip64_(force_zip64), f_(file_->handle()) {}
  ZipWriter(const ZipWriter&) = delete;
  ZipWriter& operator=(const ZipWriter&) = delete;

  void begin(const std::string& name) {
    IREPA_CHECK(!open_ && f_, "zip: '{}': begin('{}') while another member is open or after finish()", path_, name);
    IREPA_CHECK(!name.empty() && name.size() < 0xffff, "zip: member name of {} bytes", name.size());
    ZipEntry e;
    e.name = name, e.method = deflate_ ? 8 : 0, e.local_offset = offset_;
    std::string h;
    detail::put32(h, 0x04034b50), detail::put16(h, 45), detail::put16(h, 0), detail::put16(h, e.method);
    detail::put16(h, 0), detail::put16(h, 0x21);  // 1980-01-01 00:00
    detail::put32(h, 0), detail::put32(h, 0xffffffff), detail::put32(h, 0xffffffff);  // crc, sizes: in the zip64 field
    detail::put16(h, static_cast<std::uint32_t>(name.size())), detail::put16(h, 20);
    h += name;
    detail::put16(h, 1), detail::put16(h, 16), detail::put64(h, 0), detail::put64(h, 0);  // zip64: sizes, patched at end()
    put(h.data(), h.size());
    e.data_offset = offset_;
    entries_.push_back(std::move(e));
    open_ = true;
    crc_ = 0;
    if (deflate_) {
      zs_ = z_stream{};
      IREPA_CHECK(deflateInit2(&zs_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK,
                  "zip: cannot start deflating '{}'", name);
    }
  }

  void write(const void* data, std::uint64_t n) {
    IREPA_CHECK(open_, "zip: '{}': write() outside a member", path_);
    ZipEntry& e = entries_.back();
    crc_ = detail::crc32_of(crc_, static_cast<const std::byte*>(data), n);
    e.size += n;
    if (!deflate_) {
      put(data, n);
      return;
    }
    const auto* p = static_cast<const Bytef*>(data);
    while (n > 0) {
      const auto chunk = static_cast<uInt>(std::min<std::uint64_t>(n, 1u << 30));
      zs_.next_in = const_cast<Bytef*>(p), zs_.avail_in = chunk;
      pump(Z_NO_FLUSH);
      p += chunk, n -= chunk;
    }
  }

  void end() {
    IREPA_CHECK(open_, "zip: '{}': end() outside a member", path_);
    if (deflate_) {
      zs_.next_in = nullptr, zs_.avail_in = 0;
      pump(Z_FINISH);
      deflateEnd(&zs_);
    }
    ZipEntry& e = entries_.back();
    e.crc = crc_;
    e.compressed = offset_ - e.data_offset;
    if (!deflate_) e.compressed = e.size;
    // Patch the local header: crc, 32-bit sizes (0xffffffff when they do not fit), zip64 sizes.
    std::string crc, sizes, z64;
    detail::put32(crc, e.crc);
    detail::put32(sizes, e.compressed >= 0xffffffff ? 0xffffffff : static_cast<std::uint32_t>(e.compressed));
    detail::put32(sizes, e.size >= 0xffffffff ? 0xffffffff : static_cast<std::uint32_t>(e.size));
    detail::put64(z64, e.size), detail::put64(z64, e.compressed);
    patch(e.local_offset + 14, crc), patch(e.local_offset + 18, sizes), patch(e.local_offset + 30 + e.name.size() + 4, z64);
    open_ = false;
  }

  /// Writes the central directory, flushes, syncs and renames the archive into place.
  void finish() {
    IREPA_CHECK(!open_ && f_, "zip: '{}': finish() with a member still open, or twice", path_);
    const std::uint64_t cd_off = offset_;
    for (const auto& e : entries_) {
      const bool big_size = force_zip64_ || e.size >= 0xffffffff || e.compressed >= 0xffffffff;
      const bool big_off = force_zip64_ || e.local_offset >= 0xffffffff;
      std::string extra;
      if (big_size) detail::put64(extra, e.size), detail::put64(extra, e.compressed);
      if (big_off) detail::put64(extra, e.local_offset);
      std::string h;
      detail::put32(h, 0x02014b50), detail::put16(h, 45), detail::put16(h, 45), detail::put16(h, 0), detail::put16(h, e.method);
      detail::put16(h, 0), detail::put16(h, 0x21), detail::put32(h, e.crc);
      detail::put32(h, big_size ? 0xffffffff : static_cast<std::uint32_t>(e.compressed));
      detail::put32(h, big_size ? 0xffffffff : static_cast<std::uint32_t>(e.size));
      detail::put16(h, static_cast<std::uint32_t>(e.name.size())), detail::put16(h, extra.empty() ? 0 : static_cast<std::uint32_t>(extra.size() + 4));
      detail::put16(h, 0), detail::put16(h, 0), detail::put16(h, 0), detail::put32(h, 0600u << 16);
      detail::put32(h, big_off ? 0xffffffff : static_cast<std::uint32_t>(e.local_offset));
      h += e.name;
      if (!extra.empty()) detail::put16(h, 1), detail::put16(h, static_cast<std::uint32_t>(extra.size())), h += extra;
      put(h.data(), h.size());
    }
    const std::uint64_t cd_size = offset_ - cd_off, count = entries_.size();
    std::string t;
    if (force_zip64_ || count >= 0xffff || cd_size >= 0xffffffff || cd_off >= 0xffffffff) {
      const std::uint64_t rec = offset_;
      detail::put32(t, 0x06064b50), detail::put64(t, 44), detail::put16(t, 45), detail::put16(t, 45), detail::put32(t, 0), detail::put32(t, 0);
      detail::put64(t, count), detail::put64(t, count), detail::put64(t, cd_size), detail::put64(t, cd_off);
      detail::put32(t, 0x07064b50), detail::put32(t, 0), detail::put64(t, rec), detail::put32(t, 1);
    }
    const bool z = !t.empty();
    detail::put32(t, 0x06054b50), detail::put16(t, 0), detail::put16(t, 0);
    detail::put16(t, z ? 0xffff : static_cast<std::uint32_t>(count)), detail::put16(t, z ? 0xffff : static_cast<std::uint32_t>(count));
    detail::put32(t, z ? 0xffffffff : static_cast<std::uint32_t>(cd_size)), detail::put32(t, z ? 0xffffffff : static_cast<std::uint32_t>(cd_off));
    detail::put16(t, 0);
    put(t.data(), t.size());
    f_ = nullptr;
    file_->commit();
    file_.reset();
  }

 private:
  void put(const void* p, std::uint64_t n) {
    if (n && std::fwrite(p, 1, static_cast<std::size_t>(n), f_) != n) fail("zip: writing '{}' failed: {}", tmp_, std::strerror(errno));
    offset_ += n;
  }
  void patch(std::uint64_t at, const std::string& bytes) {
    IREPA_CHECK(std::fflush(f_) == 0 && ::pwrite(fileno(f_), bytes.data(), bytes.size(), static_cast<off_t>(at)) == static_cast<ssize_t>(bytes.size()),
                "zip: patching a header of '{}' failed: {}", tmp_, std::strerror(errno));
  }
  void pump(int flush) {
    unsigned char buf[1 << 16];
    int rc = Z_OK;
    do {
      zs_.next_out = buf, zs_.avail_out = sizeof buf;
      rc = ::deflate(&zs_, flush);
      IREPA_CHECK(rc != Z_STREAM_ERROR, "zip: deflating into '{}' failed", tmp_);
      put(buf, sizeof buf - zs_.avail_out);
    } while (zs_.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
  }

  std::string path_;
  std::unique_ptr<AtomicFile> file_;  // null after finish()
  std::string tmp_;
  bool deflate_ = false, force_zip64_ = false, open_ = false;
  std::FILE* f_ = nullptr;
  std::uint64_t offset_ = 0;
  std::uint32_t crc_ = 0;
  z_stream zs_{};
  std::vector<ZipEntry> entries_;
};

}  // namespace irepa::io
