#pragma once
// Reductions on the CPU: per-channel mean and unbiased std over tokens (spatial
// normalisation), L2 normalisation of rows, row-wise cosine similarity (the alignment loss), and
// softmax cross-entropy (the metric classifier's loss).

#include <algorithm>
#include <cmath>
#include <vector>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

namespace detail {
inline void check_token_mean_std(std::string_view op, const Shape& x, const Shape& mean, const Shape& std) {
  IREPA_CHECK(x.rank() == 3 && x[1] >= 2, "{}: input has shape {}, expected [B, T >= 2, D]", op, x.str());
  check_shape(op, "mean", mean, Shape{x[0], x[2]});
  check_shape(op, "std", std, Shape{x[0], x[2]});
}
inline void check_token_mean_std_backward(std::string_view op, const Shape& x, const Shape& mean, const Shape& std,
                                          const Shape& dmean, const Shape& dstd, const Shape& dx) {
  check_token_mean_std(op, x, mean, std);
  check_shape(op, "dmean", dmean, mean);
  check_shape(op, "dstd", dstd, mean);
  check_shape(op, "dx", dx, x);
}
}  // namespace detail

/// mean[b, d] = mean_t x[b, t, d]; std[b, d] = sqrt(sum_t (x - mean)^2 / (T - 1)).
/// x [B, T, D]; mean, std [B, D]. Needs T >= 2.
template <class T>
void token_mean_std_forward(const CpuContext& ctx, In<T> x, TensorView<T> mean, TensorView<T> std) {
  detail::check_token_mean_std("token_mean_std_forward", x.shape(), mean.shape(), std.shape());
  check_contiguous("token_mean_std_forward", x, mean, std);
  const std::int64_t N = x.size(1), D = x.size(2);
  ctx.parallel_for(x.size(0), 4.0 * static_cast<double>(N * D), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      T* m = mean.data() + b * D;
      T* s = std.data() + b * D;
      std::fill_n(m, D, T(0));
      std::fill_n(s, D, T(0));
      const T* xb = x.data() + b * N * D;
      for (std::int64_t t = 0; t < N; ++t)
        for (std::int64_t d = 0; d < D; ++d) m[d] += xb[t * D + d];
      for (std::int64_t d = 0; d < D; ++d) m[d] /= static_cast<T>(N);
      for (std::int64_t t = 0; t < N; ++t)
        for (std::int64_t d = 0; d < D; ++d) s[d] += (xb[t * D + d] - m[d]) * (xb[t * D + d] - m[d]);
      for (std::int64_t d = 0; d < D; ++d) s[d] = std::sqrt(s[d] / static_cast<T>(N - 1));
    }
  });
}

/// dx[b, t, d] = dmean / T + dstd * (x - mean) / ((T - 1) std). dx assigned; a zero std
/// contributes nothing through dstd (the subgradient 0), so constant channels stay finite.
template <class T>
void token_mean_std_backward(const CpuContext& ctx, In<T> x, In<T> mean, In<T> std, In<T> dmean, In<T> dstd,
                             TensorView<T> dx) {
  detail::check_token_mean_std_backward("token_mean_std_backward", x.shape(), mean.shape(), std.shape(), dmean.shape(), dstd.shape(),
                                        dx.shape());
  check_contiguous("token_mean_std_backward", x, mean, std, dmean, dstd, dx);
  const std::int64_t N = x.size(1), D = x.size(2);
  ctx.parallel_for(x.size(0) * N, 5.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / N;
      for (std::int64_t d = 0; d < D; ++d) {
        const std::int64_t j = b * D + d;
        const T s = std.data()[j];
        const T ds = s > T(0) ? dstd.data()[j] * (x.data()[r * D + d] - mean.data()[j]) / (static_cast<T>(N - 1) * s) : T(0);
        dx.data()[r * D + d] = dmean.data()[j] / static_cast<T>(N) + ds;
      }
    }
  });
}

/// iREPA's spatial normalisation (the SpatialNorm policy): out = (z - alpha mean_T z) / (std_T z + eps)
/// per image and channel, std unbiased. z, out [B, T, D] (out may alias z); needs T >= 2.
template <class T>
void spatial_normalize(const CpuContext& ctx, In<T> z, T alpha, T eps, TensorView<T> out) {
  check_shape("spatial_normalize", "output", out.shape(), z.shape());
  check_contiguous("spatial_normalize", z, out);
  const std::int64_t B = z.size(0), N = z.size(1), D = z.size(2);
  Tensor<T> mean(Shape{B, D}), std(Shape{B, D});
  token_mean_std_forward<T>(ctx, z, mean.view(), std.view());
  ctx.parallel_for(B * N, 3.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* m = mean.data() + (r / N) * D;
      const T* s = std.data() + (r / N) * D;
      for (std::int64_t d = 0; d < D; ++d) out.data()[r * D + d] = (z.data()[r * D + d] - alpha * m[d]) / (s[d] + eps);
    }
  });
}

namespace detail {
/// y = x / max(||x||, eps); returns ||x||.
template <class T>
T l2_normalize_row(const T* x, std::int64_t D, T eps, T* y) {
  T ss = 0;
  for (std::int64_t i = 0; i < D; ++i) ss += x[i] * x[i];
  const T n = std::sqrt(ss);
  const T inv = T(1) / std::max(n, eps);
  for (std::int64_t i = 0; i < D; ++i) y[i] = x[i] * inv;
  return n;
}
/// dx = (dy - y (y . dy)) / n when n > eps, else dy / eps (the clamp's branch).
template <class T>
void l2_normalize_row_backward(const T* y, T n, const T* dy, std::int64_t D, T eps, T* dx) {
  if (n > eps) {
    T dot = 0;
    for (std::int64_t i = 0; i < D; ++i) dot += y[i] * dy[i];
    for (std::int64_t i = 0; i < D; ++i) dx[i] = (dy[i] - y[i] * dot) / n;
  } else {
    for (std::int64_t i = 0; i < D; ++i) dx[i] = dy[i] / eps;
  }
}
}  // namespace detail

/// y = x / max(||x||_2, eps) over the last dimension (F.normalize). x, y [..., D]; norm [rows].
template <class T>
void l2_normalize_forward(const CpuContext& ctx, In<T> x, T eps, TensorView<T> y, TensorView<T> norm) {
  check_shape("l2_normalize_forward", "output", y.shape(), x.shape());
  check_shape("l2_normalize_forward", "norm", norm.shape(), Shape{x.shape().rows()});
  check_contiguous("l2_normalize_forward", x, y, norm);
  const std::int64_t D = x.shape().last();
  ctx.parallel_for(x.shape().rows(), 3.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) norm[r] = detail::l2_normalize_row(x.data() + r * D, D, eps, y.data() + r * D);
  });
}

/// dx assigned, from the forward's y and norm.
template <class T>
void l2_normalize_backward(const CpuContext& ctx, In<T> y, In<T> norm, In<T> dy, T eps, TensorView<T> dx) {
  check_shape("l2_normalize_backward", "dy", dy.shape(), y.shape());
  check_shape("l2_normalize_backward", "dx", dx.shape(), y.shape());
  check_shape("l2_normalize_backward", "norm", norm.shape(), Shape{y.shape().rows()});
  check_contiguous("l2_normalize_backward", y, norm, dy, dx);
  const std::int64_t D = y.shape().last();
  ctx.parallel_for(y.shape().rows(), 4.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      detail::l2_normalize_row_backward(y.data() + r * D, norm[r], dy.data() + r * D, D, eps, dx.data() + r * D);
  });
}

/// What cosine_similarity_backward needs: both normalised inputs and their norms (D: where they
/// live; ops/cuda/reduce.cuh fills a Cuda one).
template <class T, class D = Cpu>
struct CosineCache {
  Tensor<T, D> an, bn;         // [..., D] normalised rows
  Tensor<T, D> a_norm, b_norm;  // [rows]
};

/// s[r] = <a_r / max(|a_r|, eps), b_r / max(|b_r|, eps)>.  a, b [..., D]; s [rows].
template <class T>
CosineCache<T> cosine_similarity_forward(const CpuContext& ctx, In<T> a, In<T> b, T eps, TensorView<T> s) {
  check_shape("cosine_similarity_forward", "second input", b.shape(), a.shape());
  check_shape("cosine_similarity_forward", "output", s.shape(), Shape{a.shape().rows()});
  check_contiguous("cosine_similarity_forward", a, b, s);
  CosineCache<T> c{Tensor<T>(a.shape()), Tensor<T>(a.shape()), Tensor<T>(Shape{a.shape().rows()}),
                   Tensor<T>(Shape{a.shape().rows()})};
  const std::int64_t D = a.shape().last();
  ctx.parallel_for(a.shape().rows(), 8.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      c.a_norm[r] = detail::l2_normalize_row(a.data() + r * D, D, eps, c.an.data() + r * D);
      c.b_norm[r] = detail::l2_normalize_row(b.data() + r * D, D, eps, c.bn.data() + r * D);
      T dot = 0;
      for (std::int64_t i = 0; i < D; ++i) dot += c.an.data()[r * D + i] * c.bn.data()[r * D + i];
      s[r] = dot;
    }
  });
  return c;
}

/// da, db assigned (either may be empty to skip it).
template <class T>
void cosine_similarity_backward(const CpuContext& ctx, const CosineCache<T>& c, In<T> ds, T eps, TensorView<T> da,
                                TensorView<T> db) {
  const Shape& shape = c.an.shape();
  check_shape("cosine_similarity_backward", "ds", ds.shape(), Shape{shape.rows()});
  if (da.numel()) check_shape("cosine_similarity_backward", "da", da.shape(), shape);
  if (db.numel()) check_shape("cosine_similarity_backward", "db", db.shape(), shape);
  check_contiguous("cosine_similarity_backward", ds, da, db);
  const std::int64_t D = shape.last();
  ctx.parallel_for(shape.rows(), 10.0 * static_cast<double>(D), [&](std::int64_t r0, std::int64_t r1) {
    std::vector<T> g(static_cast<std::size_t>(D));
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* an = c.an.data() + r * D;
      const T* bn = c.bn.data() + r * D;
      if (da.numel()) {
        for (std::int64_t i = 0; i < D; ++i) g[static_cast<std::size_t>(i)] = ds[r] * bn[i];
        detail::l2_normalize_row_backward(an, c.a_norm[r], g.data(), D, eps, da.data() + r * D);
      }
      if (db.numel()) {
        for (std::int64_t i = 0; i < D; ++i) g[static_cast<std::size_t>(i)] = ds[r] * an[i];
        detail::l2_normalize_row_backward(bn, c.b_norm[r], g.data(), D, eps, db.data() + r * D);
      }
    }
  });
}

/// out[0] = factor * (sum of s, in order, in double) / n: a loss that is a mean over rows (the
/// alignment loss from its per-row similarities, factor -1), kept on the device.
template <class T>
void row_mean(const CpuContext&, In<T> s, double factor, TensorView<double> out) {
  IREPA_CHECK(out.numel() == 1, "row_mean: the result goes into a [1] scalar, got shape {}", out.shape().str());
  IREPA_CHECK(s.numel() > 0, "row_mean: no rows to average");
  check_contiguous("row_mean", s, out);
  double sum = 0;
  for (std::int64_t r = 0; r < s.numel(); ++r) sum += static_cast<double>(s.data()[r]);
  out.data()[0] = factor * sum / static_cast<double>(s.numel());
}

/// The objective's scalars [total, denoising, alignment, alignment_0 .. alignment_{J-1}] (device
/// doubles): alignment = the per-encoder mean (summed in order), total = denoising + coeff alignment.
inline void loss_totals(const CpuContext&, TensorView<double> scalars, std::int64_t encoders, double coeff) {
  IREPA_CHECK(scalars.numel() == 3 + encoders, "loss_totals: {} scalars for {} encoders (expected {})", scalars.numel(), encoders,
              3 + encoders);
  double* s = scalars.data();
  double mean = 0;
  for (std::int64_t j = 0; j < encoders; ++j) mean += s[3 + j] / static_cast<double>(encoders);
  s[2] = mean;
  s[0] = s[1] + coeff * mean;
}

namespace detail {
inline void check_cross_entropy(const Shape& z, const Shape& y, const Shape& loss, bool with_dz, const Shape& dz) {
  IREPA_CHECK(z.rank() == 2 && z[1] > 0, "softmax_cross_entropy: logits have shape {}, expected [B, K]", z.str());
  check_shape("softmax_cross_entropy", "labels", y, Shape{z[0]});
  check_shape("softmax_cross_entropy", "loss", loss, Shape{z[0]});
  if (with_dz) check_shape("softmax_cross_entropy", "dlogits", dz, z);
}
}  // namespace detail

/// Softmax cross-entropy of logits z [B, K] against labels y [B] in 0..K-1:
/// loss[b] = logsumexp(z_b) - z_b[y_b] (the sum of exponentials in double), and, unless dz is
/// empty, dz = scale (softmax(z_b) - onehot(y_b)), the gradient of scale * sum(loss).
template <class T>
void softmax_cross_entropy(const CpuContext& ctx, In<T> z, In<std::int64_t> y, TensorView<double> loss, TensorView<T> dz,
                           double scale) {
  detail::check_cross_entropy(z.shape(), y.shape(), loss.shape(), dz.numel() > 0, dz.shape());
  check_contiguous("softmax_cross_entropy", z, y, loss);
  if (dz.numel() > 0) check_contiguous("softmax_cross_entropy", dz);
  const std::int64_t B = z.size(0), K = z.size(1);
  for (std::int64_t b = 0; b < B; ++b)
    IREPA_CHECK(y.data()[b] >= 0 && y.data()[b] < K, "softmax_cross_entropy: label {} of row {} is not in 0..{}", y.data()[b], b, K - 1);
  ctx.parallel_for(B, 8.0 * static_cast<double>(K), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const T* zb = z.data() + b * K;
      const T m = *std::max_element(zb, zb + K);
      double sum = 0;
      for (std::int64_t k = 0; k < K; ++k) sum += std::exp(static_cast<double>(zb[k] - m));
      const std::int64_t label = y.data()[b];
      loss.data()[b] = static_cast<double>(m) + std::log(sum) - static_cast<double>(zb[label]);
      if (dz.numel() == 0) continue;
      T* g = dz.data() + b * K;
      for (std::int64_t k = 0; k < K; ++k)
        g[k] = static_cast<T>(scale * (std::exp(static_cast<double>(zb[k] - m)) / sum - (k == label ? 1.0 : 0.0)));
    }
  });
}

}  // namespace irepa::ops
