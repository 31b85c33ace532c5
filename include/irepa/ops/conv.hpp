#pragma once
// Convolutions: k x k same-padded on channels-last token grids, and patchify (kernel = stride = p).
// The op family's backends: ops/cpu/conv.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) will live in ops/cuda/conv.cuh and are compiled by nvcc only.

#include "irepa/ops/cpu/conv.hpp"
