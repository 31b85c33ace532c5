#pragma once
// Alignment loss policies.
//  - NegCosine: -mean over images and tokens of cos(zhat, z), both L2-normalised over channels
//    with F.normalize's eps 1e-12 (the reference's CosineProjectionLoss).

#include "irepa/core/concepts.hpp"
#include "irepa/ops/reduce.hpp"

namespace irepa {

struct NegCosine {
  double eps = 1e-12;

  template <class T>
  struct cache {
    double value = 0;            // the loss
    ops::CosineCache<T> cos;     // normalised rows and norms
    std::int64_t rows = 0;       // B * T
  };

  template <class T>
  cache<T> forward(const CpuContext& ctx, ConstView<T> zhat, ConstView<T> z) const {
    IREPA_CHECK(zhat.rank() == 3, "NegCosine: predictions have shape {}, expected [B, T, Z]", zhat.shape().str());
    check_shape("NegCosine", "targets", z.shape(), zhat.shape());
    const std::int64_t rows = zhat.shape().rows();
    Tensor<T> s(Shape{rows});
    cache<T> c{0.0, ops::cosine_similarity_forward<T>(ctx, zhat, z, static_cast<T>(eps), s.view()), rows};
    double sum = 0;
    for (std::int64_t r = 0; r < rows; ++r) sum += static_cast<double>(s[r]);
    c.value = -sum / static_cast<double>(rows);
    return c;
  }

  /// dzhat = dloss * d(loss)/d(zhat), assigned.
  template <class T>
  void backward(const CpuContext& ctx, const cache<T>& c, T dloss, TensorView<T> dzhat) const {
    Tensor<T> ds(Shape{c.rows});
    ds.fill(-dloss / static_cast<T>(c.rows));
    ops::cosine_similarity_backward<T>(ctx, c.cos, ds, static_cast<T>(eps), dzhat, TensorView<T>{});
  }
};

static_assert(AlignmentLoss<NegCosine>);

}  // namespace irepa
