#pragma once
// LayerNorm without affine and RMSNorm with weight, over the last dimension.
// The op family's backends: ops/cpu/norm.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) will live in ops/cuda/norm.cuh and are compiled by nvcc only.

#include "irepa/ops/cpu/norm.hpp"
