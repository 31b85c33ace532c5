#pragma once
// Parameter initialisers, as the reference's torch.nn.init calls, drawing from a Philox stream.
// Each call consumes the generator in a fixed order, so a seed fixes every initial weight.

#include <cmath>

#include "irepa/core/rng.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::nn {

/// xavier_uniform_: U(-a, a), a = sqrt(6 / (fan_in + fan_out)), on w viewed as [fan_out, fan_in]
/// (a conv weight [O, I, k, k] counts fan_in = I k k, fan_out = O, as torch does when the
/// reference re-initialises the patch embedding through w.view([O, -1])).
template <class T>
void xavier_uniform(Philox& rng, TensorView<T> w) {
  IREPA_CHECK(w.rank() >= 2, "xavier_uniform: weight has shape {}, expected at least 2 dimensions", w.shape().str());
  const double fan_out = static_cast<double>(w.size(0));
  const double fan_in = static_cast<double>(w.numel()) / fan_out;
  const T a = static_cast<T>(std::sqrt(6.0 / (fan_in + fan_out)));
  rng.uniform(w, -a, a);
}

/// PyTorch's default for nn.Linear / nn.Conv2d (kaiming_uniform_ with a = sqrt(5) and the
/// matching bias rule): weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
template <class T>
void torch_default_init(Philox& rng, TensorView<T> w, TensorView<T> b) {
  const double fan_in = static_cast<double>(w.numel()) / static_cast<double>(w.size(0));
  const T bound = static_cast<T>(1.0 / std::sqrt(fan_in));
  rng.uniform(w, -bound, bound);
  if (b.numel()) rng.uniform(b, -bound, bound);
}

template <class T>
void normal_init(Philox& rng, TensorView<T> w, double std) {
  rng.normal(w, T(0), static_cast<T>(std));
}

template <class T>
void zeros(TensorView<T> w) {
  w.fill(T(0));
}

}  // namespace irepa::nn
