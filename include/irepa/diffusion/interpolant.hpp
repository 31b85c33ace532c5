#pragma once
// The SiT interpolant x_t = alpha(t) x + sigma(t) n, and how training draws t.
//  - path linear: alpha = 1 - t, sigma = t;  cosine: alpha = cos(pi t / 2), sigma = sin(pi t / 2)
//  - time sampling uniform: t ~ U(0, 1); lognormal: s = exp(N(0, 1)), t = s / (1 + s) (linear)
//    or (2 / pi) atan(s) (cosine)
// Coefficients are computed in double and rounded once to the tensor type. Drawing t and the
// noise, and the interpolation itself, are ops (ops/diffusion.hpp) that run where the model is.

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

/// The path's coefficients at time t (host and device code alike).
IREPA_HOST_DEVICE inline PathCoefficients interpolant(PathType path, double t) {
  if (path == PathType::Linear) return {1.0 - t, t, -1.0, 1.0};
  constexpr double half_pi = 1.5707963267948966;
  const double a = t * half_pi;
  return {::cos(a), ::sin(a), -half_pi * ::sin(a), half_pi * ::cos(a)};
}

/// The lognormal time of one draw n ~ N(0, 1): s = exp(n), then s / (1 + s) on the linear path
/// or (2 / pi) atan(s) on the cosine path.
IREPA_HOST_DEVICE inline double lognormal_time(PathType path, double n) {
  const double s = ::exp(n);
  return path == PathType::Linear ? s / (1 + s) : 2 / 3.141592653589793 * ::atan(s);
}

}  // namespace irepa
