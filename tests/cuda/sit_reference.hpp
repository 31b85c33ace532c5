#pragma once
// The CPU side of the whole-model CUDA test: one SiT iREPA objective step (forward, both losses,
// backward into every parameter) on the CPU, in double or float, from given parameter values
// and inputs. Compiled by the host compiler (sit_reference.cpp), so nvcc never instantiates the
// CPU model.

#include <cstdint>
#include <vector>

#include "irepa/core/tensor.hpp"
#include "irepa/data/fashion_mnist.hpp"
#include "irepa/diffusion/jit_objective.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/models/jit.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/train/trainer.hpp"

namespace sit_ref {

/// The inputs of one step; params are the arena's values in state_dict order.
struct Case {
  irepa::SiTConfig cfg;
  irepa::Tensor<float> params, x, t, noise, z;  // x, noise [B, C, H, W]; t [B]; z [B, T, Z]
  irepa::Tensor<std::int64_t> y;                // [B]
};

struct Result {
  double total = 0, denoising = 0, alignment = 0;
  irepa::Tensor<double> out, zhat, grads;  // model output, projected tokens, the gradient arena
  std::vector<std::int64_t> offsets;       // each parameter's first gradient value
  std::vector<std::string> names;
};

/// SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>> on the CPU, in double or float.
Result run(const Case& c, bool in_double);

}  // namespace sit_ref

namespace sit_ref {
/// AdamW<float> (lr 1e-4, weight decay 0.01 on weights only, the given clip factor) with an
/// EMA (decay 0.9999) fused, one step on the CPU from params and grads; params and ema updated.
void adamw_step(const irepa::SiTConfig& cfg, irepa::Tensor<float>& params, const irepa::Tensor<float>& grads,
                irepa::Tensor<float>& ema, double clip);
}  // namespace sit_ref

namespace sit_ref {
/// Writes the small image shards of the trainer test (2 x 12 images [1, 8, 8], labels,
/// features.hog [12, 16, 12]) into dir.
void write_shards(const std::string& dir, std::uint64_t seed);
/// The trainer test's run on the CPU (float): the total loss of every step.
std::vector<double> train_losses_cpu(const std::string& shards, const std::string& run_dir);
/// The trainer test's model, options and objective (both devices use these).
irepa::SiTConfig train_model_config();
irepa::TrainerOptions train_options(const std::string& run_dir);
inline irepa::SiTObjective train_objective() { return irepa::SiTObjective{.proj_coeff = 1.0}; }
}  // namespace sit_ref

namespace sit_ref {
/// The JiT trainer test: a small JiT (in-context tokens entering at block 1, aligned after
/// block 2, so both token paths run) on the same shards, its options, and the CPU run's losses.
irepa::JiTConfig jit_train_model_config();
irepa::TrainerOptions jit_train_options(const std::string& run_dir);
inline irepa::JiTObjective jit_train_objective() { return irepa::JiTObjective{.proj_coeff = 1.0}; }
std::vector<double> jit_train_losses_cpu(const std::string& shards, const std::string& run_dir);
}  // namespace sit_ref

namespace sit_ref {
/// The online-target trainer test: 12 random 3x32x32 images, a tiny random DINOv2-style ViT
/// (16x16 tokens of width 24, made on the host from `seed`) as the online target of a patch-2
/// REPA SiT, the options, and the CPU run's losses.
irepa::data::ImageDataset online_images(std::uint64_t seed);
irepa::TargetEncoder online_vit(std::uint64_t seed);
irepa::SiTConfig online_model_config();
irepa::TrainerOptions online_options(const std::string& run_dir);
std::vector<double> online_losses_cpu(const irepa::data::ImageDataset& ds, const std::vector<irepa::TargetEncoder>& online,
                                      const std::string& run_dir);
}  // namespace sit_ref
