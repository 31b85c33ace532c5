#pragma once
// The CPU double SD-VAE paths test_cuda_vae compares with, behind plain functions compiled by
// the host compiler (vae_reference.cpp), so nvcc never instantiates the CPU ops' Eigen code.

#include <string>

#include "irepa/core/tensor.hpp"
#include "irepa/models/sd_vae.hpp"

namespace vae_ref {

using T2 = irepa::Tensor<double>;

T2 conv2d(const T2& x, const T2& w, const T2& b, const irepa::ops::Conv2dSpec& s);  // x [B, H, W, Ci]
T2 group_norm(const T2& x, std::int64_t groups, double eps, const T2& w, const T2& b, bool silu);
T2 upsample2x(const T2& x);
T2 channels_first(const T2& x);
/// The VAE of cfg with the file's weights (the reference's names): moments of x, decode of z.
void vae(const irepa::SdVaeConfig& cfg, const std::string& weights, const T2& x, const T2& z, T2& moments, T2& decoded);

}  // namespace vae_ref
