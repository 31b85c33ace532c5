#pragma once
// Tensor (owning) and TensorView (non-owning): row-major element type T on device D, with
// shape and strides. Views may be strided (slices, transposes); Eigen access needs contiguity.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>

#include "irepa/core/device.hpp"
#include "irepa/core/dtype.hpp"
#include "irepa/core/eigen.hpp"
#include "irepa/core/shape.hpp"

namespace irepa {

/// Eigen TensorMap of rank N over T (a const map for const T).
template <class T, int N>
using EigenMap = Eigen::TensorMap<
    std::conditional_t<std::is_const_v<T>, const Eigen::Tensor<std::remove_const_t<T>, N, Eigen::RowMajor, Eigen::Index>,
                       Eigen::Tensor<T, N, Eigen::RowMajor, Eigen::Index>>>;

template <class T, class D = Cpu>
class TensorView {
 public:
  using value_type = T;
  using device_type = D;

  TensorView() = default;
  TensorView(T* data, const Shape& shape) : data_(data), shape_(shape), strides_(row_major_strides(shape)) {}
  TensorView(T* data, const Shape& shape, const Strides& strides) : data_(data), shape_(shape), strides_(strides) {}
  /// A view of non-const elements converts to a view of const ones.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  TensorView(const TensorView<U, D>& o) : data_(o.data()), shape_(o.shape()), strides_(o.strides()) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  const Strides& strides() const { return strides_; }
  int rank() const { return shape_.rank(); }
  std::int64_t size(int i) const { return shape_[i]; }
  std::int64_t stride(int i) const { return strides_[static_cast<std::size_t>(i < 0 ? i + rank() : i)]; }
  /// Element count; a default-constructed (null) view has none, which is how ops take
  /// optional arguments ("no bias").
  std::int64_t numel() const { return data_ ? shape_.numel() : 0; }
  bool empty() const { return numel() == 0; }

  bool is_contiguous() const {
    std::int64_t acc = 1;
    for (int i = rank() - 1; i >= 0; --i) {
      if (shape_[i] != 1 && stride(i) != acc) return false;
      if (__builtin_mul_overflow(acc, shape_[i], &acc)) return numel() == 0;  // only an empty view gets here
    }
    return true;
  }

  /// Element access (host devices only): t(i, j, k).
  template <class... I>
    requires(D::host_accessible && (std::is_integral_v<I> && ...))
  T& operator()(I... idx) const {
    std::int64_t off = 0;
    int k = 0;
    ((off += static_cast<std::int64_t>(idx) * strides_[static_cast<std::size_t>(k++)]), ...);
    return data_[off];
  }
  /// Flat element access of a contiguous host view.
  T& operator[](std::int64_t i) const
    requires(D::host_accessible)
  {
    return data_[i];
  }

  /// Eigen TensorMap of rank N over a contiguous host view (the CPU expression path).
  template <int N>
  EigenMap<T, N> eigen() const
    requires(D::host_accessible)
  {
    IREPA_CHECK(rank() == N, "TensorView::eigen<{}>: view has rank {} (shape {})", N, rank(), shape_.str());
    IREPA_CHECK(is_contiguous(), "TensorView::eigen: view with shape {} is not contiguous", shape_.str());
    std::array<Eigen::Index, static_cast<std::size_t>(N)> dims{};
    for (int i = 0; i < N; ++i) dims[static_cast<std::size_t>(i)] = shape_[i];
    return EigenMap<T, N>(data_, dims);
  }
  /// The contiguous view as a [rows, last] matrix map (rows = product of leading extents).
  EigenMap<T, 2> matrix() const
    requires(D::host_accessible)
  {
    IREPA_CHECK(is_contiguous(), "TensorView::matrix: view with shape {} is not contiguous", shape_.str());
    return EigenMap<T, 2>(data_, shape_.rows(), shape_.last());
  }
  /// The contiguous view as a flat vector map.
  EigenMap<T, 1> flat() const
    requires(D::host_accessible)
  {
    IREPA_CHECK(is_contiguous(), "TensorView::flat: view with shape {} is not contiguous", shape_.str());
    return EigenMap<T, 1>(data_, numel());
  }

  /// Same elements, new shape (contiguous views only; numel must match).
  TensorView reshape(const Shape& s) const {
    IREPA_CHECK(s.numel() == numel(), "reshape: cannot view {} ({} elements) as {} ({} elements)", shape_.str(),
                numel(), s.str(), s.numel());
    IREPA_CHECK(is_contiguous(), "reshape: view with shape {} is not contiguous", shape_.str());
    return TensorView(data_, s);
  }
  /// Elements [start, start + len) along dimension dim.
  TensorView slice(int dim, std::int64_t start, std::int64_t len) const {
    IREPA_CHECK(dim >= 0 && dim < rank(), "slice: dimension {} out of range for shape {}", dim, shape_.str());
    IREPA_CHECK(start >= 0 && len >= 0 && start + len <= shape_[dim], "slice: [{}, {}) out of range 0..{} in dimension {} of {}",
                start, start + len, shape_[dim], dim, shape_.str());
    Shape s = shape_;
    s[dim] = len;
    return TensorView(data_ + start * stride(dim), s, strides_);
  }
  /// Removes dimension dim by fixing its index.
  TensorView select(int dim, std::int64_t index) const {
    IREPA_CHECK(dim >= 0 && dim < rank(), "select: dimension {} out of range for shape {}", dim, shape_.str());
    IREPA_CHECK(index >= 0 && index < shape_[dim], "select: index {} out of range 0..{} in dimension {} of {}", index,
                shape_[dim], dim, shape_.str());
    std::array<std::int64_t, kMaxRank> d{};
    Strides st{};
    int k = 0;
    for (int i = 0; i < rank(); ++i)
      if (i != dim) {
        d[static_cast<std::size_t>(k)] = shape_[i];
        st[static_cast<std::size_t>(k++)] = stride(i);
      }
    return TensorView(data_ + index * stride(dim), Shape(std::span<const std::int64_t>(d.data(), static_cast<std::size_t>(k))), st);
  }
  /// Swaps two dimensions (a strided view).
  TensorView transpose(int a, int b) const {
    IREPA_CHECK(a >= 0 && a < rank() && b >= 0 && b < rank(), "transpose: dimensions {}, {} out of range for {}", a, b,
                shape_.str());
    Shape s = shape_;
    Strides st = strides_;
    std::swap(s[a], s[b]);
    std::swap(st[static_cast<std::size_t>(a)], st[static_cast<std::size_t>(b)]);
    return TensorView(data_, s, st);
  }

  /// Sets every element (host views, any strides).
  void fill(std::remove_const_t<T> v) const
    requires(D::host_accessible && !std::is_const_v<T>)
  {
    for_each_index([&](std::int64_t off) { data_[off] = v; });
  }
  /// Copies src's elements (same shape) into this view; strides may differ.
  void copy_from(const TensorView<const std::remove_const_t<T>, D>& src) const
    requires(D::host_accessible && !std::is_const_v<T>)
  {
    check_shape("copy_from", "source", src.shape(), shape_);
    if (is_contiguous() && src.is_contiguous()) {
      if (numel()) std::memcpy(data_, src.data(), static_cast<std::size_t>(numel()) * sizeof(T));
      return;
    }
    TensorView<const std::remove_const_t<T>, D> s = src;
    std::int64_t n = 0;
    // Walk both in row-major order.
    for_each_index([&](std::int64_t off) { data_[off] = s.element_at(n++); });
  }

  /// The element at flat row-major position i, whatever the strides.
  T& element_at(std::int64_t i) const
    requires(D::host_accessible)
  {
    std::int64_t off = 0;
    for (int d = rank() - 1; d >= 0; --d) {
      off += (i % shape_[d]) * stride(d);
      i /= shape_[d];
    }
    return data_[off];
  }

  /// Calls f(offset) for every element in row-major order.
  template <class F>
  void for_each_index(F&& f) const {
    if (numel() == 0) return;
    std::array<std::int64_t, kMaxRank> idx{};
    std::int64_t off = 0;
    const int r = rank();
    for (std::int64_t n = numel(); n > 0; --n) {
      f(off);
      for (int d = r - 1; d >= 0; --d) {
        auto ud = static_cast<std::size_t>(d);
        if (++idx[ud] < shape_[d]) {
          off += strides_[ud];
          break;
        }
        off -= (shape_[d] - 1) * strides_[ud];
        idx[ud] = 0;
      }
    }
  }

 private:
  T* data_ = nullptr;
  Shape shape_;
  Strides strides_{};
};

/// Owning, contiguous tensor. Move-only; clone() copies.
template <class T, class D = Cpu>
class Tensor {
  static_assert(!std::is_const_v<T>, "Tensor<T>: T must not be const (use TensorView<const T>)");

 public:
  using value_type = T;
  using device_type = D;

  Tensor() = default;
  explicit Tensor(const Shape& shape) : shape_(shape) {
    const auto bytes = static_cast<std::size_t>(checked_nbytes(shape.dims(), sizeof(T), "Tensor"));
    data_.reset(static_cast<T*>(D::allocate(bytes)));
  }
  /// A tensor of the given shape with every element v.
  Tensor(const Shape& shape, T v)
    requires(D::host_accessible)
      : Tensor(shape) {
    std::fill_n(data_.get(), shape.numel(), v);
  }
  static Tensor zeros(const Shape& shape)
    requires(D::host_accessible)
  {
    return Tensor(shape, T(0));
  }

  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  Tensor clone() const
    requires(D::host_accessible)
  {
    Tensor t(shape_);
    if (numel()) std::memcpy(t.data(), data(), static_cast<std::size_t>(numel()) * sizeof(T));
    return t;
  }
  static Tensor copy_of(const TensorView<const T, D>& v)
    requires(D::host_accessible)
  {
    Tensor t(v.shape());
    t.view().copy_from(v);
    return t;
  }

  T* data() const { return data_.get(); }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  std::int64_t size(int i) const { return shape_[i]; }
  std::int64_t numel() const { return shape_.numel(); }

  TensorView<T, D> view() const { return TensorView<T, D>(data_.get(), shape_); }
  TensorView<const T, D> cview() const { return TensorView<const T, D>(data_.get(), shape_); }
  operator TensorView<T, D>() const { return view(); }
  operator TensorView<const T, D>() const { return cview(); }

  template <class... I>
    requires(D::host_accessible && (std::is_integral_v<I> && ...))
  T& operator()(I... idx) const {
    return view()(idx...);
  }
  T& operator[](std::int64_t i) const
    requires(D::host_accessible)
  {
    return data_.get()[i];
  }
  template <int N>
  EigenMap<T, N> eigen() const
    requires(D::host_accessible)
  {
    return view().template eigen<N>();
  }
  EigenMap<T, 2> matrix() const
    requires(D::host_accessible)
  {
    return view().matrix();
  }
  EigenMap<T, 1> flat() const
    requires(D::host_accessible)
  {
    return view().flat();
  }
  TensorView<T, D> reshape(const Shape& s) const { return view().reshape(s); }
  void fill(T v) const
    requires(D::host_accessible)
  {
    std::fill_n(data_.get(), numel(), v);
  }

 private:
  struct Free {
    void operator()(T* p) const noexcept { D::deallocate(p); }
  };
  std::unique_ptr<T, Free> data_;
  Shape shape_;
};

template <class T, class D = Cpu>
using ConstView = TensorView<const T, D>;

/// An op's read-only argument: a const view whose T is not deduced from it, so that an op
/// called as op<T>(...) accepts Tensors and mutable views there; T is deduced from outputs.
template <class T, class D = Cpu>
using In = std::type_identity_t<TensorView<const T, D>>;

/// Throws if any view is not contiguous (ops that run GEMMs or row kernels need dense rows).
template <class... V>
void check_contiguous(std::string_view op, const V&... views) {
  int i = 0;
  auto one = [&](const auto& v) {
    IREPA_CHECK(v.is_contiguous(), "{}: argument {} with shape {} is not contiguous", op, i, v.shape().str());
    ++i;
  };
  (one(views), ...);
}

}  // namespace irepa
