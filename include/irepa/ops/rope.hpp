#pragma once
// Rotary position embedding (interleaved and half-split pairs) and 2-D table builders.
// The op family's backends: ops/cpu/rope.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/rope.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/rope.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/rope.cuh"
#endif
