#pragma once
// Copies, fills, sums, adaLN chunking, broadcast adds and unpatchify for device-generic layers.
// The op family's backends: ops/cpu/tensor_ops.hpp (CpuContext overloads); under nvcc the CUDA
// overloads (ops/cuda/tensor_ops.cuh) come with it.

#include "irepa/ops/cpu/tensor_ops.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/tensor_ops.cuh"
#endif
