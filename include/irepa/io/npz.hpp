#pragma once
// NumPy .npz archives (np.savez: stored; np.savez_compressed: deflated) of .npy members, the
// ADM evaluator's exchange format: sample batches (arr_0 uint8 [N, H, W, 3]) and reference
// batches (arr_0 plus mu, sigma, mu_s, sigma_s). Stored members are read in place from the
// mapping, a batch of rows at a time; deflated ones are inflated once. NpzWriter streams arrays
// (arr_0 of 50k samples never needs to be in memory at once) and renames the archive into place
// when it is complete.

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/dtype.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/io/npy.hpp"
#include "irepa/io/zip.hpp"

namespace irepa::io {

/// One array of an .npz: its header and bytes (a view of the mapping, or owned when inflated);
/// it keeps what its bytes live in, so it outlives the NpzFile it came from.
struct NpyArray {
  std::string where;  // "file.npz:name", for errors
  std::string descr;  // '|u1', '<f4', ...
  DType dtype = DType::F32;
  Shape shape;
  std::span<const std::byte> data;

  /// Rows [begin, begin + count) of the first dimension, converted to T.
  template <class T>
  Tensor<T> load_rows(std::int64_t begin, std::int64_t count) const {
    IREPA_CHECK(shape.rank() >= 1 && begin >= 0 && count >= 0 && begin + count <= shape[0], "npz: '{}' rows [{}, {}) are outside its shape {}",
                where, begin, begin + count, shape.str());
    Shape s = shape;
    s[0] = count;
    Tensor<T> out(s);
    const std::int64_t row = shape.numel() / std::max<std::int64_t>(shape[0], 1);
    detail::convert_npy<T>(dtype, data.data() + static_cast<std::size_t>(begin * row) * dtype_size(dtype), out.view(), where);
    return out;
  }
  template <class T>
  Tensor<T> load() const {
    Tensor<T> out(shape);
    detail::convert_npy<T>(dtype, data.data(), out.view(), where);
    return out;
  }

  std::shared_ptr<const void> owner;  // what data points into: the archive's reader (its mapping), or the inflated bytes
};

class NpzFile {
 public:
  explicit NpzFile(const std::string& path) : zip_(std::make_shared<const ZipReader>(path)) { list(); }
  /// An archive in memory (bytes must outlive the reader and its arrays); name is used in errors.
  NpzFile(std::span<const std::byte> bytes, std::string name) : zip_(std::make_shared<const ZipReader>(bytes, std::move(name))) { list(); }

  const std::string& path() const { return zip_->path(); }
  /// The arrays' names (members without ".npy"), in archive order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(std::string_view name) const { return zip_->find(std::string(name) + ".npy") != nullptr; }

  /// The array `name` (member name.npy); an Error listing the archive's arrays when it is absent.
  NpyArray array(std::string_view name) const {
    const ZipEntry* e = zip_->find(std::string(name) + ".npy");
    if (!e) {
      std::string have;
      for (const auto& n : names_) have += (have.empty() ? "" : ", ") + n;
      fail("npz: '{}' has no array '{}' (it holds: {})", path(), name, have.empty() ? "nothing" : have);
    }
    NpyArray a;
    a.where = path() + ":" + std::string(name);
    if (e->method == 0) {
      a.data = zip_->stored(*e);
      a.owner = zip_;
    } else {
      auto bytes = std::make_shared<const std::vector<std::byte>>(zip_->extract(*e));
      a.data = *bytes;
      a.owner = std::move(bytes);
    }
    const NpyHeader h = parse_npy_header(a.data.data(), a.data.size(), a.where);
    a.descr = h.descr, a.dtype = h.dtype, a.shape = h.shape;
    a.data = a.data.subspan(h.data_offset, h.nbytes());
    return a;
  }

 private:
  void list() {
    for (const auto& e : zip_->entries())
      if (e.name.size() > 4 && e.name.ends_with(".npy")) names_.push_back(e.name.substr(0, e.name.size() - 4));
  }
  std::shared_ptr<const ZipReader> zip_;  // shared with the stored arrays handed out
  std::vector<std::string> names_;
};

namespace detail {
inline std::string npy_descr(DType d) {
  switch (d) {
    case DType::F64: return "<f8";
    case DType::F32: return "<f4";
    case DType::F16: return "<f2";
    case DType::U8: return "|u1";
    case DType::Bool: return "|b1";
    case DType::I64: return "<i8";
    case DType::I32: return "<i4";
    default: fail("npz: dtype {} has no .npy form here", dtype_name(d));
  }
}
/// A version 1.0 .npy header for descr and shape, padded to a multiple of 64 bytes as numpy does.
inline std::string npy_header(const std::string& descr, const Shape& shape) {
  std::string s = "(";
  for (int i = 0; i < shape.rank(); ++i) s += std::to_string(shape[i]) + (shape.rank() == 1 ? "," : (i + 1 < shape.rank() ? ", " : ""));
  s += ")";
  std::string h = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + s + ", }";
  h.append(63 - (10 + h.size()) % 64, ' ');
  h += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(1), out += static_cast<char>(0);
  out += static_cast<char>(h.size() & 0xff), out += static_cast<char>(h.size() >> 8);
  return out + h;
}
}  // namespace detail

/// Writes an .npz: add() whole arrays, or begin_array() / write_rows() / end_array() to stream
/// one; finish() completes the archive and renames it to its path.
class NpzWriter {
 public:
  explicit NpzWriter(const std::string& path, bool compressed = false, bool force_zip64 = false)
      : zip_(path, compressed, force_zip64), path_(path) {}

  template <class T>
  void add(const std::string& name, ConstView<T> t) {
    IREPA_CHECK(t.is_contiguous(), "npz: array '{}' of shape {} is not contiguous", name, t.shape().str());
    begin_array(name, dtype_of<T>, t.shape());
    write_bytes(t.data(), static_cast<std::uint64_t>(t.numel()) * sizeof(T));
    end_array();
  }

  void begin_array(const std::string& name, DType dtype, const Shape& shape) {
    zip_.begin(name + ".npy");
    const std::string h = detail::npy_header(detail::npy_descr(dtype), shape);
    zip_.write(h.data(), h.size());
    expect_ = static_cast<std::uint64_t>(shape.numel()) * dtype_size(dtype), written_ = 0, name_ = name;
  }
  void write_bytes(const void* p, std::uint64_t n) {
    IREPA_CHECK(written_ + n <= expect_, "npz: array '{}' of '{}' gets more than its {} bytes", name_, path_, expect_);
    zip_.write(p, n);
    written_ += n;
  }
  void end_array() {
    IREPA_CHECK(written_ == expect_, "npz: array '{}' of '{}' got {} of its {} bytes", name_, path_, written_, expect_);
    zip_.end();
  }
  void finish() { zip_.finish(); }

 private:
  ZipWriter zip_;
  std::string path_, name_;
  std::uint64_t expect_ = 0, written_ = 0;
};

}  // namespace irepa::io
