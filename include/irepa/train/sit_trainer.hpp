#pragma once
// The SiT training loop of irepa-train and irepa-fashion, as a library function: data in a
// deterministic order per (seed, epoch) through a prefetch thread, label dropout, alignment
// targets from the dataset's precomputed features and/or online target encoders, the SiT
// objective, clipping, AdamW, EMA, JSONL log, progress line, checkpoints, and class-conditional
// sample grids from the EMA weights. Resuming from a checkpoint continues bit-identically.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "irepa/data/loader.hpp"
#include "irepa/data/sampler.hpp"
#include "irepa/data/shards.hpp"
#include "irepa/diffusion/samplers.hpp"
#include "irepa/diffusion/sit_loss.hpp"
#include "irepa/io/image_grid.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/models/target_encoder.hpp"
#include "irepa/nn/embedders.hpp"
#include "irepa/train/checkpoint.hpp"
#include "irepa/train/logger.hpp"
#include "irepa/train/optim.hpp"

namespace irepa {

struct SiTTrainerOptions {
  std::string run_dir = "exps/sit";  // args.json, log.jsonl, checkpoints/, samples/
  std::int64_t batch_size = 256, max_train_steps = 400000, seed = 0;
  std::int64_t checkpointing_steps = 50000, sampling_steps = 0, resume_step = 0, log_every = 100;
  std::int64_t num_classes = 1000;
  double learning_rate = 1e-4, adam_beta1 = 0.9, adam_beta2 = 0.999, adam_weight_decay = 0.0, adam_epsilon = 1e-8;
  double max_grad_norm = 1.0, ema_decay = 0.9999;
  std::int64_t ema_update_freq = 1;
  double cfg_prob = 0.1;
  SiTObjective objective{};
  // sample grids: classes_in_grid rows (one class each), samples_per_class columns
  std::int64_t classes_in_grid = 10, samples_per_class = 8;
  int sample_steps = 50;
  double cfg_scale = 1.0;
  bool quiet = false;  // no progress line
};

struct TrainRecord {
  std::int64_t step = 0;
  double total = 0, denoising = 0, alignment = 0, grad_norm = 0;
};

template <class T>
struct TrainResult {
  std::vector<TrainRecord> history;  // every step of this invocation
  Tensor<T> ema;                     // the EMA weights at the end (flat, arena order)
  double seconds = 0;                // wall time of the steps
  double images_per_second = 0;
};

/// Labels of a sample grid: `rows` classes, `cols` images each, row-major.
inline Tensor<std::int64_t> class_grid_labels(std::int64_t rows, std::int64_t cols) {
  Tensor<std::int64_t> y(Shape{rows * cols});
  for (std::int64_t i = 0; i < rows * cols; ++i) y[i] = i / cols;
  return y;
}

/// Class-conditional samples of a SiT (Euler ODE with classifier-free guidance) from noise
/// drawn by Philox(seed, stream 7): x [N, C, H, W] in the data's scaled range.
template <class Model>
Tensor<double> sample_sit(const typename Model::Context& ctx, const Model& model, ConstView<std::int64_t> y, std::uint64_t seed,
                          int steps, double cfg_scale, PathType path) {
  const auto& c = model.config;
  Philox srng(seed, 7);
  Tensor<double> z(Shape{y.numel(), c.in_channels, c.input_size, c.input_size});  // [N, C, H, W]
  srng.normal(z.view());
  SamplerOptions so{.kind = SamplerKind::Euler, .num_steps = steps, .cfg_scale = cfg_scale, .path = path, .null_class = c.num_classes};
  return sample(sit_velocity(ctx, model), z, y, so);
}

namespace detail {
/// The CPU context for the host-side work of a run (online target encoders): the model's own
/// context when the model is on the CPU, else a new one kept in `own`.
template <class Ctx>
const CpuContext& host_context(const Ctx& ctx, std::unique_ptr<CpuContext>& own) {
  if constexpr (std::is_same_v<Ctx, CpuContext>) {
    return ctx;
  } else {
    own = std::make_unique<CpuContext>();
    return *own;
  }
}
inline std::string step_name(std::int64_t s) { return fmt::format("{:07d}", s); }

/// args.json: the resolved settings of this invocation.
inline void write_args(const std::filesystem::path& run, const nlohmann::json& config_json, std::string_view who) {
  std::ofstream args(run / "args.json");
  args << config_json.dump(2) << "\n";
  IREPA_CHECK(args.good(), "{}: cannot write '{}'", who, (run / "args.json").string());
}

/// Checks that stored features plus online encoders give one target per projector, each with
/// the model's token count and the projector's width.
inline void check_targets(std::string_view who, const std::vector<std::int64_t>& z_dims, std::int64_t tokens,
                          const std::vector<std::string>& stored, const std::vector<TargetEncoder>& online, bool images,
                          std::string_view kind) {
  IREPA_CHECK(stored.size() + online.size() == z_dims.size(),
              "{}: the model has {} projectors, but the data gives {} target(s) and {} online encoder(s)", who, z_dims.size(),
              stored.size(), online.size());
  for (std::size_t j = 0; j < online.size(); ++j) {
    const auto& e = online[j];
    const auto zd = z_dims[stored.size() + j];
    IREPA_CHECK(e.tokens == tokens && e.dim == zd,
                "{}: encoder '{}' gives [{}, {}] tokens, expected [{}, {}] (the model's token grid and projector width)", who,
                e.name, e.tokens, e.dim, tokens, zd);
  }
  IREPA_CHECK(online.empty() || images, "{}: online target encoders need image data, but the data holds {}", who, kind);
}

/// Batch i (0-based) holds global samples i*B .. i*B + B - 1 in the order of their epochs
/// (a fresh permutation per (seed, epoch)); produced on a background thread from batch `first`.
template <class T, class Dataset>
data::PrefetchLoader<data::ShardBatch<T>> epoch_loader(const Dataset& ds, std::int64_t B, std::int64_t seed, std::int64_t first) {
  const std::int64_t N = ds.size();
  return data::PrefetchLoader<data::ShardBatch<T>>(
      [&ds, B, N, seed](std::int64_t i) {
        std::vector<std::int64_t> idx;
        std::uint64_t cached_epoch = ~0ULL;
        std::vector<std::int64_t> perm;
        for (std::int64_t k = i * B; k < (i + 1) * B; ++k) {
          const auto [epoch, off] = data::epoch_and_offset(k, N);
          if (epoch != cached_epoch) perm = data::epoch_permutation(N, static_cast<std::uint64_t>(seed), cached_epoch = epoch);
          idx.push_back(perm[static_cast<std::size_t>(off)]);
        }
        return ds.template get<T>(idx);
      },
      first);
}

/// Loads checkpoints/<resume_step>.safetensors of the run (0: a fresh start); returns the step.
template <class Model, class T = typename Model::scalar_type, class D = typename Model::device_type>
std::int64_t resume_run(const std::filesystem::path& run, std::int64_t resume_step, Model& model, AdamW<T, D>& opt,
                        std::vector<Ema<T, D>*> emas, Philox& rng, bool quiet) {
  if (resume_step <= 0) return 0;
  const auto path = (run / "checkpoints" / (step_name(resume_step) + ".safetensors")).string();
  const std::int64_t step = load_checkpoint(path, model, opt, emas, rng).step;
  if (!quiet) std::printf("resumed from %s at step %lld\n", path.c_str(), static_cast<long long>(step));
  return step;
}

/// Each online encoder's tokens [B, T, D] of images x [B, C, H, W] in 0..255.
template <class T>
std::vector<Tensor<T>> online_targets(const CpuContext& ctx, const std::vector<TargetEncoder>& online, ConstView<T> x) {
  std::vector<Tensor<T>> out;
  if (online.empty()) return out;
  Tensor<float> raw(x.shape());
  for (std::int64_t i = 0; i < raw.numel(); ++i) raw[i] = static_cast<float>(x.data()[i]);
  for (const auto& e : online) {
    const Tensor<float> z = e.encode(ctx, raw);
    Tensor<T> zt(z.shape());
    for (std::int64_t i = 0; i < z.numel(); ++i) zt[i] = static_cast<T>(z[i]);
    out.push_back(std::move(zt));
  }
  return out;
}
}  // namespace detail

/// The class-conditional sample grid of a training step from a model holding the EMA weights:
/// <run_dir>/samples/<step>.png, one class per row.
template <class Model>
void write_sample_grid(const typename Model::Context& ctx, const Model& ema_model, const SiTTrainerOptions& o, std::int64_t step) {
  const auto y = class_grid_labels(std::min(o.classes_in_grid, o.num_classes), o.samples_per_class);
  const auto x = sample_sit(ctx, ema_model, y, static_cast<std::uint64_t>(o.seed), o.sample_steps, o.cfg_scale, o.objective.path);
  const std::filesystem::path dir = std::filesystem::path(o.run_dir) / "samples";
  std::filesystem::create_directories(dir);
  io::write_image_grid<double>((dir / (detail::step_name(step) + ".png")).string(), x, io::GridOptions{.columns = o.samples_per_class});
}

/// Trains `model` (already initialised) on `ds`. Alignment targets: the dataset's features (in
/// ds.encoders() order) followed by each online encoder's tokens of the clean images; their
/// number must equal the model's projectors. config_json goes into args.json and checkpoints.
/// The model may be on a device (ctx is then its context): data, label dropout, the online
/// encoders and the RNG stay on the host, so a run is the same sequence of batches anywhere.
template <class Model, class Dataset>
TrainResult<typename Model::scalar_type> train_sit(const typename Model::Context& ctx, const SiTTrainerOptions& o, Model& model,
                                                   const Dataset& ds, const std::vector<TargetEncoder>& online,
                                                   const nlohmann::json& config_json) {
  namespace fs = std::filesystem;
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  std::unique_ptr<CpuContext> own_cpu;
  const CpuContext* cpu = &detail::host_context(ctx, own_cpu);  // the online encoders
  const SiTConfig& cfg = model.config;
  const std::vector<std::string> stored = ds.encoders();
  const bool images = ds.kind() == "images";
  detail::check_targets("train_sit", cfg.z_dims, (cfg.input_size / cfg.patch_size) * (cfg.input_size / cfg.patch_size), stored,
                        online, images, ds.kind());

  AdamW<T, D> opt(model.params(), AdamWOptions{.lr = o.learning_rate, .beta1 = o.adam_beta1, .beta2 = o.adam_beta2, .eps = o.adam_epsilon,
                                            .weight_decay = o.adam_weight_decay});
  Ema<T, D> ema(model.params(), o.ema_decay, o.ema_update_freq);
  Philox rng(static_cast<std::uint64_t>(o.seed), 1);
  const fs::path run(o.run_dir);
  fs::create_directories(run / "checkpoints");
  detail::write_args(run, config_json, "train_sit");
  std::int64_t step = detail::resume_run(run, o.resume_step, model, opt, {&ema}, rng, o.quiet);
  JsonlLogger logger((run / "log.jsonl").string());
  const std::int64_t B = o.batch_size, N = ds.size();
  IREPA_CHECK(B > 0 && N > 0, "train_sit: batch size {} over {} samples", B, N);
  auto loader = detail::epoch_loader<T>(ds, B, o.seed, step);
  TrainResult<T> res;
  RateMeter meter(step);
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t first = step + 1;
  for (++step; step <= o.max_train_steps; ++step) {
    auto b = loader.next();
    SiTBatch<T> batch{b.x, b.y, {}};
    for (const auto& e : stored) batch.zs.push_back(b.features.at(e));
    const std::vector<Tensor<T>> online_z = detail::online_targets<T>(*cpu, online, b.x);
    for (const auto& z : online_z) batch.zs.push_back(z);
    if (images)
      for (std::int64_t i = 0; i < b.x.numel(); ++i) b.x[i] = b.x[i] * T(1.0 / 127.5) - T(1);
    nn::drop_labels(rng, b.y.view(), o.cfg_prob, o.num_classes);
    fill(ctx, model.params().grads(), T(0));
    const auto st = sit_loss(ctx, model, o.objective, batch, rng);
    // Clip, AdamW and EMA in one pass over the arena (same results as the three in turn).
    const double gn = grad_norm(ctx, model.params());
    opt.step(ctx, model.params(), o.learning_rate, clip_coefficient(gn, o.max_grad_norm), {&ema}, step);
    // Built up entry by entry: nvcc's front end mis-parses a nested braced list here.
    std::map<std::string, double> scalars;
    scalars["loss"] = st.total, scalars["denoising_loss"] = st.denoising, scalars["proj_loss"] = st.alignment;
    scalars["grad_norm"] = gn, scalars["lr"] = o.learning_rate;
    logger.log(step, scalars);
    res.history.push_back({step, st.total, st.denoising, st.alignment, gn});
    if (!o.quiet && (step % o.log_every == 0 || step == o.max_train_steps)) {
      const double r = meter.rate(step, B);
      std::printf("%s\n", progress_line(step, o.max_train_steps, r, r > 0 ? static_cast<double>((o.max_train_steps - step) * B) / r : NAN,
                                        st.total, st.denoising, st.alignment, gn)
                              .c_str());
      std::fflush(stdout);
    }
    if (step % o.checkpointing_steps == 0 || step == o.max_train_steps)
      save_checkpoint((run / "checkpoints" / (detail::step_name(step) + ".safetensors")).string(), model, opt, {&ema}, rng,
                      CheckpointInfo{.step = step, .config = config_json});
    if (o.sampling_steps > 0 && step % o.sampling_steps == 0 && (cfg.in_channels == 1 || cfg.in_channels == 3)) {
      Model ema_model(cfg, model.head);  // sampling uses the EMA weights
      D::copy_sync(ema_model.params().values().data(), ema.values().data(), sizeof(T) * static_cast<std::size_t>(ema.values().numel()));
      write_sample_grid(ctx, ema_model, o, step);
    }
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::int64_t done = o.max_train_steps - first + 1;
  res.images_per_second = done > 0 && res.seconds > 0 ? static_cast<double>(done * B) / res.seconds : 0;
  {
    Tensor<T> keep;
    res.ema = Tensor<T>::copy_of(detail::host_values(ema.values(), keep));
  }
  return res;
}

}  // namespace irepa
