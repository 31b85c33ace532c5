#pragma once
// Rotary position embedding (interleaved and half-split pairs) and 2-D table builders.
// The op family's backends: ops/cpu/rope.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) will live in ops/cuda/rope.cuh and are compiled by nvcc only.

#include "irepa/ops/cpu/rope.hpp"
