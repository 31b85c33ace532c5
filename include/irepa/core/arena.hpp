#pragma once
// Flat parameter arena. A model's parameters live in one contiguous buffer and their gradients
// in a second one of the same layout, so that AdamW, EMA, clipping, zeroing and checkpointing
// are single passes over memory. Layers hold Param members (shape + views into the arena);
// they enumerate them with visit_params(visitor, prefix), naming each with the reference's
// dotted state_dict name ("blocks.3.attn.qkv.weight").

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa {

/// One trainable tensor: its declared shape and, once bound to an arena, value and gradient views.
template <class T, class D = Cpu>
struct Param {
  Shape shape;
  TensorView<T, D> value;  // view into the arena's value buffer
  TensorView<T, D> grad;   // view into the arena's gradient buffer (gradients accumulate)

  Param() = default;
  explicit Param(const Shape& s) : shape(s) {}
  bool bound() const { return value.data() != nullptr || shape.numel() == 0; }
};

/// "a.b" + "c" -> "a.b.c"; an empty prefix yields the name alone.
inline std::string join_name(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  std::string s(prefix);
  s += '.';
  s += name;
  return s;
}

template <class T, class D = Cpu>
class ParamArena {
 public:
  struct Entry {
    std::string name;
    std::int64_t offset;  // in elements, into values() / grads()
    Shape shape;
  };

  ParamArena() = default;

  /// Lays out every Param that model.visit_params yields, allocates the value and gradient
  /// buffers (zero-filled) and binds the Params' views to them.
  template <class Model>
  explicit ParamArena(Model& model) {
    std::int64_t total = 0;
    model.visit_params([&](const std::string& name, Param<T, D>& p) {
      IREPA_CHECK(!index_.contains(name), "ParamArena: parameter name '{}' appears twice", name);
      index_.emplace(name, entries_.size());
      entries_.push_back({name, total, p.shape});
      total += p.shape.numel();
    }, std::string_view{});
    values_ = Tensor<T, D>(Shape{total});
    grads_ = Tensor<T, D>(Shape{total});
    if constexpr (D::host_accessible) {
      values_.fill(T(0));
      grads_.fill(T(0));
    } else {
      D::zero_sync(values_.data(), sizeof(T) * static_cast<std::size_t>(total));
      D::zero_sync(grads_.data(), sizeof(T) * static_cast<std::size_t>(total));
    }
    std::size_t i = 0;
    model.visit_params([&](const std::string& name, Param<T, D>& p) {
      const Entry& e = entries_.at(i++);
      IREPA_CHECK(e.name == name, "ParamArena: visit order changed between passes ('{}' vs '{}')", e.name, name);
      p.value = TensorView<T, D>(values_.data() + e.offset, e.shape);
      p.grad = TensorView<T, D>(grads_.data() + e.offset, e.shape);
    }, std::string_view{});
  }

  ParamArena(ParamArena&&) noexcept = default;
  ParamArena& operator=(ParamArena&&) noexcept = default;

  /// All values / gradients as one flat [numel] view.
  TensorView<T, D> values() const { return values_.view(); }
  TensorView<T, D> grads() const { return grads_.view(); }
  std::int64_t numel() const { return values_.numel(); }
  std::size_t size() const { return entries_.size(); }
  const std::vector<Entry>& entries() const { return entries_; }

  bool contains(std::string_view name) const { return index_.contains(std::string(name)); }
  const Entry& entry(std::string_view name) const {
    auto it = index_.find(std::string(name));
    if (it == index_.end()) fail("ParamArena: no parameter named '{}' ({} parameters)", name, entries_.size());
    return entries_[it->second];
  }
  TensorView<T, D> value(std::string_view name) const {
    const Entry& e = entry(name);
    return TensorView<T, D>(values_.data() + e.offset, e.shape);
  }
  TensorView<T, D> grad(std::string_view name) const {
    const Entry& e = entry(name);
    return TensorView<T, D>(grads_.data() + e.offset, e.shape);
  }

  /// f(name, value, grad) for every parameter, in declaration order.
  template <class F>
  void for_each(F&& f) const {
    for (const Entry& e : entries_)
      f(std::string_view(e.name), TensorView<T, D>(values_.data() + e.offset, e.shape),
        TensorView<T, D>(grads_.data() + e.offset, e.shape));
  }

  void zero_grad() const
    requires(D::host_accessible)
  {
    grads_.fill(T(0));
  }

 private:
  Tensor<T, D> values_;
  Tensor<T, D> grads_;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

}  // namespace irepa
