#pragma once
// irepa-bench-encoder's GPU half: a target encoder built on the GPU (VitEncoder, SamEncoder,
// Sam2Encoder or VggEncoder on Cuda, or the HOG op), timed there. Defined in bench_encoder_cuda.cu, which
// nvcc compiles when CUDA is on.

#include <cstdint>
#include <string>
#include <vector>

#include "irepa/models/sam2_encoder.hpp"
#include "irepa/models/sam_encoder.hpp"
#include "irepa/models/vgg_encoder.hpp"
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

/// VGG's pool4 features on GPU 0 (the file's weights, or random N(0, 0.02)), convolutions at the
/// given matmul precision.
EncoderTiming time_vgg_cuda(const irepa::VggConfig& cfg, const std::string& weights, std::int64_t batch, std::int64_t resolution,
                            int steps, const std::string& precision);

/// SAM's and SAM2's image encoders on GPU 0 (the file's weights, or random N(0, 0.02)), read on
/// the host and placed there as the trainer does.
EncoderTiming time_sam_cuda(const irepa::SamConfig& cfg, const std::string& weights, std::int64_t batch, std::int64_t resolution,
                            int steps, const std::string& precision);
EncoderTiming time_sam2_cuda(const irepa::Sam2Config& cfg, const std::string& weights, std::int64_t batch, std::int64_t resolution,
                             int steps, const std::string& precision);

/// HOG tokens (`hog-x-g<grid>_d<dim>`) on GPU 0.
EncoderTiming time_hog_cuda(const std::string& name, std::int64_t batch, std::int64_t resolution, int steps);

}  // namespace bench
