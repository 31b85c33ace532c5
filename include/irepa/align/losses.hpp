#pragma once
// Alignment loss policies.
//  - NegCosine: -mean over images and tokens of cos(zhat, z), both L2-normalised over channels
//    with F.normalize's eps 1e-12 (the reference's CosineProjectionLoss). The mean is reduced
//    on the tokens' device into a [1] double there: nothing comes back to the host.

#include "irepa/core/concepts.hpp"
#include "irepa/ops/reduce.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

struct NegCosine {
  double eps = 1e-12;

  template <class T, class D = Cpu>
  struct cache {
    Tensor<double, D> value;       // [1] the loss, on the device
    ops::CosineCache<T, D> cos;    // normalised rows and norms
    std::int64_t rows = 0;         // B * T
  };

  /// zhat, z [B, T, Z] on any device.
  template <class T, class Ctx, class D = typename Ctx::device_type>
  cache<T, D> forward(const Ctx& ctx, TensorView<const T, D> zhat, In<T, D> z) const {
    IREPA_CHECK(zhat.rank() == 3, "NegCosine: predictions have shape {}, expected [B, T, Z]", zhat.shape().str());
    check_shape("NegCosine", "targets", z.shape(), zhat.shape());
    const std::int64_t rows = zhat.shape().rows();
    Tensor<T, D> s(Shape{rows});
    cache<T, D> c{Tensor<double, D>(Shape{1}), ops::cosine_similarity_forward<T>(ctx, zhat, z, static_cast<T>(eps), s.view()), rows};
    ops::row_mean<T>(ctx, s.cview(), -1.0, c.value.view());
    return c;
  }

  /// dzhat = dloss * d(loss)/d(zhat), assigned.
  template <class T, class Ctx, class D = typename Ctx::device_type>
  void backward(const Ctx& ctx, const cache<T, D>& c, T dloss, TensorView<T, D> dzhat) const {
    Tensor<T, D> ds(Shape{c.rows});
    fill(ctx, ds.view(), -dloss / static_cast<T>(c.rows));
    ops::cosine_similarity_backward<T>(ctx, c.cos, ds.cview(), static_cast<T>(eps), dzhat, TensorView<T, D>{});
  }
};

static_assert(AlignmentLoss<NegCosine>);

}  // namespace irepa
