#pragma once
// Random fills on the context's device from a Philox generator: uniform and normal draws whose
// values are the same bits on every device (core/rng.hpp), so a training step can draw its time
// and noise where the model is and nothing but the batch has to cross to the GPU.
// The op family's backends: ops/cpu/random.hpp and, under nvcc, ops/cuda/random.cuh.

#include "irepa/ops/cpu/random.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/random.cuh"
#endif
