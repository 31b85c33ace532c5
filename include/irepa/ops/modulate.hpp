#pragma once
// adaLN modulation y = x (1 + scale) + shift with per-image shift and scale.
// The op family's backends: ops/cpu/modulate.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) are in ops/cuda/modulate.cuh, included by .cu files (nvcc) only.

#include "irepa/ops/cpu/modulate.hpp"
