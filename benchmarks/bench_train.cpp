// irepa-bench-train: the whole training step of SiT with an alignment head, as irepa-train runs
// it (Trainer::step: forward, losses, backward, grad-norm clip, AdamW, EMA), timed after warm-up.
// Prints one table row: model, head, batch, threads, median and best step time, img/s.
//
//   irepa-bench-train --device cpu --model SiT-B/2 --batch-size 4
//   irepa-bench-train --model SiT-S/2 --head repa --batch-size 16 --steps 10
//
// Compare with benchmarks/reference/sit_step_torch.py (the same step in PyTorch) in the same run.

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "irepa/models/sit.hpp"
#include "irepa/ops/cpu/sgemm.hpp"
#include "train_step_timer.hpp"
#include "../examples/fail_safe.hpp"

namespace {

using namespace irepa;

struct Options {
  std::string device = "cpu", model = "SiT-B/2", head = "irepa";
  std::int64_t batch = 4, input_size = 32, z_dim = 768, encoder_depth = 4;
  int steps = 5, warmup = 1, threads = 0;
};

template <class Model>
void run(const Options& o, const SiTConfig& cfg, typename Model::head_type head) {
  CpuContext ctx(o.threads);
  const auto r = bench::time_train_steps<Model>(ctx, cfg, head, o.batch, o.z_dim, o.warmup, o.steps, o.head == "irepa" ? 1.0 : 0.5);
  std::printf("float GEMM kernel: %s\n", ops::cpu::kSgemmAvailable ? std::string(ops::cpu::kSgemmIsa).c_str() : "eigen");
  std::printf("| model | head | batch | threads | params | median step | mean step | best step | img/s (median) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  std::printf("| %s | %s | %lld | %d | %.1fM | %.3f s | %.3f s | %.3f s | %.3f |\n", o.model.c_str(), o.head.c_str(),
              static_cast<long long>(o.batch), ctx.threads(), static_cast<double>(r.params) / 1e6, r.median, r.mean, r.best,
              static_cast<double>(o.batch) / r.median);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"irepa-bench-train: the whole SiT training step (forward, backward, clip, AdamW, EMA), timed"};
  app.add_option("--device", o.device, "cpu (the CUDA backend is not built yet)")->capture_default_str();
  app.add_option("--model", o.model, "SiT-S/2, SiT-B/2, SiT-L/2, SiT-XL/2 (patch 2, 4 or 8)")->capture_default_str();
  app.add_option("--head", o.head, "irepa (conv 3x3 + z-score) or repa (MLP)")->check(CLI::IsMember({"irepa", "repa"}))->capture_default_str();
  app.add_option("--batch-size", o.batch, "images per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--input-size", o.input_size, "latent height = width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--z-dim", o.z_dim, "target encoder width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--encoder-depth", o.encoder_depth, "aligned block")->capture_default_str();
  app.add_option("--steps", o.steps, "timed steps")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed steps first")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    IREPA_CHECK(o.device == "cpu", "irepa-bench-train: --device '{}' is not available in this build (cpu only so far)", o.device);
    const SiTConfig cfg = bench::bench_sit_config(o.model, o.input_size, o.z_dim, o.encoder_depth);
    bench::with_bench_head(o.head, [&](auto head) { run<SiT<Dynamic, DynamicPatch, decltype(head), float>>(o, cfg, head); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  return 0;
}
