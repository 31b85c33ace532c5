#pragma once
// The optimizer's passes over a flat arena: squared gradient norm and clip factor into device
// scalars, the fused AdamW + EMA update of a run, the EMA update.
// The op family's backends: ops/cpu/optim.hpp and, under nvcc, ops/cuda/optim.cuh.

#include "irepa/ops/cpu/optim.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/optim.cuh"
#endif
