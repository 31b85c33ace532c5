#pragma once
// The diffusion objectives' and samplers' elementwise steps: training times, SiT's interpolant
// and per-image MSE, JiT's interpolation and velocity MSE, and the sampler updates (Euler, Heun,
// guidance mixing, the SDE's drift and noisy step, an x-prediction's velocity).
// The op family's backends: ops/cpu/diffusion.hpp and, under nvcc, ops/cuda/diffusion.cuh.

#include "irepa/ops/cpu/diffusion.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/diffusion.cuh"
#endif
