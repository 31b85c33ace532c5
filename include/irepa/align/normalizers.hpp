#pragma once
// The normalizer policies, applied to the frozen target tokens before the alignment loss:
//  - NoNorm       (REPA)  targets as they are
//  - SpatialNorm  (iREPA) z <- (z - alpha mean_T(z)) / (std_T(z) + eps), per image and channel,
//                         std unbiased (N - 1) over the T tokens; alpha 0.6, eps 1e-6 by default.

#include "irepa/core/concepts.hpp"
#include "irepa/ops/reduce.hpp"

namespace irepa {

struct NoNorm {
  template <class T>
  void apply(const CpuContext&, ConstView<T> z, TensorView<T> out) const {
    check_shape("NoNorm", "output", out.shape(), z.shape());
    if (out.data() != z.data()) out.copy_from(z);
  }
};

struct SpatialNorm {
  double alpha = 0.6;  // how much of the per-channel token mean (the global component) to remove
  double eps = 1e-6;

  /// z, out [B, T, Z] (out may alias z); needs T >= 2.
  template <class T>
  void apply(const CpuContext& ctx, ConstView<T> z, TensorView<T> out) const {
    check_shape("SpatialNorm", "output", out.shape(), z.shape());
    check_contiguous("SpatialNorm", z, out);
    const std::int64_t B = z.size(0), N = z.size(1), D = z.size(2);
    Tensor<T> mean(Shape{B, D}), std(Shape{B, D});
    ops::token_mean_std_forward<T>(ctx, z, mean.view(), std.view());
    const T a = static_cast<T>(alpha), e = static_cast<T>(eps);
    ctx.parallel_for(B * N, 3.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        const T* m = mean.data() + (r / N) * D;
        const T* s = std.data() + (r / N) * D;
        for (std::int64_t d = 0; d < D; ++d) out.data()[r * D + d] = (z.data()[r * D + d] - a * m[d]) / (s[d] + e);
      }
    });
  }
};

static_assert(Normalizer<NoNorm>);
static_assert(Normalizer<SpatialNorm>);

}  // namespace irepa
