#pragma once
// The JiT reference's training recipe (main_jit.py / engine_jit.py) as settings of the one
// trainer: AdamW (0.9, 0.95) with biases and 1-D tensors never decayed, lr = blr * batch / 256
// with a per-iteration linear warm-up over warmup_epochs, then constant or cosine to min_lr,
// no gradient clipping (the norm is logged), two EMAs, random horizontal flips, steps from
// epochs. TrainerOptions' defaults are the SiT / REPA recipe.

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>

#include "irepa/train/optim.hpp"
#include "irepa/train/trainer.hpp"

namespace irepa {

/// The reference's parameter groups (misc.add_weight_decay): biases, norm weights and other
/// 1-D tensors get no weight decay; everything else (in_context_posemb [1, L, D] too) does.
inline bool jit_decays(std::string_view name, const Shape& shape) { return shape.rank() > 1 && !name.ends_with(".bias"); }

struct JiTRecipe {
  std::int64_t epochs = 200;              // steps = epochs * floor(images / batch) unless max_train_steps is set
  double blr = 5e-5, lr = 0, min_lr = 0;  // lr 0: blr * batch / 256
  std::string lr_schedule = "constant";   // constant | cosine (after the warm-up)
  double warmup_epochs = 5;
  double weight_decay = 0.0, adam_beta1 = 0.9, adam_beta2 = 0.95;
  double ema_decay1 = 0.9999, ema_decay2 = 0.9996;
  bool hflip = true;

  std::int64_t steps_per_epoch(std::int64_t images, std::int64_t batch) const { return std::max<std::int64_t>(1, images / batch); }
  double base_lr(std::int64_t batch) const { return lr > 0 ? lr : blr * static_cast<double>(batch) / 256.0; }
};

/// Sets o's optimizer, schedule, EMAs, clipping, flips and (when o.max_train_steps is 0) its
/// step count from the recipe, for a dataset of `images` images at o.batch_size.
inline void apply_jit_recipe(TrainerOptions& o, const JiTRecipe& r, std::int64_t images) {
  IREPA_CHECK(r.lr_schedule == "constant" || r.lr_schedule == "cosine", "JiT recipe: lr schedule '{}' is not known (constant or cosine)",
              r.lr_schedule);
  IREPA_CHECK(o.batch_size > 0 && images > 0 && r.epochs > 0, "JiT recipe: batch size {}, {} images and {} epochs must be positive",
              o.batch_size, images, r.epochs);
  const std::int64_t per_epoch = r.steps_per_epoch(images, o.batch_size);
  if (o.max_train_steps <= 0) o.max_train_steps = r.epochs * per_epoch;
  o.schedule.lr = r.base_lr(o.batch_size);
  o.schedule.min_lr = r.min_lr;
  o.schedule.warmup_steps = static_cast<std::int64_t>(std::llround(r.warmup_epochs * static_cast<double>(per_epoch)));
  o.schedule.total_steps = std::max(o.max_train_steps, o.schedule.warmup_steps + 1);
  o.schedule.kind = r.lr_schedule == "cosine" ? LrSchedule::Kind::WarmupCosine : LrSchedule::Kind::WarmupConstant;
  o.adamw = AdamWOptions{.lr = o.schedule.lr, .beta1 = r.adam_beta1, .beta2 = r.adam_beta2, .eps = 1e-8,
                         .weight_decay = r.weight_decay, .decay = jit_decays};
  o.ema_decays = {r.ema_decay1, r.ema_decay2};
  o.ema_update_freq = 1;
  o.max_grad_norm = std::numeric_limits<double>::infinity();
  o.hflip = r.hflip;
}

}  // namespace irepa
