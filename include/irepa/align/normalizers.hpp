#pragma once
// The normalizer policies, applied to the frozen target tokens before the alignment loss:
//  - NoNorm       (REPA)  targets as they are
//  - SpatialNorm  (iREPA) z <- (z - alpha mean_T(z)) / (std_T(z) + eps), per image and channel,
//                         std unbiased (N - 1) over the T tokens; alpha 0.6, eps 1e-6 by default.

#include "irepa/core/concepts.hpp"
#include "irepa/ops/reduce.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

// Both run on any device: D is the views' device, the context is that device's.
struct NoNorm {
  template <class T, class Ctx, class D = typename Ctx::device_type>
  void apply(const Ctx& ctx, In<T, D> z, TensorView<T, D> out) const {
    check_shape("NoNorm", "output", out.shape(), z.shape());
    if (out.data() != z.data()) ops::copy<T>(ctx, z, out);
  }
};

struct SpatialNorm {
  double alpha = 0.6;  // how much of the per-channel token mean (the global component) to remove
  double eps = 1e-6;

  /// z, out [B, T, Z] (out may alias z); needs T >= 2.
  template <class T, class Ctx, class D = typename Ctx::device_type>
  void apply(const Ctx& ctx, In<T, D> z, TensorView<T, D> out) const {
    ops::spatial_normalize<T>(ctx, z, static_cast<T>(alpha), static_cast<T>(eps), out);
  }
};

static_assert(Normalizer<NoNorm>);
static_assert(Normalizer<SpatialNorm>);

}  // namespace irepa
