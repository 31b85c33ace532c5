#pragma once
// GELU (tanh approximation), SiLU and SwiGLU.
// The op family's backends: ops/cpu/activation.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) will live in ops/cuda/activation.cuh and are compiled by nvcc only.

#include "irepa/ops/cpu/activation.hpp"
