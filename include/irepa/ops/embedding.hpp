#pragma once
// Embedding lookup, 2-D sin-cos position tables and timestep features.
// The op family's backends: ops/cpu/embedding.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) will live in ops/cuda/embedding.cuh and are compiled by nvcc only.

#include "irepa/ops/cpu/embedding.hpp"
