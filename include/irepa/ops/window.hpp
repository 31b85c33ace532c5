#pragma once
// Windowed attention for SAM and SAM2 (forward only): window partition / merge of channels-last
// grids and softmax attention inside windows with relative positions or pooled queries.
// The op family's backends: ops/cpu/window.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/window.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/window.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/window.cuh"
#endif
