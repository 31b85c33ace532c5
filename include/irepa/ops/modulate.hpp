#pragma once
// adaLN modulation y = x (1 + scale) + shift with per-image shift and scale.
// The op family's backends: ops/cpu/modulate.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/modulate.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/modulate.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/modulate.cuh"
#endif
