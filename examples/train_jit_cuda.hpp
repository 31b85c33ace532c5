#pragma once
// irepa-train-jit's GPU path (--device cuda): the same run as on the CPU, with the model, its
// optimizer and both EMAs on the GPU. Defined in train_jit_cuda.cu (compiled by nvcc, so that the
// CPU program never instantiates CUDA code and nvcc never the CPU model). Sample grids are drawn
// with the model on the GPU (the sampler's state stays on the host).

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include <irepa/align/dispatch.hpp>
#include <irepa/data/fashion_mnist.hpp>
#include <irepa/data/loader.hpp>
#include <irepa/data/shards.hpp>
#include <irepa/models/jit.hpp>
#include <irepa/models/target_encoder.hpp>
#include <irepa/train/jit_trainer.hpp>

namespace irepa::examples {

struct CudaJiTJob {
  HeadChoice head;
  JiTConfig model;
  std::uint64_t seed = 0;
  JiTTrainerOptions options;
  std::vector<TargetEncoder> online;
  nlohmann::json config;
  int device = 0;
  MatmulPrecision precision = MatmulPrecision::fp32;
  bool fused_attention = false;
};

/// Builds the model on GPU `job.device`, initialises it from job.seed (on the host, as the CPU
/// run does) and trains it; prints the model line first.
void train_jit_cuda(const CudaJiTJob& job, const data::ImageDataset& ds);
void train_jit_cuda(const CudaJiTJob& job, const data::ShardedDataset& ds);

}  // namespace irepa::examples
