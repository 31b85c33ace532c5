#pragma once
// The CPU double paths test_cuda_inception compares with, behind plain functions compiled by
// the host compiler (inception_reference.cpp), so nvcc never instantiates the CPU ops' Eigen code.

#include <string>

#include "irepa/core/tensor.hpp"
#include "irepa/ops/cpu/pool.hpp"

namespace inception_ref {

using T2 = irepa::Tensor<double>;

T2 pool2d(const T2& x, const irepa::ops::Pool2dSpec& s);  // x [B, H, W, C]
T2 resize_tf1(const T2& x, std::int64_t out_h, std::int64_t out_w);  // x [N, C, H, W]
/// The FID Inception-v3 with the file's weights (torch-fidelity names) on images [B, H, W, 3]
/// (uint8 values): pool_3, spatial features, unbiased logits.
void forward(const std::string& weights, const T2& images, T2& pool3, T2& spatial, T2& logits);

}  // namespace inception_ref
