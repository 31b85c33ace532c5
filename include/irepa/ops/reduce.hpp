#pragma once
// Mean / unbiased std over tokens, L2 normalisation and cosine similarity.
// The op family's backends: ops/cpu/reduce.hpp (CpuContext overloads); the CUDA overloads
// (CudaContext) will live in ops/cuda/reduce.cuh and are compiled by nvcc only.

#include "irepa/ops/cpu/reduce.hpp"
