#pragma once
// irepa-bench-encoder's GPU half: a ViT encoder built on the GPU (VitEncoder<float, Cuda>),
// timed there. Defined in bench_encoder_cuda.cu, which nvcc compiles when CUDA is on.

#include <cstdint>
#include <string>
#include <vector>

#include "irepa/models/vit_encoder.hpp"

namespace bench {

struct EncoderTiming {
  std::vector<double> seconds;  // each timed batch, preprocessing included, synchronised
  double peak_gib = 0;          // peak device memory of one batch, above the weights and images
};

/// cfg's encoder on GPU 0 with the file's weights (random N(0, 0.02) without one), matmul
/// precision fp32 / tf32 / bf16 and fused attention on or off; one warm-up batch, then `steps`.
EncoderTiming time_vit_cuda(const irepa::VitConfig& cfg, const std::string& weights, std::int64_t batch, std::int64_t resolution,
                            int steps, const std::string& precision, bool fused_attention);

}  // namespace bench
