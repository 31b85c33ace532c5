#pragma once
// Convolutions: k x k same-padded on channels-last token grids, and patchify (kernel = stride = p).
// The op family's backends: ops/cpu/conv.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/conv.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/conv.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/conv.cuh"
#endif
