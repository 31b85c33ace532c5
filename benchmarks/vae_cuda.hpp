#pragma once
// irepa-bench-vae's GPU half (bench_vae_cuda.cu, compiled by nvcc when CUDA is on).

#include <string>
#include <vector>

#include "irepa/models/sd_vae.hpp"

namespace bench {

struct VaeTiming {
  std::vector<double> encode, decode;  // seconds per timed batch, synchronised
};

/// The VAE on GPU 0 (the file's weights, or random), products at fp32 / tf32 / bf16; one
/// warm-up batch of each part, then `steps`.
VaeTiming time_vae_cuda(const irepa::SdVaeConfig& cfg, const std::string& weights, std::int64_t batch, std::int64_t resolution,
                        int steps, const std::string& precision);

}  // namespace bench
