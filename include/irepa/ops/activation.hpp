#pragma once
// GELU (tanh approximation), SiLU and SwiGLU.
// The op family's backends: ops/cpu/activation.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) are in ops/cuda/activation.cuh, included by .cu files (nvcc) only.

#include "irepa/ops/cpu/activation.hpp"
