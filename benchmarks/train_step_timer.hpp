#pragma once
// The training step as irepa-train runs it (Trainer::step: label dropout, the batch's upload,
// t and noise on the device, forward, losses, backward, grad-norm clip, AdamW with the EMA
// fused), timed after warm-up on any context; shared by irepa-bench-train (CPU) and
// irepa-bench-train-cuda. Random latents, labels and 768-d targets; a throwaway run folder.

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "irepa/align/head.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/train/trainer.hpp"

namespace irepa::bench {

/// The benchmarks' SiT: a --model name (SiT-B/2, ...), latents input_size^2, one target encoder
/// of width z_dim aligned after block encoder_depth, a 3x3 conv projector when the head is iREPA.
inline SiTConfig bench_sit_config(const std::string& model, std::int64_t input_size, std::int64_t z_dim, std::int64_t encoder_depth) {
  SiTConfig cfg;
  cfg.input_size = input_size;
  cfg.z_dims = {z_dim};
  cfg.encoder_depth = encoder_depth;
  cfg.kernel_size = 3;
  apply_model_name(cfg, model);
  return cfg;
}

/// f(head) for --head irepa (3x3 conv projector, spatial z-score) or repa (MLP projector):
/// only the two heads the flag names are compiled (with_head would instantiate all six).
template <class F>
decltype(auto) with_bench_head(const std::string& head, F&& f) {
  IREPA_CHECK(head == "irepa" || head == "repa", "--head '{}' is not known; expected irepa or repa", head);
  if (head == "irepa") return f(iREPAHead<ConvProjector<0>, SpatialNorm>{});
  return f(REPAHead{});
}

struct StepTimes {
  std::vector<double> seconds;  // the timed steps, sorted
  double median = 0, mean = 0, best = 0;
  double last_loss = 0;
  TransferStats per_step;       // host <-> device traffic of the last timed step
  std::int64_t params = 0;
};

template <class Model>
StepTimes time_train_steps(const typename Model::Context& ctx, const SiTConfig& cfg, const typename Model::head_type& head,
                           std::int64_t batch, std::int64_t z_dim, int warmup, int steps, double proj_coeff) {
  Model m(cfg, head);
  m.init(1);
  const auto dir = std::filesystem::temp_directory_path() /
                   ("irepa_bench_train_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  TrainerOptions o;
  o.run_dir = dir.string(), o.batch_size = batch, o.max_train_steps = warmup + steps;
  o.log_every = warmup + steps, o.checkpointing_steps = warmup + steps, o.quiet = true;
  o.schedule.lr = 1e-4;
  StepTimes r;
  {
    Trainer<Model, SiTObjective> trainer(ctx, o, m, SiTObjective{.proj_coeff = proj_coeff}, nlohmann::json::object());
    Philox rng(2);
    Tensor<float> x(Shape{batch, cfg.in_channels, cfg.input_size, cfg.input_size}), z(Shape{batch, m.grid.tokens(), z_dim});
    Tensor<std::int64_t> y(Shape{batch});
    rng.normal(x.view());
    rng.normal(z.view());
    rng.randint(y.view(), 0, cfg.num_classes);
    for (int s = 1; s <= warmup + steps; ++s) {
      Tensor<std::int64_t> labels = y.clone();
      ctx.synchronize();
      ctx.reset_transfers();
      const auto t0 = std::chrono::steady_clock::now();
      trainer.step(x.cview(), labels.view(), {z.cview()});
      ctx.synchronize();
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (s > warmup) r.seconds.push_back(dt), r.per_step = ctx.transfers();
    }
    trainer.flush();
    r.last_loss = trainer.history().back().total;
  }
  std::filesystem::remove_all(dir);
  std::sort(r.seconds.begin(), r.seconds.end());
  r.median = r.seconds[r.seconds.size() / 2], r.best = r.seconds.front();
  for (double t : r.seconds) r.mean += t / static_cast<double>(r.seconds.size());
  r.params = m.num_params();
  return r;
}

}  // namespace irepa::bench
