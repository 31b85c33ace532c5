#pragma once
// The SD-VAE's latent arithmetic: the posterior from the encoder's moments, the reference's
// sample_posterior, and the inverse scaling before decoding.
// The op family's backends: ops/cpu/latent.hpp (CpuContext overloads) and, when nvcc compiles
// the including file, ops/cuda/latent.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/latent.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/latent.cuh"
#endif
