#pragma once
// Correlation coefficients between two samples: Pearson's r, Spearman's rho (Pearson on ranks,
// ties get their average rank) and Kendall's tau-b (ties in either sample accounted for), as
// scipy.stats computes them; plus the least-squares line y = slope x + intercept.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "irepa/core/error.hpp"

namespace irepa::metrics {

namespace detail {
inline void check_pair(const char* what, const std::vector<double>& x, const std::vector<double>& y) {
  IREPA_CHECK(x.size() == y.size(), "{}: samples have {} and {} values", what, x.size(), y.size());
  IREPA_CHECK(x.size() >= 2, "{}: needs at least 2 pairs, got {}", what, x.size());
}
}  // namespace detail

/// Pearson's r (NaN when either sample is constant).
inline double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  detail::check_pair("pearson", x, y);
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : std::nan("");
}

/// Ranks 1..n, ties sharing their average rank.
inline std::vector<double> average_ranks(const std::vector<double>& v) {
  std::vector<std::size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < idx.size();) {
    std::size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    const double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (std::size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}

/// Spearman's rho: Pearson's r of the average ranks.
inline double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  detail::check_pair("spearman", x, y);
  return pearson(average_ranks(x), average_ranks(y));
}

/// Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y)), O(n^2).
inline double kendall_tau_b(const std::vector<double>& x, const std::vector<double>& y) {
  detail::check_pair("kendall", x, y);
  double conc = 0, disc = 0, tx = 0, ty = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    for (std::size_t j = i + 1; j < x.size(); ++j) {
      const double dx = x[i] - x[j], dy = y[i] - y[j];
      if (dx == 0 && dy == 0) continue;  // tied in both: counted in neither denominator term
      if (dx == 0) {
        ++tx;
      } else if (dy == 0) {
        ++ty;
      } else if ((dx > 0) == (dy > 0)) {
        ++conc;
      } else {
        ++disc;
      }
    }
  const double den = std::sqrt((conc + disc + tx) * (conc + disc + ty));
  return den > 0 ? (conc - disc) / den : std::nan("");
}

struct Line {
  double slope = 0, intercept = 0;
};
/// Least-squares fit y = slope x + intercept.
inline Line fit_line(const std::vector<double>& x, const std::vector<double>& y) {
  detail::check_pair("fit_line", x, y);
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
  }
  IREPA_CHECK(sxx > 0, "fit_line: all {} x values are equal", x.size());
  return {sxy / sxx, my - sxy / sxx * mx};
}

}  // namespace irepa::metrics
