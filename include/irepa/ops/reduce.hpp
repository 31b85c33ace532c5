#pragma once
// Mean / unbiased std over tokens, L2 normalisation and cosine similarity.
// The op family's backends: ops/cpu/reduce.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/reduce.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/reduce.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/reduce.cuh"
#endif
