#pragma once
// TFRecord framing, the container of TensorBoard's event files: each record is
//   uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes | data | uint32 masked CRC-32C of data.
// The CRC is Castagnoli's (polynomial 0x82F63B78, reflected), masked as TensorFlow masks it so
// that a CRC stored inside CRC'd data does not weaken the check: rotate right by 15, add 0xa282ead8.
// No Debian package ships CRC-32C for C++ (Abseil's is newer than Debian 12's), hence the table.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/error.hpp"

namespace irepa::io {

namespace detail {
inline constexpr std::array<std::uint32_t, 256> kCrc32cTable = [] {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}();
}  // namespace detail

/// CRC-32C of bytes (crc32c("123456789") = 0xE3069283).
inline std::uint32_t crc32c(std::string_view bytes) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (const char ch : bytes) c = detail::kCrc32cTable[(c ^ static_cast<std::uint8_t>(ch)) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/// TensorFlow's masked CRC-32C.
inline std::uint32_t masked_crc32c(std::string_view bytes) {
  const std::uint32_t c = crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

namespace detail {
inline void put_le(std::string& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}
inline std::uint64_t get_le(std::string_view in, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t{static_cast<std::uint8_t>(in[at + static_cast<std::size_t>(i)])} << (8 * i);
  return v;
}
}  // namespace detail

/// One framed record: length, its CRC, data, its CRC.
inline std::string tfrecord_frame(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  detail::put_le(out, data.size(), 8);
  detail::put_le(out, masked_crc32c(std::string_view(out.data(), 8)), 4);
  out.append(data);
  detail::put_le(out, masked_crc32c(data), 4);
  return out;
}

/// The records of a TFRecord stream, as views into bytes; every length and CRC is checked. A
/// final record cut short (a writer killed mid-record) is an error unless allow_truncated_tail,
/// which TensorBoard's reader also tolerates. `what` names the stream in errors.
inline std::vector<std::string_view> read_tfrecords(std::string_view bytes, std::string_view what, bool allow_truncated_tail = false) {
  std::vector<std::string_view> records;
  std::size_t at = 0;
  while (at < bytes.size()) {
    const std::size_t left = bytes.size() - at;
    if (left < 12) {
      if (allow_truncated_tail) break;
      fail("{}: record {} at byte {} is cut short: {} bytes left, a record header takes 12", what, records.size(), at, left);
    }
    const std::uint64_t len = detail::get_le(bytes, at, 8);
    const auto len_crc = static_cast<std::uint32_t>(detail::get_le(bytes, at + 8, 4));
    if (masked_crc32c(bytes.substr(at, 8)) != len_crc)
      fail("{}: record {} at byte {}: the length's CRC is {:#010x}, expected {:#010x} (a damaged file)", what, records.size(), at, len_crc,
           masked_crc32c(bytes.substr(at, 8)));
    if (len > left - 12 || left - 12 - len < 4) {
      if (allow_truncated_tail) break;
      fail("{}: record {} at byte {} claims {} bytes of data, but {} bytes are left (it needs 4 more for its CRC)", what, records.size(), at,
           len, left - 12);
    }
    const std::string_view data = bytes.substr(at + 12, static_cast<std::size_t>(len));
    const auto data_crc = static_cast<std::uint32_t>(detail::get_le(bytes, at + 12 + data.size(), 4));
    if (masked_crc32c(data) != data_crc)
      fail("{}: record {} at byte {}: the data's CRC is {:#010x}, expected {:#010x} (a damaged file)", what, records.size(), at, data_crc,
           masked_crc32c(data));
    records.push_back(data);
    at += 16 + data.size();
  }
  return records;
}

}  // namespace irepa::io
