#pragma once
// Multi-head softmax attention from fused qkv, with optional q/k RMSNorm and RoPE.
// The op family's backends: ops/cpu/attention.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) will live in ops/cuda/attention.cuh and are compiled by nvcc only.

#include "irepa/ops/cpu/attention.hpp"
