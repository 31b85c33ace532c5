#pragma once
// GELU (tanh approximation), SiLU, ReLU and SwiGLU.
// The op family's backends: ops/cpu/activation.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/activation.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/activation.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/activation.cuh"
#endif
