#pragma once
// Random fills, CPU backend: the generator's own host fills (ops/cuda/random.cuh draws the same
// values on the GPU).

#include "irepa/core/context.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

/// out = lo + (hi - lo) U[0, 1), advancing rng as Philox::uniform does.
template <class T>
void random_uniform(const CpuContext&, Philox& rng, TensorView<T> out, std::type_identity_t<T> lo = T(0),
                    std::type_identity_t<T> hi = T(1)) {
  rng.uniform(out, lo, hi);
}

/// out = mean + std N(0, 1), advancing rng as Philox::normal does.
template <class T>
void random_normal(const CpuContext&, Philox& rng, TensorView<T> out, std::type_identity_t<T> mean = T(0),
                   std::type_identity_t<T> std = T(1)) {
  rng.normal(out, mean, std);
}

}  // namespace irepa::ops
