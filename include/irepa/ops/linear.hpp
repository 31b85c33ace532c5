#pragma once
// Linear layer op: y = x W^T + b (GEMM + bias), forward and backward.
// The op family's backends: ops/cpu/linear.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/linear.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/linear.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/linear.cuh"
#endif
