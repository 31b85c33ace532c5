#pragma once
// The SiT interpolant x_t = alpha(t) x + sigma(t) n, and how training draws t.
//  - path linear: alpha = 1 - t, sigma = t;  cosine: alpha = cos(pi t / 2), sigma = sin(pi t / 2)
//  - time sampling uniform: t ~ U(0, 1); lognormal: s = exp(N(0, 1)), t = s / (1 + s) (linear)
//    or (2 / pi) atan(s) (cosine)
// Coefficients are computed in double and rounded once to the tensor type.

#include <cmath>
#include <numbers>
#include <string>
#include <string_view>

#include "irepa/core/error.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa {

enum class PathType { Linear, Cosine };
enum class TimeSampling { Uniform, Lognormal };

inline PathType parse_path_type(std::string_view s) {
  if (s == "linear") return PathType::Linear;
  if (s == "cosine") return PathType::Cosine;
  fail("path type '{}' is not known; expected linear or cosine", s);
}
inline std::string_view name_of(PathType p) { return p == PathType::Linear ? "linear" : "cosine"; }
inline TimeSampling parse_time_sampling(std::string_view s) {
  if (s == "uniform") return TimeSampling::Uniform;
  if (s == "lognormal") return TimeSampling::Lognormal;
  fail("time sampling (weighting) '{}' is not known; expected uniform or lognormal", s);
}
inline std::string_view name_of(TimeSampling w) { return w == TimeSampling::Uniform ? "uniform" : "lognormal"; }

struct PathCoefficients {
  double alpha, sigma, d_alpha, d_sigma;
};

inline PathCoefficients interpolant(PathType path, double t) {
  if (path == PathType::Linear) return {1.0 - t, t, -1.0, 1.0};
  const double a = t * std::numbers::pi / 2;
  return {std::cos(a), std::sin(a), -std::numbers::pi / 2 * std::sin(a), std::numbers::pi / 2 * std::cos(a)};
}

/// Fills t [B] with training times.
template <class T>
void sample_time(Philox& rng, TimeSampling how, PathType path, TensorView<T> t) {
  if (how == TimeSampling::Uniform) {
    rng.uniform(t);
    return;
  }
  Tensor<double> n(t.shape());
  rng.normal(n.view());
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const double s = std::exp(n[i]);
    t.data()[i] = static_cast<T>(path == PathType::Linear ? s / (1 + s) : 2 / std::numbers::pi * std::atan(s));
  }
}

}  // namespace irepa
