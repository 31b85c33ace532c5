#pragma once
// The public gradient checker, for our ops and layers and for user-written policies.
//
// It checks a hand-written backward pass against central differences of f = sum_i <out_i, g_i>
// in double, with g_i drawn at random (N(0, 1)), and it checks the backward conventions:
//  - input gradients are ASSIGNED: they are pre-filled with NaN, so an entry the backward pass
//    does not write (or adds to instead of assigning) shows up as NaN;
//  - parameter gradients ACCUMULATE: they are pre-filled with random values R and the analytic
//    gradient is taken as (grad - R), so a backward pass that overwrites instead of adding, or
//    leaves entries out, fails the comparison.
//
// Usage:
//   auto r = irepa::check::gradient_check(
//       [&] { /* run forward from the current values; return the output Tensor<double> */ },
//       [&](const std::vector<irepa::Tensor<double>>& g) { /* run backward with d(out) = g[0] */ },
//       {irepa::check::input("x", x, dx), irepa::check::param("w", w, dw)});
//   REQUIRE(r.ok());   // r.report() names every tensor with its relative error
// The forward callable may also return std::vector<Tensor<double>> (several outputs, one g each).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "irepa/core/rng.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::check {

/// A tensor whose gradient is checked: its value (perturbed in place by the checker) and the
/// gradient buffer the backward pass writes.
struct GradTarget {
  std::string name;
  TensorView<double> value;
  TensorView<double> grad;
  bool accumulates = false;  // parameter (true) or input (false)
};
inline GradTarget input(std::string name, TensorView<double> value, TensorView<double> grad) {
  return {std::move(name), value, grad, false};
}
inline GradTarget param(std::string name, TensorView<double> value, TensorView<double> grad) {
  return {std::move(name), value, grad, true};
}

struct GradCheckOptions {
  double step = 1e-5;        // central-difference step h
  double tolerance = 1e-6;   // on ||analytic - numeric|| / max(||numeric||, ||analytic||)
  std::int64_t max_elements = 0;  // per tensor: 0 checks every element, else a random subset
  std::uint64_t seed = 0;    // 0: a fresh seed per call (random_device)
};

struct GradCheckEntry {
  std::string name;
  std::int64_t checked = 0;
  std::int64_t unwritten = 0;  // NaN entries left in an input gradient
  double rel_error = 0;
  double max_abs_error = 0;
  double numeric_norm = 0;
};

struct GradCheckResult {
  std::vector<GradCheckEntry> entries;
  double tolerance = 0;
  std::uint64_t seed = 0;

  bool ok() const {
    return std::all_of(entries.begin(), entries.end(), [&](const GradCheckEntry& e) {
      return e.unwritten == 0 && e.rel_error <= tolerance && std::isfinite(e.rel_error);
    });
  }
  double worst() const {
    double w = 0;
    for (const auto& e : entries) w = std::max(w, std::isfinite(e.rel_error) ? e.rel_error : INFINITY);
    return w;
  }
  std::string report() const {
    std::string s = fmt::format("gradient check (seed {}, tolerance {:.1e}):\n", seed, tolerance);
    for (const auto& e : entries)
      s += fmt::format("  {:<28} rel {:.3e}  max abs {:.3e}  |numeric| {:.3e}  ({} checked{}){}\n", e.name, e.rel_error,
                       e.max_abs_error, e.numeric_norm, e.checked,
                       e.unwritten ? fmt::format(", {} entries never written", e.unwritten) : std::string(),
                       (e.unwritten == 0 && e.rel_error <= tolerance) ? "" : "  <-- FAIL");
    return s;
  }
};

namespace detail {
template <class F>
std::vector<Tensor<double>> run_forward(F& f) {
  using R = std::invoke_result_t<F&>;
  if constexpr (std::is_same_v<R, Tensor<double>>) {
    std::vector<Tensor<double>> v;
    v.push_back(f());
    return v;
  } else {
    return f();
  }
}
inline double inner(const std::vector<Tensor<double>>& out, const std::vector<Tensor<double>>& g) {
  double s = 0;
  for (std::size_t i = 0; i < out.size(); ++i)
    for (std::int64_t j = 0; j < out[i].numel(); ++j) s += out[i][j] * g[i][j];
  return s;
}
}  // namespace detail

/// Runs the check; see the file comment. forward: () -> Tensor<double> or vector of them;
/// backward: (const std::vector<Tensor<double>>& g) -> void.
template <class Forward, class Backward>
GradCheckResult gradient_check(Forward&& forward, Backward&& backward, std::vector<GradTarget> targets,
                               GradCheckOptions opt = {}) {
  GradCheckResult res;
  res.tolerance = opt.tolerance;
  res.seed = opt.seed ? opt.seed : (static_cast<std::uint64_t>(std::random_device{}()) << 32 | std::random_device{}());
  Philox rng(res.seed, 0x67726164u);

  std::vector<Tensor<double>> out = detail::run_forward(forward);
  std::vector<Tensor<double>> g;
  for (const auto& o : out) {
    Tensor<double> gi(o.shape());
    rng.normal(gi.view());
    g.push_back(std::move(gi));
  }
  // Pre-fill: NaN for inputs (must be assigned), random R for parameters (must accumulate).
  std::vector<Tensor<double>> prefill;
  for (const auto& t : targets) {
    check_shape("gradient_check", "gradient of " + t.name, t.grad.shape(), t.value.shape());
    Tensor<double> r(t.grad.shape());
    if (t.accumulates)
      rng.normal(r.view());
    else
      r.fill(std::numeric_limits<double>::quiet_NaN());
    t.grad.copy_from(r.cview());
    prefill.push_back(std::move(r));
  }
  backward(g);

  std::mt19937_64 pick(res.seed);
  for (std::size_t k = 0; k < targets.size(); ++k) {
    const GradTarget& t = targets[k];
    GradCheckEntry e;
    e.name = t.name;
    const std::int64_t n = t.value.numel();
    std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) idx[static_cast<std::size_t>(i)] = i;
    if (opt.max_elements > 0 && n > opt.max_elements) {
      std::shuffle(idx.begin(), idx.end(), pick);
      idx.resize(static_cast<std::size_t>(opt.max_elements));
    }
    double diff2 = 0, num2 = 0, ana2 = 0;
    for (std::int64_t i = 0; i < n; ++i)
      if (!t.accumulates && std::isnan(t.grad.element_at(i))) ++e.unwritten;
    for (std::int64_t i : idx) {
      double& v = t.value.element_at(i);
      const double v0 = v;
      v = v0 + opt.step;
      const double fp = detail::inner(detail::run_forward(forward), g);
      v = v0 - opt.step;
      const double fm = detail::inner(detail::run_forward(forward), g);
      v = v0;
      const double numeric = (fp - fm) / (2 * opt.step);
      const double analytic = t.grad.element_at(i) - (t.accumulates ? prefill[k].view().element_at(i) : 0.0);
      const double d = std::isnan(analytic) ? 0.0 : analytic - numeric;
      diff2 += d * d;
      num2 += numeric * numeric;
      ana2 += std::isnan(analytic) ? 0.0 : analytic * analytic;
      e.max_abs_error = std::max(e.max_abs_error, std::abs(d));
      ++e.checked;
    }
    e.numeric_norm = std::sqrt(num2);
    const double denom = std::max(std::sqrt(num2), std::sqrt(ana2));
    // Both gradients ~0 (within what central differences resolve): no relative error to speak of.
    e.rel_error = denom < 1e-12 ? std::sqrt(diff2) : std::sqrt(diff2) / denom;
    res.entries.push_back(std::move(e));
  }
  return res;
}

}  // namespace irepa::check
