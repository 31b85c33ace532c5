#pragma once
// Linear layer op: y = x W^T + b (GEMM + bias), forward and backward.
// The op family's backends: ops/cpu/linear.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) will live in ops/cuda/linear.cuh and are compiled by nvcc only.

#include "irepa/ops/cpu/linear.hpp"
