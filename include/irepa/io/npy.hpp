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

#include "irepa/core/dtype.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/shape.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/io/mapped_file.hpp"

namespace irepa::io {

class NpyFile {
 public:
  explicit NpyFile(const std::string& path) : path_(path), file_(path, "npy") { parse(); }

  const std::string& path() const { return path_; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const std::byte* data() const { return data_; }

  /// Rows [begin, begin + count) of the first dimension, converted to T (float types from float
  /// dtypes, integer types from integer dtypes).
  template <class T>
  Tensor<T> load_rows(std::int64_t begin, std::int64_t count) const {
    IREPA_CHECK(shape_.rank() >= 1 && begin >= 0 && count >= 0 && begin + count <= shape_[0],
                "npy: '{}' rows [{}, {}) are outside its shape {}", path_, begin, begin + count, shape_.str());
    Shape s = shape_;
    s[0] = count;
    Tensor<T> out(s);
    const std::int64_t row = shape_.numel() / std::max<std::int64_t>(shape_[0], 1);
    const std::byte* p = data_ + static_cast<std::size_t>(begin * row) * dtype_size(dtype_);
    constexpr bool want_float = std::is_floating_point_v<T> || std::is_same_v<T, bf16> || std::is_same_v<T, f16>;
    const bool is_float = dtype_ == DType::F64 || dtype_ == DType::F32 || dtype_ == DType::F16;
    IREPA_CHECK(want_float == is_float, "npy: '{}' holds {}, which cannot be read as {}", path_, dtype_name(dtype_),
                dtype_name(dtype_of<T>));
    const std::size_t es = dtype_size(dtype_);
    for (std::int64_t i = 0; i < out.numel(); ++i, p += es) {
      switch (dtype_) {
        case DType::F64: { double v; std::memcpy(&v, p, 8); out[i] = static_cast<T>(v); break; }
        case DType::F32: { float v; std::memcpy(&v, p, 4); out[i] = static_cast<T>(v); break; }
        case DType::F16: { std::uint16_t b; std::memcpy(&b, p, 2); out[i] = static_cast<T>(static_cast<float>(Eigen::numext::bit_cast<f16>(b))); break; }
        case DType::I64: { std::int64_t v; std::memcpy(&v, p, 8); out[i] = static_cast<T>(v); break; }
        case DType::I32: { std::int32_t v; std::memcpy(&v, p, 4); out[i] = static_cast<T>(v); break; }
        case DType::U8: case DType::Bool: out[i] = static_cast<T>(std::to_integer<std::uint8_t>(*p)); break;
        default: break;
      }
    }
    return out;
  }
  template <class T>
  Tensor<T> load() const {
    return load_rows<T>(0, shape_.rank() ? shape_[0] : 1);
  }

 private:
  void parse() {
    const std::byte* map_ = file_.data();
    const std::size_t size_ = file_.size();
    IREPA_CHECK(size_ >= 10 && std::memcmp(map_, "\x93NUMPY", 6) == 0, "npy: '{}' is not a .npy file (bad magic)", path_);
    const int major = std::to_integer<int>(map_[6]);
    std::size_t hlen = 0, hstart = 0;
    if (major == 1) {
      hlen = std::to_integer<std::size_t>(map_[8]) | std::to_integer<std::size_t>(map_[9]) << 8;
      hstart = 10;
    } else if (major == 2 || major == 3) {
      IREPA_CHECK(size_ >= 12, "npy: '{}' is truncated in its header", path_);
      std::uint32_t l;
      std::memcpy(&l, map_ + 8, 4);
      hlen = l;
      hstart = 12;
    } else {
      fail("npy: '{}' has format version {}, expected 1, 2 or 3", path_, major);
    }
    IREPA_CHECK(hstart + hlen <= size_, "npy: '{}' is truncated: header of {} bytes, file of {}", path_, hlen, size_);
    const std::string h(reinterpret_cast<const char*>(map_ + hstart), hlen);
    // The header is a Python dict literal; the value after each key is all we need.
    auto value_after = [&](const char* key) -> std::string_view {
      const auto k = h.find(key);
      IREPA_CHECK(k != std::string::npos, "npy: '{}' header has no {}: {}", path_, key, h);
      auto v = h.find(':', k);
      IREPA_CHECK(v != std::string::npos, "npy: '{}' header is malformed after {}: {}", path_, key, h);
      ++v;
      while (v < h.size() && h[v] == ' ') ++v;
      return std::string_view(h).substr(v);
    };
    std::string_view dv = value_after("'descr'");
    IREPA_CHECK(!dv.empty() && (dv[0] == '\'' || dv[0] == '"') && dv.find(dv[0], 1) != std::string_view::npos,
                "npy: '{}' descr is not a string: {}", path_, h);
    const std::string d(dv.substr(1, dv.find(dv[0], 1) - 1));
    if (d == "<f8") dtype_ = DType::F64;
    else if (d == "<f4") dtype_ = DType::F32;
    else if (d == "<f2") dtype_ = DType::F16;
    else if (d == "|u1") dtype_ = DType::U8;
    else if (d == "|b1") dtype_ = DType::Bool;
    else if (d == "<i8") dtype_ = DType::I64;
    else if (d == "<i4") dtype_ = DType::I32;
    else fail("npy: '{}' has dtype '{}', expected one of <f8 <f4 <f2 |u1 |b1 <i8 <i4", path_, d);
    IREPA_CHECK(value_after("'fortran_order'").substr(0, 5) == "False",
                "npy: '{}' is in Fortran order; save it in C order (np.ascontiguousarray)", path_);
    std::string_view sv = value_after("'shape'");
    IREPA_CHECK(!sv.empty() && sv[0] == '(' && sv.find(')') != std::string_view::npos, "npy: '{}' shape is not a tuple: {}", path_, h);
    sv = sv.substr(1, sv.find(')') - 1);
    std::vector<std::int64_t> dims;
    for (std::size_t i = 0; i < sv.size();) {
      if (sv[i] < '0' || sv[i] > '9') {
        IREPA_CHECK(sv[i] == ',' || sv[i] == ' ' || sv[i] == 'L', "npy: '{}' shape has '{}': {}", path_, sv[i], h);
        ++i;
        continue;
      }
      std::int64_t n = 0;
      for (; i < sv.size() && sv[i] >= '0' && sv[i] <= '9'; ++i) n = n * 10 + (sv[i] - '0');
      dims.push_back(n);
    }
    shape_ = Shape(std::span<const std::int64_t>(dims));
    data_ = map_ + hstart + hlen;
    const auto want = static_cast<std::size_t>(shape_.numel()) * dtype_size(dtype_);
    IREPA_CHECK(size_ - hstart - hlen >= want, "npy: '{}' is truncated: shape {} of {} needs {} bytes, {} present", path_,
                shape_.str(), d, want, size_ - hstart - hlen);
  }

  std::string path_;
  MappedFile file_;
  const std::byte* data_ = nullptr;
  DType dtype_ = DType::F32;
  Shape shape_;
};

/// Writes a C-order little-endian .npy file (version 1.0) of a contiguous tensor.
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
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail("write_npy: cannot create '{}': {}", path, std::strerror(errno));
  const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(h.size() & 0xff),
                                 static_cast<unsigned char>(h.size() >> 8)};
  bool ok = std::fwrite(pre, 1, 10, f) == 10 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
  ok = ok && (t.numel() == 0 || std::fwrite(t.data(), sizeof(T), static_cast<std::size_t>(t.numel()), f) == static_cast<std::size_t>(t.numel()));
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) fail("write_npy: writing '{}' failed", path);
}

}  // namespace irepa::io
