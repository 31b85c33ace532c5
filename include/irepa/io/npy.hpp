#pragma once
// NumPy .npy files (format versions 1, 2, 3), memory-mapped, C order, little-endian:
// <f8 <f4 <f2 |u1 |b1 <i8 <i4. Large feature files ([N, T, D], tens of GB) are read through
// views of the mapping, a batch at a time, never loaded whole.

#include <cstdint>
#include <cstring>
#include <string_view>
#include <string>
#include <vector>

#include <unistd.h>

#include "irepa/core/checked.hpp"
#include "irepa/core/dtype.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/shape.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/io/files.hpp"
#include "irepa/io/mapped_file.hpp"

namespace irepa::io {

/// The header of a .npy image: dtype (and its descr string), shape, where the data start.
struct NpyHeader {
  DType dtype = DType::F32;
  std::string descr;
  Shape shape;
  std::size_t data_offset = 0;
  std::size_t nbytes() const { return static_cast<std::size_t>(checked_nbytes(shape.dims(), dtype_size(dtype), "npy")); }
};

/// Parses the .npy image at map [size bytes]; `where` names it in errors (a file, or an .npz
/// member). The data must all be present.
inline NpyHeader parse_npy_header(const std::byte* map_, std::size_t size_, const std::string& where) {
  IREPA_CHECK(size_ >= 10 && std::memcmp(map_, "\x93NUMPY", 6) == 0, "npy: '{}' is not a .npy file (bad magic)", where);
  const int major = std::to_integer<int>(map_[6]);
  std::size_t hlen = 0, hstart = 0;
  if (major == 1) {
    hlen = std::to_integer<std::size_t>(map_[8]) | std::to_integer<std::size_t>(map_[9]) << 8;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    IREPA_CHECK(size_ >= 12, "npy: '{}' is truncated in its header", where);
    std::uint32_t l;
    std::memcpy(&l, map_ + 8, 4);
    hlen = l;
    hstart = 12;
  } else {
    fail("npy: '{}' has format version {}, expected 1, 2 or 3", where, major);
  }
  IREPA_CHECK(hlen <= size_ - hstart, "npy: '{}' is truncated: header of {} bytes, file of {}", where, hlen, size_);
  // numpy itself refuses headers over 10,000 bytes by default; a header is a short dict literal.
  IREPA_CHECK(hlen <= 65536, "npy: '{}' claims a header of {} bytes; real ones are under 64 KiB", where, hlen);
  const std::string h(reinterpret_cast<const char*>(map_ + hstart), hlen);
  const std::string brief = h.size() > 120 ? h.substr(0, 120) + "..." : h;  // what errors quote of it
  // The header is a Python dict literal; the value after each key is all we need.
  auto value_after = [&](const char* key) -> std::string_view {
    const auto k = h.find(key);
    IREPA_CHECK(k != std::string::npos, "npy: '{}' header has no {}: {}", where, key, brief);
    auto v = h.find(':', k);
    IREPA_CHECK(v != std::string::npos, "npy: '{}' header is malformed after {}: {}", where, key, brief);
    ++v;
    while (v < h.size() && h[v] == ' ') ++v;
    return std::string_view(h).substr(v);
  };
  NpyHeader r;
  std::string_view dv = value_after("'descr'");
  IREPA_CHECK(!dv.empty() && (dv[0] == '\'' || dv[0] == '"') && dv.find(dv[0], 1) != std::string_view::npos,
              "npy: '{}' descr is not a string: {}", where, brief);
  const std::string d(dv.substr(1, dv.find(dv[0], 1) - 1));
  if (d == "<f8") r.dtype = DType::F64;
  else if (d == "<f4") r.dtype = DType::F32;
  else if (d == "<f2") r.dtype = DType::F16;
  else if (d == "|u1") r.dtype = DType::U8;
  else if (d == "|b1") r.dtype = DType::Bool;
  else if (d == "<i8") r.dtype = DType::I64;
  else if (d == "<i4") r.dtype = DType::I32;
  else fail("npy: '{}' has dtype '{}', expected one of <f8 <f4 <f2 |u1 |b1 <i8 <i4", where, d);
  r.descr = d;
  IREPA_CHECK(value_after("'fortran_order'").substr(0, 5) == "False",
              "npy: '{}' is in Fortran order; save it in C order (np.ascontiguousarray)", where);
  std::string_view sv = value_after("'shape'");
  IREPA_CHECK(!sv.empty() && sv[0] == '(' && sv.find(')') != std::string_view::npos, "npy: '{}' shape is not a tuple: {}", where, brief);
  sv = sv.substr(1, sv.find(')') - 1);
  std::vector<std::int64_t> dims;
  for (std::size_t i = 0; i < sv.size();) {
    if (sv[i] < '0' || sv[i] > '9') {
      IREPA_CHECK(sv[i] == ',' || sv[i] == ' ' || sv[i] == 'L', "npy: '{}' shape has '{}': {}", where, sv[i], brief);
      ++i;
      continue;
    }
    std::int64_t n = 0;
    for (; i < sv.size() && sv[i] >= '0' && sv[i] <= '9'; ++i) {
      IREPA_CHECK(n < (std::int64_t{1} << 48), "npy: '{}' has a dimension too large to be real: {}", where, brief);
      n = n * 10 + (sv[i] - '0');
    }
    dims.push_back(n);
    IREPA_CHECK(dims.size() <= static_cast<std::size_t>(kMaxRank), "npy: '{}' has more than {} dimensions", where, kMaxRank);
  }
  (void)checked_nbytes(dims, dtype_size(r.dtype), fmt::format("npy: '{}'", where));
  r.shape = Shape(std::span<const std::int64_t>(dims));
  r.data_offset = hstart + hlen;
  IREPA_CHECK(size_ - r.data_offset >= r.nbytes(), "npy: '{}' is truncated: shape {} of {} needs {} bytes, {} present", where,
              r.shape.str(), d, r.nbytes(), size_ - r.data_offset);
  return r;
}

namespace detail {
/// out[i] = element i of the dtype-typed data at p, converted to T (float types from any dtype,
/// integer types from integer dtypes; a float dtype as integers is an Error naming where).
template <class T>
void convert_npy(DType dtype, const std::byte* p, TensorView<T> out, const std::string& where) {
  constexpr bool want_float = std::is_floating_point_v<T> || std::is_same_v<T, bf16> || std::is_same_v<T, f16>;
  const bool is_float = dtype == DType::F64 || dtype == DType::F32 || dtype == DType::F16;
  // Integers widen to floats (uint8 images); floats never narrow to integers.
  IREPA_CHECK(want_float || !is_float, "npy: '{}' holds {}, which cannot be read as {}", where, dtype_name(dtype), dtype_name(dtype_of<T>));
  const std::size_t es = dtype_size(dtype);
  for (std::int64_t i = 0; i < out.numel(); ++i, p += es) {
    switch (dtype) {
      case DType::F64: { double v; std::memcpy(&v, p, 8); out.data()[i] = static_cast<T>(v); break; }
      case DType::F32: { float v; std::memcpy(&v, p, 4); out.data()[i] = static_cast<T>(v); break; }
      case DType::F16: { std::uint16_t b; std::memcpy(&b, p, 2); out.data()[i] = static_cast<T>(static_cast<float>(Eigen::numext::bit_cast<f16>(b))); break; }
      case DType::I64: { std::int64_t v; std::memcpy(&v, p, 8); out.data()[i] = static_cast<T>(v); break; }
      case DType::I32: { std::int32_t v; std::memcpy(&v, p, 4); out.data()[i] = static_cast<T>(v); break; }
      case DType::U8: case DType::Bool: out.data()[i] = static_cast<T>(std::to_integer<std::uint8_t>(*p)); break;
      default: break;
    }
  }
}
}  // namespace detail

class NpyFile {
 public:
  explicit NpyFile(const std::string& path) : path_(path), file_(path, "npy") { parse(); }
  /// Reads bytes the caller keeps alive; `name` stands for the path in errors.
  NpyFile(std::span<const std::byte> bytes, std::string name) : path_(std::move(name)), file_(MappedFile::borrow(bytes.data(), bytes.size())) {
    parse();
  }

  const std::string& path() const { return path_; }
  DType dtype() const { return header_.dtype; }
  const Shape& shape() const { return header_.shape; }
  const std::byte* data() const { return data_; }

  /// Rows [begin, begin + count) of the first dimension, converted to T (float types from any
  /// dtype, integer types from integer dtypes).
  template <class T>
  Tensor<T> load_rows(std::int64_t begin, std::int64_t count) const {
    const Shape& shape_ = header_.shape;
    IREPA_CHECK(shape_.rank() >= 1 && begin >= 0 && count >= 0 && begin + count <= shape_[0],
                "npy: '{}' rows [{}, {}) are outside its shape {}", path_, begin, begin + count, shape_.str());
    Shape s = shape_;
    s[0] = count;
    Tensor<T> out(s);
    const std::int64_t row = shape_.numel() / std::max<std::int64_t>(shape_[0], 1);
    detail::convert_npy<T>(header_.dtype, data_ + static_cast<std::size_t>(begin * row) * dtype_size(header_.dtype), out.view(), path_);
    return out;
  }
  template <class T>
  Tensor<T> load() const {
    return load_rows<T>(0, header_.shape.rank() ? header_.shape[0] : 1);
  }

 private:
  void parse() {
    header_ = parse_npy_header(file_.data(), file_.size(), path_);
    data_ = file_.data() + header_.data_offset;
  }
  std::string path_;
  MappedFile file_;
  NpyHeader header_;
  const std::byte* data_ = nullptr;
};

/// Writes a C-order little-endian .npy file (version 1.0) of a contiguous tensor, atomically.
template <class T>
void write_npy(const std::string& path, ConstView<T> t) {
  IREPA_CHECK(t.is_contiguous(), "write_npy: tensor {} is not contiguous", t.shape().str());
  std::string descr;
  switch (dtype_of<T>) {
    case DType::F64: descr = "<f8"; break;
    case DType::F32: descr = "<f4"; break;
    case DType::U8: descr = "|u1"; break;
    case DType::I64: descr = "<i8"; break;
    case DType::I32: descr = "<i4"; break;
    default: fail("write_npy: dtype {} is not supported", dtype_name(dtype_of<T>));
  }
  std::string shape = "(";
  for (int i = 0; i < t.rank(); ++i) shape += std::to_string(t.size(i)) + (t.rank() == 1 ? "," : (i + 1 < t.rank() ? ", " : ""));
  shape += ")";
  std::string h = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  h.append(64 - (10 + h.size() + 1) % 64, ' ');
  h += '\n';
  AtomicFile f(path, "write_npy");
  const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(h.size() & 0xff),
                                 static_cast<unsigned char>(h.size() >> 8)};
  f.write(pre, 10);
  f.write(h);
  f.write(t.data(), static_cast<std::size_t>(t.numel()) * sizeof(T));
  f.commit();
}

}  // namespace irepa::io
