#pragma once
// The HOG target encoder's computation (models/hog.hpp): images in 0..255 -> [B, grid^2, dim].
// The op family's backends: ops/cpu/hog.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/hog.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/hog.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/hog.cuh"
#endif
