#pragma once
// Spatial metrics of an encoder's patch tokens (how spatially structured they are), as the
// iREPA reference defines them. Features [B, T, D] on an H x W token grid (row-major), tokens
// L2-normalised over channels, distances are Manhattan distances on the grid:
//  - LDS:  mean cosine over 4-neighbour pairs minus mean cosine over pairs at distance >= far.
//  - CDS:  minus the least-squares slope of the mean cosine at distance d against d, d = 1..dmax.
//  - SRSS: per foreground anchor with both kinds of partner, mean cosine to foreground tokens at
//          distance in [near_min, near_max] minus mean cosine to background tokens at distance
//          >= far; averaged over anchors; NaN for an image without a valid anchor.
//  - RMSC: sqrt(mean_t ||x_t - mean(x)||^2) of the normalised tokens.
//
// Cost per image: one Gram matrix by GEMM (T^2 D), then lookups through the grid's neighbour
// lists (T K, K = tokens within the largest radius) and O(T D) sums; pairs beyond the radius
// are handled through totals (sum over all pairs = ||sum_t x_t||^2), so no T x T mask is built
// or scanned per image. The distance structure (GridDistances) is built once per grid.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::metrics {

/// The reference's parameters are the defaults.
struct SpatialMetricOptions {
  int lds_far = 6;           // LDS: far pairs have distance >= lds_far
  int cds_dmax = 8;          // CDS: fit over d = 1..cds_dmax
  int srss_near_min = 1;     // SRSS positives: foreground partners at distance in [near_min, near_max]
  int srss_near_max = 1;
  int srss_far = 6;          // SRSS negatives: background partners at distance >= srss_far
  bool rmsc_sqrt = true;     // RMSC: root of the mean square (false: the mean square)
  double norm_eps = 1e-8;    // L2-normalisation floor of LDS, CDS and RMSC (the reference's)
  double srss_norm_eps = 1e-12;  // ... and of SRSS (F.normalize's default there)
};

/// Manhattan-distance structure of an H x W grid, built once: per token, the tokens within
/// `radius` (CSR lists with their distances), and the number of ordered pairs at each distance.
class GridDistances {
 public:
  GridDistances(std::int64_t h, std::int64_t w, int radius) : h_(h), w_(w), radius_(radius) {
    IREPA_CHECK(h > 0 && w > 0, "GridDistances: grid {}x{} must be non-empty", h, w);
    IREPA_CHECK(radius >= 0, "GridDistances: radius {} must be >= 0", radius);
    const std::int64_t T = h * w;
    pair_count_.assign(static_cast<std::size_t>(h + w - 1), 0);
    start_.push_back(0);
    for (std::int64_t i = 0; i < T; ++i) {
      const std::int64_t yi = i / w, xi = i % w;
      for (std::int64_t j = 0; j < T; ++j) {
        const auto d = static_cast<int>(std::abs(yi - j / w) + std::abs(xi - j % w));
        ++pair_count_[static_cast<std::size_t>(d)];
        if (d >= 1 && d <= radius) {
          partner_.push_back(static_cast<std::int32_t>(j));
          dist_.push_back(static_cast<std::uint8_t>(std::min(d, 255)));
        }
      }
      start_.push_back(static_cast<std::int64_t>(partner_.size()));
    }
  }
  std::int64_t h() const { return h_; }
  std::int64_t w() const { return w_; }
  std::int64_t tokens() const { return h_ * w_; }
  int radius() const { return radius_; }
  int max_distance() const { return static_cast<int>(h_ + w_ - 2); }
  /// Ordered token pairs (i, j) at distance d (d = 0: the T self-pairs).
  std::int64_t pairs_at(int d) const {
    return d >= 0 && d < static_cast<int>(pair_count_.size()) ? pair_count_[static_cast<std::size_t>(d)] : 0;
  }
  /// Partners of token i within the radius: indices [begin(i), end(i)) into partner() / dist().
  std::int64_t begin(std::int64_t i) const { return start_[static_cast<std::size_t>(i)]; }
  std::int64_t end(std::int64_t i) const { return start_[static_cast<std::size_t>(i + 1)]; }
  const std::int32_t* partner() const { return partner_.data(); }
  const std::uint8_t* dist() const { return dist_.data(); }

 private:
  std::int64_t h_, w_;
  int radius_;
  std::vector<std::int64_t> pair_count_, start_;
  std::vector<std::int32_t> partner_;
  std::vector<std::uint8_t> dist_;
};

/// The radius the metrics need for the given options.
inline int required_radius(const SpatialMetricOptions& o) {
  return std::max({o.cds_dmax, o.lds_far - 1, o.srss_far - 1, o.srss_near_max});
}

struct SpatialMetricsResult {
  std::vector<double> lds, cds, srss, rmsc;  // per image

  /// Mean over images; NaN entries are skipped when there are any (the reference's nanmean).
  static double mean(const std::vector<double>& v) {
    double s = 0;
    std::size_t n = 0;
    for (double x : v)
      if (!std::isnan(x)) {
        s += x;
        ++n;
      }
    return n ? s / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
  }
};

namespace detail {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Metrics of one image. x: [T, D] features; mask: [T] (1 = foreground) or null.
template <class T>
void spatial_metrics_one(const T* x, std::int64_t Tn, std::int64_t D, const std::uint8_t* mask, const GridDistances& g,
                         const SpatialMetricOptions& o, double& lds, double& cds, double& srss, double& rmsc) {
  // Normalised tokens (eps of LDS/CDS/RMSC) and the factor turning them into SRSS's normalisation.
  RowMatrix<T> u(Tn, D);
  std::vector<double> f(static_cast<std::size_t>(Tn));
  for (std::int64_t t = 0; t < Tn; ++t) {
    double ss = 0;
    for (std::int64_t d = 0; d < D; ++d) ss += static_cast<double>(x[t * D + d]) * static_cast<double>(x[t * D + d]);
    const double n = std::sqrt(ss), den = std::max(n, o.norm_eps);
    for (std::int64_t d = 0; d < D; ++d) u(t, d) = static_cast<T>(static_cast<double>(x[t * D + d]) / den);
    f[static_cast<std::size_t>(t)] = den / std::max(n, o.srss_norm_eps);
  }
  RowMatrix<T> G(Tn, Tn);
  G.noalias() = u * u.transpose();  // [T, T] cosines

  // Sums and counts of cosines at each distance within the radius, and over all pairs.
  const int R = g.radius();
  std::vector<double> bin(static_cast<std::size_t>(R + 1), 0.0);
  for (std::int64_t i = 0; i < Tn; ++i)
    for (std::int64_t k = g.begin(i); k < g.end(i); ++k) bin[g.dist()[k]] += static_cast<double>(G(i, g.partner()[k]));
  std::vector<double> colsum(static_cast<std::size_t>(D), 0.0);
  double self = 0;
  for (std::int64_t t = 0; t < Tn; ++t) {
    self += static_cast<double>(G(t, t));
    for (std::int64_t d = 0; d < D; ++d) colsum[static_cast<std::size_t>(d)] += static_cast<double>(u(t, d));
  }
  double total = 0;  // sum over all ordered pairs, self included
  for (double c : colsum) total += c * c;

  // LDS.
  const double local = g.pairs_at(1) ? bin[1] / static_cast<double>(g.pairs_at(1)) : std::numeric_limits<double>::quiet_NaN();
  double near_sum = self;
  std::int64_t near_count = Tn;
  for (int d = 1; d < o.lds_far; ++d) {
    near_sum += d <= R ? bin[static_cast<std::size_t>(d)] : 0.0;
    near_count += g.pairs_at(d);
  }
  const std::int64_t far_count = Tn * Tn - near_count;
  lds = local - (total - near_sum) / static_cast<double>(std::max<std::int64_t>(far_count, 1));

  // CDS: least-squares slope of the mean cosine at distance d, over the distances present.
  std::vector<double> xs, ys;
  for (int d = 1; d <= o.cds_dmax; ++d)
    if (g.pairs_at(d) > 0) {
      xs.push_back(d);
      ys.push_back(bin[static_cast<std::size_t>(d)] / static_cast<double>(g.pairs_at(d)));
    }
  if (xs.empty()) {
    cds = 0;
  } else {
    double mx = 0, my = 0;
    for (std::size_t k = 0; k < xs.size(); ++k) {
      mx += xs[k];
      my += ys[k];
    }
    mx /= static_cast<double>(xs.size());
    my /= static_cast<double>(xs.size());
    double sxy = 0, sxx = 0;
    for (std::size_t k = 0; k < xs.size(); ++k) {
      sxy += (xs[k] - mx) * (ys[k] - my);
      sxx += (xs[k] - mx) * (xs[k] - mx);
    }
    cds = -sxy / std::max(sxx, 1e-12);
  }

  // RMSC.
  double ms = 0;
  for (std::int64_t t = 0; t < Tn; ++t)
    for (std::int64_t d = 0; d < D; ++d) {
      const double c = static_cast<double>(u(t, d)) - colsum[static_cast<std::size_t>(d)] / static_cast<double>(Tn);
      ms += c * c;
    }
  ms /= static_cast<double>(Tn);
  rmsc = o.rmsc_sqrt ? std::sqrt(ms) : ms;

  // SRSS: far background sums come from the background total minus the near background.
  srss = std::numeric_limits<double>::quiet_NaN();
  if (!mask) return;
  std::int64_t nfg = 0;
  for (std::int64_t t = 0; t < Tn; ++t) nfg += mask[t] != 0;
  if (nfg < 2 || Tn - nfg < 1) return;
  std::vector<double> bg_sum(static_cast<std::size_t>(D), 0.0);  // sum of background tokens (SRSS normalisation)
  for (std::int64_t t = 0; t < Tn; ++t)
    if (!mask[t])
      for (std::int64_t d = 0; d < D; ++d)
        bg_sum[static_cast<std::size_t>(d)] += f[static_cast<std::size_t>(t)] * static_cast<double>(u(t, d));
  const std::int64_t nbg = Tn - nfg;
  double acc = 0;
  std::int64_t valid = 0;
  for (std::int64_t i = 0; i < Tn; ++i) {
    if (!mask[i]) continue;
    const double fi = f[static_cast<std::size_t>(i)];
    double pos = 0, neg_near = 0;
    std::int64_t npos = 0, nneg_near = 0;
    for (std::int64_t k = g.begin(i); k < g.end(i); ++k) {
      const std::int32_t j = g.partner()[k];
      const int d = g.dist()[k];
      const double c = fi * f[static_cast<std::size_t>(j)] * static_cast<double>(G(i, j));
      if (mask[j] && d >= o.srss_near_min && d <= o.srss_near_max) {
        pos += c;
        ++npos;
      }
      if (!mask[j] && d < o.srss_far) {
        neg_near += c;
        ++nneg_near;
      }
    }
    if (o.srss_near_min <= 0) {  // distance 0: the anchor itself
      pos += fi * fi * static_cast<double>(G(i, i));
      ++npos;
    }
    double bg_dot = 0;
    for (std::int64_t d = 0; d < D; ++d) bg_dot += fi * static_cast<double>(u(i, d)) * bg_sum[static_cast<std::size_t>(d)];
    const std::int64_t nneg = nbg - nneg_near;
    if (npos > 0 && nneg > 0) {
      acc += pos / static_cast<double>(npos) - (bg_dot - neg_near) / static_cast<double>(nneg);
      ++valid;
    }
  }
  if (valid) srss = acc / static_cast<double>(valid);
}

}  // namespace detail

/// The four metrics of every image. features [B, T, D] (T = grid.tokens()); masks [B, T]
/// (nonzero = foreground), or an empty view: SRSS is then NaN for every image. The grid's
/// radius must be at least required_radius(options). Work is parallel over images.
template <class T>
SpatialMetricsResult spatial_metrics(const CpuContext& ctx, In<T> features, const GridDistances& grid, In<std::uint8_t> masks,
                                     const SpatialMetricOptions& options = {}) {
  IREPA_CHECK(features.rank() == 3 && features.size(1) == grid.tokens(),
              "spatial_metrics: features have shape {}, expected [B, {}, D] for a {}x{} grid", features.shape().str(),
              grid.tokens(), grid.h(), grid.w());
  IREPA_CHECK(masks.numel() == 0 || masks.shape() == Shape({features.size(0), grid.tokens()}),
              "spatial_metrics: masks have shape {}, expected [{}, {}]", masks.shape().str(), features.size(0), grid.tokens());
  IREPA_CHECK(grid.radius() >= required_radius(options), "spatial_metrics: grid radius {} is below the {} these options need",
              grid.radius(), required_radius(options));
  IREPA_CHECK(options.lds_far >= 1 && options.srss_far >= 1 && options.srss_near_max >= options.srss_near_min,
              "spatial_metrics: bad distances (lds_far {}, srss near [{}, {}], srss_far {})", options.lds_far,
              options.srss_near_min, options.srss_near_max, options.srss_far);
  check_contiguous("spatial_metrics", features, masks);
  const std::int64_t B = features.size(0), Tn = features.size(1), D = features.size(2);
  SpatialMetricsResult r;
  r.lds.resize(static_cast<std::size_t>(B));
  r.cds.resize(static_cast<std::size_t>(B));
  r.srss.resize(static_cast<std::size_t>(B));
  r.rmsc.resize(static_cast<std::size_t>(B));
  ctx.parallel_for(B, 2.0 * static_cast<double>(Tn * Tn * D), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const auto i = static_cast<std::size_t>(b);
      detail::spatial_metrics_one<T>(features.data() + b * Tn * D, Tn, D, masks.numel() ? masks.data() + b * Tn : nullptr, grid,
                                     options, r.lds[i], r.cds[i], r.srss[i], r.rmsc[i]);
    }
  });
  return r;
}

}  // namespace irepa::metrics
