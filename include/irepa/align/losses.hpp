#pragma once
// Alignment loss policies.
//  - NegCosine: -mean over images and tokens of cos(zhat, z), both L2-normalised over channels
//    with F.normalize's eps 1e-12 (the reference's CosineProjectionLoss).

#include "irepa/core/concepts.hpp"
#include "irepa/ops/reduce.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

struct NegCosine {
  double eps = 1e-12;

  template <class T, class D = Cpu>
  struct cache {
    double value = 0;              // the loss
    ops::CosineCache<T, D> cos;    // normalised rows and norms
    std::int64_t rows = 0;         // B * T
  };

  /// zhat, z [B, T, Z] on any device; the per-row similarities are summed on the host in double.
  template <class T, class Ctx, class D = typename Ctx::device_type>
  cache<T, D> forward(const Ctx& ctx, TensorView<const T, D> zhat, In<T, D> z) const {
    IREPA_CHECK(zhat.rank() == 3, "NegCosine: predictions have shape {}, expected [B, T, Z]", zhat.shape().str());
    check_shape("NegCosine", "targets", z.shape(), zhat.shape());
    const std::int64_t rows = zhat.shape().rows();
    Tensor<T, D> s(Shape{rows});
    cache<T, D> c{0.0, ops::cosine_similarity_forward<T>(ctx, zhat, z, static_cast<T>(eps), s.view()), rows};
    const Tensor<T> sh = to_host(ctx, s.cview());
    double sum = 0;
    for (std::int64_t r = 0; r < rows; ++r) sum += static_cast<double>(sh[r]);
    c.value = -sum / static_cast<double>(rows);
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
