#pragma once
// LayerNorm without affine and RMSNorm with weight, over the last dimension.
// The op family's backends: ops/cpu/norm.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/norm.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/norm.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/norm.cuh"
#endif
