#pragma once
// Linear layer op: y = x W^T + b (GEMM + bias), forward and backward.
// The op family's backends: ops/cpu/linear.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) are in ops/cuda/linear.cuh, included by .cu files (nvcc) only.

#include "irepa/ops/cpu/linear.hpp"
