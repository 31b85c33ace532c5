#pragma once
// The alignment terms of a training objective, the same for every model (SiT, JiT): for each
// target encoder j, the frozen target z_j normalised by the head's normalizer, the head's loss
// between the projector's tokens and it, and their mean over encoders (the objective adds
// proj_coeff times that mean). Everything runs on the model's device; each loss goes into a
// double there.

#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "irepa/core/concepts.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

/// Writes a loss policy's value into dst [1] on the context's device: a device scalar is copied
/// there, a host double (a policy that reduces on the host) is set there.
template <class Ctx, class V>
void store_loss_value(const Ctx& ctx, const V& value, TensorView<double, typename Ctx::device_type> dst) {
  if constexpr (std::is_convertible_v<V, double>)
    fill(ctx, dst, static_cast<double>(value));
  else
    ops::copy<double>(ctx, value.cview(), dst);
}

/// For each encoder j: z_normalized[j] = head.normalizer(zs[j]) and losses[j] = head.loss(projected
/// tokens j, z_normalized[j]); with backward, dz[j] = d(scale * mean_j losses[j]) / d(projected j).
/// zs are the raw targets [B, T, z_j] on the model's device; `projected(j)` gives the cache's
/// projected tokens; losses is a [J] double view on the device.
template <class Head, class Projected, class T, class Ctx, class D = typename Ctx::device_type>
void alignment_terms(const Ctx& ctx, const Head& head, Projected&& projected, std::span<const Tensor<T, D>> zs, double scale,
                     bool backward, std::string_view who, std::vector<Tensor<T, D>>& z_normalized, TensorView<double, D> losses,
                     std::vector<Tensor<T, D>>& dz) {
  const std::size_t J = zs.size();
  IREPA_CHECK(losses.numel() == static_cast<std::int64_t>(J), "{}: {} loss slots for {} encoders", who, losses.numel(), J);
  for (std::size_t j = 0; j < J; ++j) {
    const ConstView<T, D> zhat = projected(j);
    check_shape(who, "target features " + std::to_string(j), zs[j].shape(), zhat.shape());
    z_normalized.emplace_back(zhat.shape());
    head.normalizer.apply(ctx, zs[j].cview(), z_normalized.back().view());
    const auto lc = head.loss.forward(ctx, zhat, z_normalized.back().cview());
    store_loss_value(ctx, lc.value, losses.slice(0, static_cast<std::int64_t>(j), 1));
    if (backward) {
      dz.emplace_back(zhat.shape());
      head.loss.backward(ctx, lc, static_cast<T>(scale / static_cast<double>(J)), dz.back().view());
    }
  }
}

}  // namespace irepa
