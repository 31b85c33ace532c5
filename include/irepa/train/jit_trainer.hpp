#pragma once
// The JiT training loop of irepa-train-jit, as a library function, following the reference's
// main_jit.py / engine_jit.py: images in a deterministic order per (seed, epoch), random
// horizontal flips, alignment targets from stored features and/or online encoders of the
// (flipped) uint8 images, images scaled to [-1, 1], labels dropped to the null class, the JiT
// objective, AdamW (0.9, 0.95) with biases and 1-D tensors never decayed, lr = blr * batch / 256
// with a per-iteration linear warm-up then constant or cosine, no clipping (the norm is logged),
// two EMAs, checkpoints (resume is bit-identical), JSONL log and sample grids from the first EMA.

#include <algorithm>
#include <limits>

#include <fmt/ranges.h>

#include "irepa/diffusion/jit_loss.hpp"
#include "irepa/models/jit.hpp"
#include "irepa/train/sit_trainer.hpp"

namespace irepa {

struct JiTTrainerOptions {
  std::string run_dir = "exps/jit";
  std::int64_t batch_size = 128, epochs = 200, max_train_steps = 0, seed = 0;  // max_train_steps 0: epochs * steps per epoch
  std::int64_t checkpointing_steps = 10000, sampling_steps = 0, resume_step = 0, log_every = 100;
  std::int64_t num_classes = 1000;
  double blr = 5e-5, lr = 0, min_lr = 0;  // lr 0: blr * batch / 256
  std::string lr_schedule = "constant";   // constant | cosine (after the warm-up)
  double warmup_epochs = 5;
  double weight_decay = 0.0, adam_beta1 = 0.9, adam_beta2 = 0.95;
  double ema_decay1 = 0.9999, ema_decay2 = 0.9996;
  double label_drop_prob = 0.1;
  bool hflip = true;
  JiTObjective objective{};
  JiTSamplerOptions sampler{};
  double noise_scale_sampling = 1.0;
  std::int64_t classes_in_grid = 10, samples_per_class = 8;
  bool quiet = false;

  std::int64_t steps_per_epoch(std::int64_t n) const { return std::max<std::int64_t>(1, n / batch_size); }
  std::int64_t total_steps(std::int64_t n) const { return max_train_steps > 0 ? max_train_steps : epochs * steps_per_epoch(n); }
  double base_lr() const { return lr > 0 ? lr : blr * static_cast<double>(batch_size) / 256.0; }
};

/// The reference's parameter groups (misc.add_weight_decay): biases, norm weights and other
/// 1-D tensors get no weight decay; everything else (in_context_posemb [1, L, D] too) does.
inline bool jit_decays(std::string_view name, const Shape& shape) { return shape.rank() > 1 && !name.ends_with(".bias"); }

/// Class-conditional samples of a JiT (the reference's sampler) from noise drawn by
/// Philox(seed, stream 7): images [N, C, H, W] in [-1, 1].
template <class Model>
Tensor<double> sample_jit(const typename Model::Context& ctx, const Model& model, ConstView<std::int64_t> y, std::uint64_t seed,
                          const JiTSamplerOptions& so, double noise_scale = 1.0) {
  const auto& c = model.config;
  Philox srng(seed, 7);
  Tensor<double> z(Shape{y.numel(), c.in_channels, c.input_size, c.input_size});
  srng.normal(z.view(), 0.0, noise_scale);
  using T = typename Model::scalar_type;
  Tensor<T> zt(z.shape());
  for (std::int64_t i = 0; i < z.numel(); ++i) zt[i] = static_cast<T>(z[i]);
  const Tensor<T> x = jit_sample(ctx, model, zt, y, so);
  Tensor<double> out(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) out[i] = static_cast<double>(x[i]);
  return out;
}

/// Mirrors each image [C, H, W] of x left-right where flip[b].
template <class T>
void flip_horizontal(TensorView<T> x, const std::vector<bool>& flip) {
  const std::int64_t B = x.size(0), rows = x.numel() / (B * x.size(3)), W = x.size(3);
  for (std::int64_t b = 0; b < B; ++b) {
    if (!flip[static_cast<std::size_t>(b)]) continue;
    for (std::int64_t r = 0; r < rows; ++r) {
      T* row = x.data() + (b * rows + r) * W;
      std::reverse(row, row + W);
    }
  }
}

/// Trains `model` (already initialised) on the image dataset `ds`; targets as train_sit. The
/// model may be on a device (ctx is then its context): data, flips, label dropout, the online
/// encoders and the RNG stay on the host, so a run is the same sequence of batches anywhere.
template <class Model, class Dataset>
TrainResult<typename Model::scalar_type> train_jit(const typename Model::Context& ctx, const JiTTrainerOptions& o, Model& model,
                                                   const Dataset& ds, const std::vector<TargetEncoder>& online,
                                                   const nlohmann::json& config_json) {
  namespace fs = std::filesystem;
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  std::unique_ptr<CpuContext> own_cpu;
  const CpuContext* cpu = &detail::host_context(ctx, own_cpu);  // the online encoders
  const JiTConfig& cfg = model.config;
  IREPA_CHECK(ds.kind() == "images", "train_jit: JiT trains on images, but the data holds {}", ds.kind());
  const std::vector<std::string> stored = ds.encoders();
  detail::check_targets("train_jit", cfg.z_dims, model.grid.tokens(), stored, online, true, ds.kind());
  // Stored features belong to the unflipped image (a flipped image's features are not the mirrored ones).
  IREPA_CHECK(stored.empty() || !o.hflip,
              "train_jit: the data holds precomputed features ({}), which do not match flipped images; turn flips off "
              "(--no-hflip) or compute the targets online (--enc-type)",
              fmt::join(stored, ", "));
  const std::int64_t B = o.batch_size, N = ds.size();
  IREPA_CHECK(B > 0 && N > 0, "train_jit: batch size {} over {} samples", B, N);
  IREPA_CHECK(o.lr_schedule == "constant" || o.lr_schedule == "cosine",
              "train_jit: lr schedule '{}' is not known (constant or cosine)", o.lr_schedule);
  const std::int64_t total = o.total_steps(N);
  LrSchedule sched;
  sched.lr = o.base_lr();
  sched.min_lr = o.min_lr;
  sched.warmup_steps = static_cast<std::int64_t>(std::llround(o.warmup_epochs * static_cast<double>(o.steps_per_epoch(N))));
  sched.total_steps = std::max(total, sched.warmup_steps + 1);
  sched.kind = o.lr_schedule == "cosine" ? LrSchedule::Kind::WarmupCosine : LrSchedule::Kind::WarmupConstant;

  AdamW<T, D> opt(model.params(), AdamWOptions{.lr = sched.lr, .beta1 = o.adam_beta1, .beta2 = o.adam_beta2, .eps = 1e-8,
                                               .weight_decay = o.weight_decay, .decay = jit_decays});
  Ema<T, D> ema1(model.params(), o.ema_decay1, 1), ema2(model.params(), o.ema_decay2, 1);
  Philox rng(static_cast<std::uint64_t>(o.seed), 1);
  const fs::path run(o.run_dir);
  fs::create_directories(run / "checkpoints");
  detail::write_args(run, config_json, "train_jit");
  std::int64_t step = detail::resume_run(run, o.resume_step, model, opt, {&ema1, &ema2}, rng, o.quiet);
  JsonlLogger log((run / "log.jsonl").string());
  auto loader = detail::epoch_loader<T>(ds, B, o.seed, step);
  TrainResult<T> res;
  RateMeter meter(step);
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t first = step + 1;
  for (++step; step <= total; ++step) {
    auto b = loader.next();
    if (o.hflip) {  // RandomHorizontalFlip before anything sees the image
      Tensor<double> u(Shape{B});
      rng.uniform(u.view());
      std::vector<bool> flip(static_cast<std::size_t>(B));
      for (std::int64_t i = 0; i < B; ++i) flip[static_cast<std::size_t>(i)] = u[i] < 0.5;
      flip_horizontal<T>(b.x.view(), flip);
    }
    SiTBatch<T> batch{b.x, b.y, {}};
    for (const auto& e : stored) batch.zs.push_back(b.features.at(e));
    const std::vector<Tensor<T>> online_z = detail::online_targets<T>(*cpu, online, b.x);
    for (const auto& z : online_z) batch.zs.push_back(z);
    for (std::int64_t i = 0; i < b.x.numel(); ++i) b.x[i] = b.x[i] * T(1.0 / 255.0) * T(2) - T(1);
    nn::drop_labels(rng, b.y.view(), o.label_drop_prob, o.num_classes);
    fill(ctx, model.params().grads(), T(0));
    const auto st = jit_loss(ctx, model, o.objective, batch, rng);
    const double gn = grad_norm(ctx, model.params());  // measured, not clipped (as the reference)
    const double lr = sched.at(step - 1);  // the reference sets the rate from the 0-based iteration
    opt.step(ctx, model.params(), lr, 1.0, {&ema1, &ema2}, step);  // AdamW and both EMAs in one pass
    // Built up entry by entry: nvcc's front end mis-parses a nested braced list here.
    std::map<std::string, double> scalars;
    scalars["loss"] = st.total, scalars["denoising_loss"] = st.denoising, scalars["proj_loss"] = st.alignment;
    scalars["grad_norm"] = gn, scalars["lr"] = lr;
    log.log(step, scalars);
    res.history.push_back({step, st.total, st.denoising, st.alignment, gn});
    if (!o.quiet && (step % o.log_every == 0 || step == total)) {
      const double r = meter.rate(step, B);
      std::printf("%s\n", progress_line(step, total, r, r > 0 ? static_cast<double>((total - step) * B) / r : NAN, st.total, st.denoising,
                                        st.alignment, gn)
                              .c_str());
      std::fflush(stdout);
    }
    if (step % o.checkpointing_steps == 0 || step == total)
      save_checkpoint((run / "checkpoints" / (detail::step_name(step) + ".safetensors")).string(), model, opt, {&ema1, &ema2}, rng,
                      CheckpointInfo{.step = step, .config = config_json});
    if (o.sampling_steps > 0 && step % o.sampling_steps == 0) {
      Model ema_model(cfg, model.head);  // sampling uses the first EMA's weights
      D::copy_sync(ema_model.params().values().data(), ema1.values().data(), sizeof(T) * static_cast<std::size_t>(ema1.values().numel()));
      const auto y = class_grid_labels(std::min(o.classes_in_grid, o.num_classes), o.samples_per_class);
      const auto x = sample_jit(ctx, ema_model, y, static_cast<std::uint64_t>(o.seed), o.sampler, o.objective.noise_scale);
      fs::create_directories(run / "samples");
      io::write_image_grid<double>((run / "samples" / (detail::step_name(step) + ".png")).string(), x,
                                   io::GridOptions{.columns = o.samples_per_class});
    }
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::int64_t done = total - first + 1;
  res.images_per_second = done > 0 && res.seconds > 0 ? static_cast<double>(done * B) / res.seconds : 0;
  {
    Tensor<T> keep;
    res.ema = Tensor<T>::copy_of(detail::host_values(ema1.values(), keep));
  }
  return res;
}

}  // namespace irepa
