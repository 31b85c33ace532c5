#pragma once
// Host twins: set-up and file I/O (initialisation draws, safetensors, checkpoints) run on the
// host; a model or buffer on a device goes through a host copy of itself, its "twin". This is
// the one place that decides whether a copy is needed (the device boundary stays in core/ and
// ops/); models, checkpoints and trainers call these helpers and never branch on the device.
//
// A model M with a twin declares M::HostModel (the same model on the CPU: M itself there) and
// m.host_twin() (a HostModel of the same configuration) and holds a ParamArena in params().

#include <cstddef>
#include <type_traits>

#include "irepa/core/arena.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa {

/// The values of a flat buffer on the host: the buffer itself where the host can read it, else
/// a copy held in keep (synchronous).
template <class T, class D>
TensorView<T> host_values(TensorView<T, D> v, Tensor<T>& keep) {
  if constexpr (D::host_accessible) {
    return v;
  } else {
    keep = Tensor<T>(v.shape());
    D::download_sync(keep.data(), v.data(), sizeof(T) * static_cast<std::size_t>(v.numel()));
    return keep.view();
  }
}

/// Writes a host staging buffer from host_values back to the buffer it was read from (nothing
/// to do where the host reads the buffer itself).
template <class T, class D>
void store_values(TensorView<T, D> v, const Tensor<T>& staged) {
  if constexpr (!D::host_accessible) D::upload_sync(v.data(), staged.data(), sizeof(T) * static_cast<std::size_t>(v.numel()));
}

/// dst = src for equal element counts, wherever dst lives (synchronous).
template <class T, class D>
void copy_from_host(TensorView<T, D> dst, ConstView<T> src) {
  IREPA_CHECK(dst.numel() == src.numel(), "copy_from_host: {} values into a buffer of {}", src.numel(), dst.numel());
  D::upload_sync(dst.data(), src.data(), sizeof(T) * static_cast<std::size_t>(dst.numel()));
}

namespace detail {
template <class M>
inline constexpr bool is_host_model = std::is_same_v<M, typename M::HostModel>;
}  // namespace detail

/// Runs f(host model) on the model itself when it lives on the host; otherwise on its twin, whose
/// parameter values are then copied to the model (initialisation, loading). With from_model the
/// twin first receives the model's current values, so that what f leaves alone is kept.
template <class M, class F>
void update_through_host(M& m, bool from_model, F&& f) {
  if constexpr (detail::is_host_model<M>) {
    (void)from_model;
    f(m);
  } else {
    auto host = m.host_twin();
    Tensor<typename M::scalar_type> keep;
    if (from_model) host.params().values().copy_from(host_values(m.params().values(), keep));
    f(host);
    copy_from_host(m.params().values(), ConstView<typename M::scalar_type>(host.params().values()));
  }
}

/// The model's parameter values (and, with grads, gradients) on the host: a twin holding a copy,
/// or, for a host model, a twin of the same values (always a new object, so callers may keep it).
template <class M>
typename M::HostModel host_copy(const M& m, bool grads = false) {
  auto host = m.host_twin();
  Tensor<typename M::scalar_type> keep;
  host.params().values().copy_from(host_values(m.params().values(), keep));
  if (grads) host.params().grads().copy_from(host_values(m.params().grads(), keep));
  return host;
}

/// f(const host model&): the model itself on the host, else a twin holding its values.
template <class M, class F>
decltype(auto) read_through_host(const M& m, F&& f) {
  if constexpr (detail::is_host_model<M>) {
    return f(m);
  } else {
    const auto host = host_copy(m);
    return f(host);
  }
}

}  // namespace irepa
