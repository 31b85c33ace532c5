#pragma once
// Max pooling on channels-last grids (forward only; the frozen encoders use it).
// The op family's backends: ops/cpu/pool.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/pool.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/pool.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/pool.cuh"
#endif
