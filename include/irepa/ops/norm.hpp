#pragma once
// LayerNorm without affine and RMSNorm with weight, over the last dimension.
// The op family's backends: ops/cpu/norm.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) are in ops/cuda/norm.cuh, included by .cu files (nvcc) only.

#include "irepa/ops/cpu/norm.hpp"
