#pragma once
// Multi-head softmax attention from fused qkv, with optional q/k RMSNorm and RoPE.
// The op family's backends: ops/cpu/attention.hpp (CpuContext overloads) and, when nvcc compiles the
// including file, ops/cuda/attention.cuh (CudaContext overloads), so device-generic code sees both.

#include "irepa/ops/cpu/attention.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/attention.cuh"
#endif
