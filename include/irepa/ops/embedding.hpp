#pragma once
// Embedding lookup, 2-D sin-cos position tables and timestep features.
// The op family's backends: ops/cpu/embedding.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/embedding.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/embedding.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/embedding.cuh"
#endif
