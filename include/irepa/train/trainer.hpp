#pragma once
// The training loop of irepa-train, irepa-train-jit and irepa-fashion, for any model and
// objective (SiT + SiTObjective, JiT + JiTObjective, or user types of the same concepts):
// batches in a deterministic order per (seed, epoch) through a prefetch thread, optional
// horizontal flips, alignment targets from the dataset's stored features and/or online target
// encoders (each on the model's device where it runs there, else on the host), label dropout,
// the objective step, the global-norm clip, AdamW with the EMAs fused, a learning-rate schedule,
// the JSONL log and progress line, checkpoints (resume continues bit-identically) and
// class-conditional sample grids from the first EMA. Data of stored VAE posteriors (mean | std)
// gets the reference's sample_posterior each step, z = (mean + std eps - bias) scale with eps
// from the run's generator, and latent grids are decoded to pixels by a given decoder.
// The two reference recipes differ only in settings (see train/recipes.hpp for JiT's).
//
// Data-parallel: given a Communicator (train/communicator.hpp) of W processes, batch_size is the
// global batch; each rank takes its DistributedSampler share of it (B / W samples), draws that
// share's noise, times, flips and label dropout from the one sharded generator (so a sample's
// draws do not depend on W), and the gradients are summed in buckets that start as the backward
// finishes each block. Clip, AdamW and EMA then run identically everywhere; only rank 0 writes
// files and prints; the logged losses are the ranks' means; a checkpoint resumes on any W.
//
// On a GPU the whole step stays there: the batch (with its targets) goes up, t, noise, losses,
// gradient norm and clip factor are made and used on the device, and the logged scalars come
// back once per flush (log, checkpoint and sample steps), not once per step. A non-finite loss
// or norm is found at the next flush, before anything is written for that step.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "irepa/core/concepts.hpp"
#include "irepa/data/latent_stats.hpp"
#include "irepa/data/loader.hpp"
#include "irepa/diffusion/objective.hpp"
#include "irepa/io/image_grid.hpp"
#include "irepa/models/target_encoder.hpp"
#include "irepa/nn/embedders.hpp"
#include "irepa/ops/latent.hpp"
#include "irepa/ops/optim.hpp"
#include "irepa/ops/tensor_ops.hpp"
#include "irepa/train/checkpoint.hpp"
#include "irepa/train/communicator.hpp"
#include "irepa/train/logger.hpp"
#include "irepa/train/evaluation.hpp"
#include "irepa/train/optim.hpp"
#include "irepa/train/run_folder.hpp"

namespace irepa {

/// Settings of a run. The defaults are the SiT / REPA reference's recipe (train/recipes.hpp
/// applies JiT's).
struct TrainerOptions {
  std::string run_dir = "exps/run";  // args.json, log.jsonl, checkpoints/, samples/
  std::int64_t batch_size = 256, max_train_steps = 400000, seed = 0;
  std::int64_t checkpointing_steps = 50000, sampling_steps = 0, resume_step = 0, log_every = 100;
  AdamWOptions adamw{};      // betas, eps, weight decay and its groups (the rate comes from schedule)
  LrSchedule schedule{};     // the rate of 0-based iteration i is schedule.at(i)
  double max_grad_norm = 1.0;  // global clip; infinity: never clipped (the norm is still logged)
  std::vector<double> ema_decays = {0.9999};  // one or two EMAs; sample grids use the first
  std::int64_t ema_update_freq = 1;
  double label_drop_prob = 0.1;  // labels dropped to the null class (the model's num_classes), for guidance
  bool hflip = false;            // random horizontal flips of image data, before anything sees them
  // sample grids: classes_in_grid rows (one class each), samples_per_class columns
  SampleSettings grid{};
  std::int64_t classes_in_grid = 10, samples_per_class = 8;
  bool quiet = false;  // no progress line
  double bucket_mib = 25;  // data-parallel gradient buckets (DDP's default size)
  // Posterior data (mean | std): the per-channel scale and bias of the drawn latents (required then).
  std::optional<data::LatentStats> latent_stats;
  // Latent sample grids to pixels: scaled latents [B, E, h, w] -> images [B, 3, H, W] in [-1, 1]
  // (the VAE's decode of z / scale + bias). Without it, only 1- or 3-channel data gets grids.
  std::function<Tensor<double>(const Tensor<double>&)> grid_decoder;
  // Run folder (train/run_folder.hpp): a fresh run into a folder holding a run is refused unless
  // overwrite (which clears it); on resume these config keys may differ from the checkpoint's.
  bool overwrite = false;
  std::vector<std::string> resume_may_change = default_resume_may_change();
  // Steps whose gradient norm is not finite: 0 stops the run at the first (the default); N > 0
  // skips up to N of them (no update, no EMA; each logged), as a loss scaler does. On a GPU this
  // reads the norm back every step.
  std::int64_t skip_nonfinite_steps = 0;
  // A second destination of the records (rank 0), made once the run folder is locked:
  // tensorboard_sink() (train/tensorboard.hpp) writes TensorBoard event files into the folder.
  std::function<std::unique_ptr<LogSink>(const std::string& run_dir)> log_sink;
  // Online evaluation (train/evaluation.hpp; metrics/online_fid.hpp is JiT's FID / IS): every
  // eval_steps steps and at the last (0: never), every rank calls evaluate; rank 0 logs what it
  // returns. evaluate_only: evaluate the resumed checkpoint once and stop, without a step.
  std::int64_t eval_steps = 0;
  Evaluator evaluate;
  bool evaluate_only = false;
};

/// The largest global batch and log interval accepted (a larger request is a typo, not a run).
inline constexpr std::int64_t kMaxBatch = 65536, kMaxLogEvery = 1000000;

/// Every setting checked before anything runs: finite and in range, or an Error naming it.
inline void check_trainer_options(const TrainerOptions& o) {
  auto finite_in = [](const char* what, double v, double lo, double hi, bool hi_open) {
    IREPA_CHECK(std::isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi), "train: {} is {}, expected a finite value in [{}, {}{}", what, v,
                lo, std::isinf(hi) ? "inf" : fmt::format("{}", hi), hi_open ? ")" : "]");
  };
  IREPA_CHECK(o.batch_size > 0 && o.batch_size <= kMaxBatch, "train: the batch size is {}, expected 1 to {}", o.batch_size, kMaxBatch);
  IREPA_CHECK(o.max_train_steps > 0 && o.max_train_steps <= kMaxSize, "train: max_train_steps is {}, expected a positive count",
              o.max_train_steps);
  IREPA_CHECK(o.checkpointing_steps > 0, "train: checkpointing_steps is {}, expected a positive count", o.checkpointing_steps);
  IREPA_CHECK(o.log_every > 0 && o.log_every <= kMaxLogEvery, "train: log_every is {}, expected 1 to {}", o.log_every, kMaxLogEvery);
  IREPA_CHECK(o.sampling_steps >= 0 && o.resume_step >= 0 && o.skip_nonfinite_steps >= 0,
              "train: sampling_steps {}, resume_step {} and skip_nonfinite_steps {} must not be negative", o.sampling_steps, o.resume_step,
              o.skip_nonfinite_steps);
  const double inf = std::numeric_limits<double>::infinity();
  finite_in("the learning rate", o.schedule.lr, 0, inf, true);
  finite_in("the minimum learning rate", o.schedule.min_lr, 0, inf, true);
  IREPA_CHECK(o.schedule.warmup_steps >= 0 && o.schedule.total_steps >= 0, "train: warmup {} and total {} steps of the schedule must not be negative",
              o.schedule.warmup_steps, o.schedule.total_steps);
  finite_in("AdamW beta1", o.adamw.beta1, 0, 1, true);
  finite_in("AdamW beta2", o.adamw.beta2, 0, 1, true);
  IREPA_CHECK(std::isfinite(o.adamw.eps) && o.adamw.eps > 0, "train: AdamW epsilon is {}, expected a finite value > 0", o.adamw.eps);
  finite_in("AdamW weight decay", o.adamw.weight_decay, 0, inf, true);
  IREPA_CHECK(o.max_grad_norm > 0, "train: max_grad_norm is {}, expected a value > 0 (infinity: no clipping)", o.max_grad_norm);
  for (double d : o.ema_decays) finite_in("an EMA decay", d, 0, 1, false);
  IREPA_CHECK(o.ema_update_freq >= 1, "train: ema_update_freq is {}, expected >= 1", o.ema_update_freq);
  finite_in("the label-drop (cfg) probability", o.label_drop_prob, 0, 1, false);
  IREPA_CHECK(o.classes_in_grid >= 1 && o.samples_per_class >= 1 && o.classes_in_grid * o.samples_per_class <= 10000,
              "train: sample grids of {} classes x {} samples; expected at least one of each and at most 10000 images", o.classes_in_grid,
              o.samples_per_class);
  IREPA_CHECK(o.grid.steps >= 1 && o.grid.steps <= 100000 && std::isfinite(o.grid.cfg_scale),
              "train: sample grids with {} steps at cfg scale {}; expected 1 to 100000 steps and a finite scale", o.grid.steps, o.grid.cfg_scale);
  IREPA_CHECK(std::isfinite(o.bucket_mib) && o.bucket_mib > 0, "train: bucket_mib is {}, expected a finite value > 0", o.bucket_mib);
  IREPA_CHECK(o.eval_steps >= 0, "train: eval_steps is {}, expected >= 0 (0: no online evaluation)", o.eval_steps);
  IREPA_CHECK((o.eval_steps == 0 && !o.evaluate_only) || o.evaluate,
              "train: an online evaluation was asked for (eval_steps {}{}) without an evaluator", o.eval_steps,
              o.evaluate_only ? ", evaluate_only" : "");
  IREPA_CHECK(!o.evaluate_only || o.resume_step > 0, "train: evaluate_only evaluates a checkpoint: a resume step is needed");
}

struct TrainRecord {
  std::int64_t step = 0;
  double total = 0, denoising = 0, alignment = 0, grad_norm = 0, lr = 0;
};

template <class T>
struct TrainResult {
  std::vector<TrainRecord> history;  // every step of this invocation
  Tensor<T> ema;                     // the first EMA's weights at the end (flat, arena order)
  double seconds = 0;                // wall time of the steps
  double images_per_second = 0;
};

/// Labels of a sample grid: `rows` classes, `cols` images each, row-major.
inline Tensor<std::int64_t> class_grid_labels(std::int64_t rows, std::int64_t cols) {
  Tensor<std::int64_t> y(Shape{rows * cols});
  for (std::int64_t i = 0; i < rows * cols; ++i) y[i] = i / cols;
  return y;
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

namespace detail {
inline std::string step_name(std::int64_t s) { return fmt::format("{:07d}", s); }

/// Checks that stored features plus online encoders give one target per projector, each with
/// the model's token count and the projector's width.
inline void check_targets(const std::vector<std::int64_t>& z_dims, std::int64_t tokens, const std::vector<std::string>& stored,
                          const std::vector<TargetEncoder>& online, bool images, std::string_view kind) {
  IREPA_CHECK(stored.size() + online.size() == z_dims.size(),
              "train: the model has {} projectors, but the data gives {} target(s) and {} online encoder(s)", z_dims.size(),
              stored.size(), online.size());
  for (std::size_t j = 0; j < online.size(); ++j) {
    const auto& e = online[j];
    const auto zd = z_dims[stored.size() + j];
    IREPA_CHECK(e.tokens == tokens && e.dim == zd,
                "train: encoder '{}' gives [{}, {}] tokens, expected [{}, {}] (the model's token grid and projector width)", e.name,
                e.tokens, e.dim, tokens, zd);
  }
  IREPA_CHECK(online.empty() || images, "train: online target encoders need images, but the data holds {} without images", kind);
}

/// Whether the dataset has images for online encoders: image data, or images beside posteriors.
template <class Dataset>
bool has_images(const Dataset& ds) {
  if constexpr (requires { ds.has_images(); })
    return ds.has_images();
  else
    return ds.kind() == "images";
}
/// The images' side (the online encoders' working resolution), or 0 when there are none.
template <class Dataset>
std::int64_t image_side(const Dataset& ds) {
  if constexpr (requires { ds.image_shape(); })
    if (ds.kind() != "images") return ds.image_shape().rank() == 3 ? ds.image_shape()[1] : 0;
  return ds.kind() == "images" ? ds.sample_shape()[1] : 0;
}

/// The model input's shape for a sample of the data: the latents drawn from posteriors [2E, h, w] are [E, h, w].
inline Shape model_sample_shape(const std::string& kind, const Shape& sample) {
  if (kind != "posteriors") return sample;
  IREPA_CHECK(sample.rank() == 3 && sample[0] % 2 == 0, "train: posteriors have shape {}, expected [2E, h, w] (mean | std)", sample.str());
  return Shape{sample[0] / 2, sample[1], sample[2]};
}

/// Each online encoder's tokens [B, T, D] of images x [B, C, H, W] in 0..255, on the model's
/// device: computed there (the images go up once, as float), or on the host and uploaded.
template <class T, class D>
std::vector<Tensor<T, D>> online_targets(const ContextOf<D>& ctx, const CpuContext& cpu, const std::vector<PlacedEncoder<D>>& online,
                                         ConstView<T> x) {
  std::vector<Tensor<T, D>> out;
  if (online.empty()) return out;
  Tensor<float> raw(x.shape());
  for (std::int64_t i = 0; i < raw.numel(); ++i) raw[i] = static_cast<float>(x.data()[i]);
  Tensor<float, D> images;  // raw on the device, uploaded for the first encoder that runs there
  for (const auto& e : online) {
    Tensor<float, D> z;
    if (e.on_host()) {
      z = to_device(ctx, e.source->encode(cpu, raw).cview());
    } else {
      if (!images.data()) images = to_device(ctx, raw.cview());
      z = e.on_device(ctx, images.cview());
    }
    if constexpr (std::is_same_v<T, float>) {
      out.push_back(std::move(z));
    } else {
      Tensor<T, D> zt(z.shape());
      convert(ctx, z.cview(), zt.view());
      out.push_back(std::move(zt));
    }
  }
  return out;
}
}  // namespace detail

/// The state of one run and its step. Trainer::run drives it over a dataset; tests and custom
/// loops may call step / flush / save_checkpoint / write_sample_grid themselves.
template <class Model, class Objective>
  requires ObjectiveFor<Objective, Model>
class Trainer {
 public:
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  using Context = typename Model::Context;
  static constexpr std::int64_t kLogColumns = 4;  // total, denoising, alignment, grad norm

  /// Writes args.json, resumes from checkpoints/<resume_step> when asked, opens log.jsonl.
  /// config_json goes into args.json and every checkpoint. With a communicator of several
  /// processes, rank 0's initial weights are broadcast, every rank reads the checkpoint it
  /// resumes from, and only rank 0 writes.
  Trainer(const Context& ctx, TrainerOptions o, Model& model, Objective obj, nlohmann::json config_json,
          Communicator<D>& comm = single_process<D>())
      : ctx_(ctx), o_(std::move(o)), model_(model), obj_(std::move(obj)), config_(std::move(config_json)),
        opt_(model.params(), o_.adamw), rng_(static_cast<std::uint64_t>(o_.seed), 1), comm_(comm), rank_(comm.rank()),
        world_(comm.world()) {
    check_trainer_options(o_);
    if constexpr (requires { obj_.validate(); }) obj_.validate();
    IREPA_CHECK(!o_.ema_decays.empty() && o_.ema_decays.size() <= 2, "train: {} EMAs asked for; one or two are fused into the step",
                o_.ema_decays.size());
    IREPA_CHECK(o_.batch_size % world_ == 0, "train: the global batch of {} does not split evenly over {} processes", o_.batch_size,
                world_);
    if (world_ > 1) {
      rng_.shard(rank_, world_);
      comm_.broadcast(ctx_, model_.params().values(), 0);  // everyone starts from rank 0's weights
      const double elems = o_.bucket_mib * 1024 * 1024 / static_cast<double>(sizeof(T));
      buckets_ = std::make_unique<GradientBuckets<T, D>>(comm_, model_.params().grads(),
                                                          std::max<std::int64_t>(1, static_cast<std::int64_t>(elems)));
    }
    for (double d : o_.ema_decays) emas_.push_back(std::make_unique<Ema<T, D>>(model.params(), d, o_.ema_update_freq));
    namespace fs = std::filesystem;
    const fs::path run(o_.run_dir);
    if (rank_ == 0) {
      folder_ = std::make_unique<RunFolder>(run, o_.resume_step > 0, o_.overwrite);
      if (!o_.quiet && folder_->stale_removed())
        std::printf("removed %zu temporary file(s) left by an interrupted run\n", folder_->stale_removed());
      if (!o_.quiet && folder_->cleared()) std::printf("--overwrite: removed %zu file(s) of the earlier run\n", folder_->cleared());
    }
    if (o_.resume_step > 0) {
      // Ours (.safetensors), else the reference's train.py checkpoint of that step (.pt).
      auto path = (run / "checkpoints" / (detail::step_name(o_.resume_step) + ".safetensors")).string();
      if (const auto pt = (run / "checkpoints" / (detail::step_name(o_.resume_step) + ".pt")).string(); !fs::exists(path) && fs::exists(pt))
        path = pt;
      const CheckpointInfo info = load_checkpoint(path, model_, opt_, ema_pointers(), rng_);
      IREPA_CHECK(info.step == o_.resume_step, "train: '{}' holds step {}, expected {} (its name)", path, info.step, o_.resume_step);
      // The reference's args use its own flag names: nothing to compare setting by setting.
      const ConfigDiff diff = info.reference ? ConfigDiff{} : compare_run_config(info.config, config_, o_.resume_may_change);
      IREPA_CHECK(diff.errors.empty(), "train: '{}' was written by a run with other settings; these change the model or the objective:\n  {}",
                  path, fmt::join(diff.errors, "\n  "));
      step_ = info.step;
      if (!o_.quiet && rank_ == 0) {
        std::printf("resumed from %s at step %lld%s\n", path.c_str(), static_cast<long long>(step_),
                    info.reference ? " (the reference's checkpoint: model, EMA and AdamW moments; this run's settings and noise)" : "");
        for (const auto& c : diff.changes) std::printf("  changed on resume: %s\n", c.c_str());
      }
    }
    if (rank_ == 0) io::write_file_atomic((run / "args.json").string(), config_.dump(2) + "\n", "train: args.json");
    if (rank_ == 0) logger_ = std::make_unique<JsonlLogger>((run / "log.jsonl").string());
    if (rank_ == 0 && o_.log_sink) {
      sink_ = o_.log_sink(o_.run_dir);
      if (sink_) sink_->text(step_, "args", "```\n" + config_.dump(2) + "\n```");
    }
    log_ = Tensor<double, D>(Shape{o_.log_every + 1, kLogColumns});
    sq_ = Tensor<double, D>(Shape{1}), norm_ = Tensor<double, D>(Shape{1}), scale_ = Tensor<double, D>(Shape{1});
    meter_ = RateMeter(step_);
  }

  /// One training step on a host batch: x [B, C, H, W] as the model takes it (scaled), labels y
  /// [B] (dropped here, in place, to the null class), one raw target per projector. The batch is
  /// the only thing uploaded; the step's scalars stay on the device until flush().
  /// device_zs: targets already on the device (the online encoders'), after zs in projector order.
  void step(ConstView<T> x, TensorView<std::int64_t> y, const std::vector<ConstView<T>>& zs, std::vector<Tensor<T, D>> device_zs = {}) {
    if (pending_ == o_.log_every) flush();
    nn::drop_labels(rng_, y, o_.label_drop_prob, model_.config.num_classes);
    auto batch = upload_batch(ctx_, HostBatch<T>{x, y, zs}, model_.label_rows());
    for (auto& z : device_zs) {
      IREPA_CHECK(z.rank() == 3 && z.size(0) == x.size(0), "train: device target features have shape {}, expected [{}, T, Z]",
                  z.shape().str(), x.size(0));
      batch.zs.push_back(std::move(z));
    }
    fill(ctx_, model_.params().grads(), T(0));
    // Each rank's loss is the mean over its share; scaled by 1 / W, the summed gradient is the
    // global batch's mean gradient (W = 1: the plain step).
    const auto st = objective_step(ctx_, model_, obj_, batch, rng_, 1.0 / static_cast<double>(world_), /*backward=*/true,
                                   buckets_ ? buckets_->hook(ctx_) : GradReady{});
    if (buckets_) buckets_->finish(ctx_);
    ops::grad_sq_sum<T>(ctx_, model_.params().grads(), sq_.view());
    ops::clip_scale(ctx_, sq_.cview(), o_.max_grad_norm, norm_.view(), scale_.view());
    ++step_;
    const double lr = o_.schedule.at(step_ - 1);
    bool skip = false;
    if (o_.skip_nonfinite_steps > 0) {  // the norm read back now: whether to update depends on it
      const double n = to_host<double>(ctx_, norm_.cview())[0];
      if (!std::isfinite(n)) {
        ++skipped_;
        IREPA_CHECK(skipped_ <= o_.skip_nonfinite_steps,
                    "train: step {}: the gradient norm is {}, the {}th step with a non-finite norm; --skip-nonfinite-steps allows {}", step_, n,
                    skipped_, o_.skip_nonfinite_steps);
        skip = true;
        pending_skipped_.push_back(step_);
        if (rank_ == 0)
          std::fprintf(stderr, "train: step %lld: gradient norm %g: update skipped (%lld of at most %lld)\n", static_cast<long long>(step_), n,
                       static_cast<long long>(skipped_), static_cast<long long>(o_.skip_nonfinite_steps));
      }
    }
    std::vector<Ema<T, D>*> emas = ema_pointers();
    if (!skip) opt_.step(ctx_, model_.params(), lr, scale_.cview(), std::span<Ema<T, D>* const>(emas), step_);
    const TensorView<double, D> row = log_.view().select(0, pending_);
    ops::copy<double>(ctx_, st.scalars.cview().slice(0, 0, 3), row.slice(0, 0, 3));
    ops::copy<double>(ctx_, norm_.cview(), row.slice(0, 3, 1));
    pending_lrs_.push_back(lr);
    ++pending_;
  }

  /// Brings the scalars of the steps since the last flush to the host (one download), checks
  /// them, writes their log lines and history, and prints the progress line when asked.
  void flush(bool progress = false) {
    if (pending_ == 0) return;
    comm_.synchronize(ctx_);  // a GPU engine's sums are done (or a dead peer is found) before the host waits on the stream
    // The row after the pending ones gets the sums of squares of the weights and of AdamW's
    // moments: their finiteness comes back in the same download as the losses.
    const TensorView<double, D> wrow = log_.view().select(0, pending_);
    const auto& arena = model_.params();
    ops::grad_sq_sum<T>(ctx_, arena.values(), wrow.slice(0, 0, 1));
    ops::grad_sq_sum<T>(ctx_, opt_.exp_avg(), wrow.slice(0, 1, 1));
    ops::grad_sq_sum<T>(ctx_, opt_.exp_avg_sq(), wrow.slice(0, 2, 1));
    const Tensor<double> h = to_host<double>(ctx_, log_.cview().slice(0, 0, pending_ + 1));
    Tensor<double> mean = Tensor<double>::copy_of(h.cview());  // the losses averaged over ranks (the norm is already global)
    if (world_ > 1) {
      Tensor<double, D> sum(Shape{pending_, kLogColumns});
      ops::copy<double>(ctx_, log_.cview().slice(0, 0, pending_), sum.view());
      comm_.all_reduce_sum(ctx_, sum.view());
      comm_.synchronize(ctx_);
      const Tensor<double> hs = to_host<double>(ctx_, sum.cview());
      for (std::int64_t r = 0; r < pending_; ++r)
        for (std::int64_t c = 0; c < 3; ++c) mean(r, c) = hs(r, c) / static_cast<double>(world_);
    }
    for (std::int64_t r = 0; r < pending_; ++r) {
      const TrainRecord rec{step_ - pending_ + 1 + r, mean(r, 0), mean(r, 1), mean(r, 2), mean(r, 3),
                            pending_lrs_[static_cast<std::size_t>(r)]};
      if (std::find(pending_skipped_.begin(), pending_skipped_.end(), rec.step) != pending_skipped_.end()) {
        std::map<std::string, double> scalars;  // only what is finite: JSON has no NaN
        scalars["skipped_nonfinite"] = 1, scalars["lr"] = rec.lr;
        if (std::isfinite(rec.total)) scalars["loss"] = rec.total;
        record(rec.step, scalars);
        continue;
      }
      if (!std::isfinite(rec.total) || !std::isfinite(rec.grad_norm)) {
        // Every rank sees the same means, so every rank asks (a collective) which ranks went bad.
        const std::string where = world_ > 1 ? bad_ranks(rec.step, std::isfinite(h(r, 0)) ? 0 : 1) : std::string();
        IREPA_CHECK(std::isfinite(rec.total), "train: step {}: the loss is not finite (denoising {}, alignment {}){}", rec.step,
                    rec.denoising, rec.alignment, where);
        fail("train: step {}: the gradient norm is {} (a NaN or infinite loss or gradient){}", rec.step, rec.grad_norm, where);
      }
      // Built up entry by entry: nvcc's front end mis-parses a nested braced list here.
      std::map<std::string, double> scalars;
      scalars["loss"] = rec.total, scalars["denoising_loss"] = rec.denoising, scalars["proj_loss"] = rec.alignment;
      scalars["grad_norm"] = rec.grad_norm, scalars["lr"] = rec.lr;
      record(rec.step, scalars);
      history_.push_back(rec);
    }
    check_weights_finite(step_ - pending_ + 1, h(pending_, 0), h(pending_, 1), h(pending_, 2));  // losses first: the likelier cause
    pending_ = 0;
    pending_lrs_.clear();
    pending_skipped_.clear();
    if (progress && !o_.quiet && rank_ == 0 && !history_.empty()) {
      const TrainRecord& r = history_.back();
      const double rate = meter_.rate(step_, o_.batch_size);
      const std::int64_t total = o_.max_train_steps;
      std::printf("%s\n", progress_line(step_, total, rate, rate > 0 ? static_cast<double>((total - step_) * o_.batch_size) / rate : NAN,
                                        r.total, r.denoising, r.alignment, r.grad_norm)
                              .c_str());
      std::fflush(stdout);
    }
  }

  /// checkpoints/<step>.safetensors: model, optimizer, EMAs, RNG, config (after a flush, so that
  /// a non-finite step is refused before it is saved).
  void save_checkpoint() {
    flush();
    if (rank_ != 0) return;
    const std::vector<Ema<T, D>*> p = ema_pointers();
    irepa::save_checkpoint((std::filesystem::path(o_.run_dir) / "checkpoints" / (detail::step_name(step_) + ".safetensors")).string(),
                           model_, opt_, std::vector<const Ema<T, D>*>(p.begin(), p.end()), rng_,
                           CheckpointInfo{.step = step_, .config = config_});
    if (sink_) sink_->flush();
  }

  /// samples/<step>.png: the class-conditional grid from the first EMA's weights, drawn by the
  /// objective's sampler on the model's device.
  void write_sample_grid() {
    if (rank_ != 0) return;
    const Model ema_model = first_ema_model();
    const auto y = class_grid_labels(std::min(o_.classes_in_grid, model_.config.num_classes), o_.samples_per_class);
    const Tensor<double> x = obj_.sample(ctx_, ema_model, y.cview(), static_cast<std::uint64_t>(o_.seed), o_.grid);
    write_grid(detail::step_name(step_) + ".png", "samples", x, o_.samples_per_class);
  }

  /// The online evaluation at this step, on every rank (a collective): the evaluator draws
  /// samples of the first EMA's weights through the objective's sampler; rank 0 logs its scalars.
  void evaluate_online() {
    flush();
    const Model ema_model = first_ema_model();
    EvalRequest req;
    req.step = step_, req.rank = rank_, req.world = world_;
    req.sample = [&](const Tensor<std::int64_t>& y, std::uint64_t seed) -> Tensor<double> {
      Tensor<double> x = obj_.sample(ctx_, ema_model, y.cview(), seed, o_.grid);
      if (o_.grid_decoder) return o_.grid_decoder(x);
      return x;
    };
    req.sum_over_ranks = [&](std::vector<double>& v) {
      if (world_ == 1 || v.empty()) return;
      Tensor<double> h(Shape{static_cast<std::int64_t>(v.size())});
      std::copy(v.begin(), v.end(), h.data());
      Tensor<double, D> d = to_device(ctx_, h.cview());
      comm_.all_reduce_sum(ctx_, d.view());
      comm_.synchronize(ctx_);
      const Tensor<double> back = to_host<double>(ctx_, d.cview());
      std::copy_n(back.data(), v.size(), v.begin());
    };
    const std::map<std::string, double> scalars = o_.evaluate(req);
    if (rank_ == 0) {
      record(step_, scalars);
      if (sink_) sink_->flush();
    }
    meter_ = RateMeter(step_);  // the next progress line's rate counts training only
  }

  /// samples/ground_truth.png: the first batch's drawn latents (up to one grid's worth) through
  /// the grid decoder, as the reference's gt_samples; only with a decoder, on rank 0.
  void write_ground_truth_grid(ConstView<T> z) {
    if (rank_ != 0 || !o_.grid_decoder || o_.sampling_steps <= 0) return;
    const std::int64_t n = std::min(z.size(0), std::min(o_.classes_in_grid, model_.config.num_classes) * o_.samples_per_class);
    Tensor<double> x(Shape{n, z.size(1), z.size(2), z.size(3)});
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<double>(z.data()[i]);
    write_grid("ground_truth.png", "gt_samples", x, o_.samples_per_class);
  }

  /// Trains on ds until max_train_steps. Alignment targets: the dataset's features (in
  /// ds.encoders() order) followed by each online encoder's tokens of the clean (flipped) images;
  /// their number must equal the model's projectors. Image data (0..255) is scaled to [-1, 1].
  template <class Dataset>
  TrainResult<T> run(const Dataset& ds, const std::vector<TargetEncoder>& online) {
    const auto& cfg = model_.config;
    const std::vector<std::string> stored = ds.encoders();
    const bool images = ds.kind() == "images", posteriors = ds.kind() == "posteriors";
    detail::check_targets(cfg.z_dims, model_.grid.tokens(), stored, online, detail::has_images(ds), ds.kind());
    const Shape input = detail::model_sample_shape(ds.kind(), ds.sample_shape());
    IREPA_CHECK(input[0] == cfg.in_channels, "train: the model takes {} channels, but the data gives {} ({} of shape {})", cfg.in_channels,
                input[0], ds.kind(), ds.sample_shape().str());
    IREPA_CHECK(!posteriors || o_.latent_stats,
                "train: the data holds VAE posteriors (mean | std) of shape {}; the latents drawn from them need the latent "
                "statistics (latents_scale, latents_bias)",
                ds.sample_shape().str());
    IREPA_CHECK(posteriors || !o_.latent_stats, "train: latent statistics were given, but the data holds {}, not VAE posteriors",
                ds.kind());
    Tensor<T> lscale, lbias;
    if (posteriors) {
      o_.latent_stats->expect_channels(input[0], "the run's");
      std::tie(lscale, lbias) = o_.latent_stats->template as<T>();
    }
    // Stored features belong to the unflipped image (a flipped image's features are not the mirrored ones).
    IREPA_CHECK(stored.empty() || !o_.hflip,
                "train: the data holds precomputed features ({}), which do not match flipped images; turn flips off "
                "or compute the targets online",
                fmt::join(stored, ", "));
    IREPA_CHECK(!o_.hflip || images, "train: horizontal flips need image data, but the data holds {}", ds.kind());
    const std::int64_t B = o_.batch_size;
    IREPA_CHECK(ds.size() > 0, "train: the dataset is empty");
    std::unique_ptr<CpuContext> own_cpu;
    const CpuContext& cpu = detail::host_context(ctx_, own_cpu);  // the online encoders that run on the host
    const std::vector<PlacedEncoder<D>> placed = place_encoders<D>(online);
    if (!o_.quiet && !placed.empty() && rank_ == 0) {
      std::printf("target encoders: %s\n", describe_placement(placed).c_str());
      std::fflush(stdout);
    }
    if (o_.evaluate_only) {  // the checkpoint's EMA scored, nothing trained
      evaluate_online();
      TrainResult<T> res;
      res.ema = first_ema_host();
      return res;
    }
    const std::int64_t share = B / world_;  // this rank's share of each batch
    auto loader = data::epoch_loader<T>(ds, B, o_.seed, step_, rank_, world_);
    const std::int64_t first = step_ + 1, total = o_.max_train_steps;
    const auto t0 = std::chrono::steady_clock::now();
    while (step_ < total) {
      auto b = loader->next();
      if (o_.hflip) {  // RandomHorizontalFlip before anything sees the image
        Tensor<double> u(Shape{share});
        rng_.uniform(u.view());
        std::vector<bool> flip(static_cast<std::size_t>(share));
        for (std::int64_t i = 0; i < share; ++i) flip[static_cast<std::size_t>(i)] = u[i] < 0.5;
        flip_horizontal<T>(b.x.view(), flip);
      }
      std::vector<ConstView<T>> zs;
      for (const auto& e : stored) zs.push_back(b.features.at(e));
      std::vector<Tensor<T, D>> online_z = detail::online_targets<T, D>(ctx_, cpu, placed, images ? b.x.cview() : b.images.cview());
      if (images)
        for (std::int64_t i = 0; i < b.x.numel(); ++i) b.x[i] = b.x[i] * T(1.0 / 127.5) - T(1);
      if (posteriors) {  // the reference's sample_posterior: eps from the run's generator, after the flips' draws
        Tensor<T> eps(Shape{share, input[0], input[1], input[2]}), z(eps.shape());
        rng_.normal(eps.view());
        ops::sample_posterior<T>(cpu, b.x.cview(), eps.cview(), lscale.cview(), lbias.cview(), z.view());
        b.x = std::move(z);
        if (step_ == 0) write_ground_truth_grid(b.x.cview());  // a fresh run's first batch
      }
      step(b.x, b.y.view(), zs, std::move(online_z));
      const bool last = step_ == total, checkpoint = step_ % o_.checkpointing_steps == 0 || last;
      const bool grid = o_.sampling_steps > 0 && step_ % o_.sampling_steps == 0 &&
                        (o_.grid_decoder || cfg.in_channels == 1 || cfg.in_channels == 3);
      if (step_ % o_.log_every == 0 || last) flush(/*progress=*/true);
      if (checkpoint) save_checkpoint();
      if (grid) write_sample_grid();
      if (o_.eval_steps > 0 && (step_ % o_.eval_steps == 0 || last)) evaluate_online();
    }
    flush();
    if (sink_) sink_->flush();
    TrainResult<T> res;
    res.history = history_;
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::int64_t done = total - first + 1;
    res.images_per_second = done > 0 && res.seconds > 0 ? static_cast<double>(done * B) / res.seconds : 0;
    res.ema = first_ema_host();
    return res;
  }

  std::int64_t steps_done() const { return step_; }
  const std::vector<TrainRecord>& history() const { return history_; }
  const Ema<T, D>& ema(std::size_t k = 0) const { return *emas_.at(k); }
  const AdamW<T, D>& optimizer() const { return opt_; }
  Philox& rng() { return rng_; }
  int rank() const { return rank_; }
  int world() const { return world_; }
  /// Gradient buckets whose sum started during the last step's backward (data-parallel runs).
  std::size_t overlapped_buckets() const { return buckets_ ? buckets_->last_started_early() : 0; }
  std::size_t gradient_buckets() const { return buckets_ ? buckets_->size() : 0; }

 private:
  /// A step's scalars to log.jsonl and the sink.
  void record(std::int64_t step, const std::map<std::string, double>& scalars) {
    if (logger_) logger_->log(step, scalars);
    if (sink_) sink_->scalars(step, scalars);
  }

  /// samples/<name>: x [B, C, H, W] in [-1, 1] as a grid, decoded to pixels first when a decoder
  /// is set; the same PNG goes to the sink under `tag` (the reference's: samples, gt_samples).
  void write_grid(const std::string& name, const std::string& tag, const Tensor<double>& x, std::int64_t columns) const {
    const std::filesystem::path dir = std::filesystem::path(o_.run_dir) / "samples";
    std::filesystem::create_directories(dir);
    const Tensor<double> px = o_.grid_decoder ? o_.grid_decoder(x) : Tensor<double>::copy_of(x.cview());
    const Tensor<std::uint8_t> grid = io::image_grid<double>(px.cview(), io::GridOptions{.columns = columns});  // [H, W] or [H, W, 3]
    const std::string png = io::encode_png(grid.cview(), "train: sample grid");
    io::write_file_atomic((dir / name).string(), png, "train: sample grid");
    if (sink_) sink_->image(step_, tag, png, grid.size(0), grid.size(1), grid.rank() == 3 ? 3 : 1);
  }

  /// Every weight, and AdamW's moments, finite after the updates of steps [first, step_], from
  /// their sums of squares (reduced on the device at the flush); only when one is not, a host
  /// scan names the first bad parameter. Runs at every flush, so before anything of those steps
  /// is saved.
  void check_weights_finite(std::int64_t first, double sq_values, double sq_m, double sq_v) const {
    const auto& arena = model_.params();
    auto check = [&](ConstView<T, D> flat, double sq, const char* what) {
      if (std::isfinite(sq)) return;
      Tensor<T> keep;
      const TensorView<T> h = host_values(TensorView<T, D>(const_cast<T*>(flat.data()), flat.shape()), keep);
      const std::string steps = first == step_ ? fmt::format("{}", step_) : fmt::format("{}..{}", first, step_);
      for (const auto& e : arena.entries())
        for (std::int64_t i = 0; i < e.shape.numel(); ++i) {
          const double v = static_cast<double>(h.data()[e.offset + i]);
          if (!std::isfinite(v))
            fail("train: {} not finite after the update of step {}: '{}' {} holds {} at element {} (nothing of these steps is saved; the "
                 "last checkpoint is unchanged; lower the learning rate, or see --skip-nonfinite-steps)",
                 what, steps, e.name, e.shape.str(), v, i);
        }
      fail("train: the sum of squares of {} overflows after step {} (values beyond 1e154)", what, steps);
    };
    check(arena.values(), sq_values, "the weights are");
    check(opt_.exp_avg(), sq_m, "AdamW's first moments are");
    check(opt_.exp_avg_sq(), sq_v, "AdamW's second moments are");
  }

  /// " on rank(s) 1, 3" from every rank's flag (1: its own loss was not finite); a collective.
  std::string bad_ranks(std::int64_t step, std::int64_t mine) {
    const std::vector<std::int64_t> flags = comm_.all_gather(ctx_, mine);
    std::vector<int> bad;
    for (std::size_t r = 0; r < flags.size(); ++r)
      if (flags[r]) bad.push_back(static_cast<int>(r));
    if (bad.empty()) return fmt::format(" (step {}: every rank's own loss was finite: a gradient went bad)", step);
    return fmt::format(" on rank(s) {} of {}", fmt::join(bad, ", "), world_);
  }

  /// The model with the first EMA's weights (sample grids, evaluations).
  Model first_ema_model() const {
    Model m(model_.config, model_.head);
    ops::copy<T>(ctx_, emas_.front()->values(), m.params().values());
    return m;
  }
  /// The first EMA's weights on the host (flat, arena order).
  Tensor<T> first_ema_host() const {
    Tensor<T> keep;
    return Tensor<T>::copy_of(host_values(emas_.front()->values(), keep));
  }

  std::vector<Ema<T, D>*> ema_pointers() const {
    std::vector<Ema<T, D>*> p;
    for (const auto& e : emas_) p.push_back(e.get());
    return p;
  }

  const Context& ctx_;
  TrainerOptions o_;
  Model& model_;
  Objective obj_;
  nlohmann::json config_;
  AdamW<T, D> opt_;
  std::vector<std::unique_ptr<Ema<T, D>>> emas_;
  Philox rng_;
  Communicator<D>& comm_;
  int rank_ = 0, world_ = 1;
  std::unique_ptr<GradientBuckets<T, D>> buckets_;  // world > 1
  std::int64_t step_ = 0;
  std::unique_ptr<RunFolder> folder_;  // rank 0: the lock on the run folder, held for the run
  std::unique_ptr<JsonlLogger> logger_;
  std::unique_ptr<LogSink> sink_;  // rank 0, when options.log_sink makes one
  Tensor<double, D> log_;                // [log_every + 1, 4]: the scalars of the steps not yet flushed, then the weights' check
  Tensor<double, D> sq_, norm_, scale_;  // [1] each: squared norm, norm, clip factor
  std::int64_t pending_ = 0;
  std::vector<double> pending_lrs_;
  std::vector<std::int64_t> pending_skipped_;  // steps since the last flush whose update was skipped
  std::int64_t skipped_ = 0;                   // skipped steps in this invocation
  std::vector<TrainRecord> history_;
  RateMeter meter_;
};

/// Trains `model` (already initialised) on `ds` with objective `obj`: Trainer(ctx, o, model, obj,
/// config_json).run(ds, online). The model may be on a device (ctx is then its context): data,
/// flips, label dropout and the RNG's state stay on the host, so a run is the same sequence of
/// batches and draws anywhere; a ViT target encoder runs on the model's device, the others on
/// the host.
template <class Model, class Objective, class Dataset>
  requires ObjectiveFor<Objective, Model>
TrainResult<typename Model::scalar_type> train(const typename Model::Context& ctx, const TrainerOptions& o, Model& model,
                                               const Objective& obj, const Dataset& ds, const std::vector<TargetEncoder>& online,
                                               const nlohmann::json& config_json,
                                               Communicator<typename Model::device_type>& comm = single_process<typename Model::device_type>()) {
  Trainer<Model, Objective> trainer(ctx, o, model, obj, config_json, comm);
  return trainer.run(ds, online);
}

}  // namespace irepa
